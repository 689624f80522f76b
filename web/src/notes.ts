// The notes panel: one Markdown document per meeting, edited by everyone in it at once.
//
// The document is a CRDT (Yjs; the server keeps its copy with yrs, src/roles/apiserver/notes/):
// every keystroke is a change that merges with everybody else's, whatever the order, so
// nobody's text is ever lost, duplicated or mixed into words nobody wrote, and there is
// nothing to resolve by hand. This file is the panel around it and is in the main bundle;
// the live document (notes-live.ts) is loaded when the notes start, the editor and the
// preview (notes-editor.ts) when the panel is first shown. Images pasted or dropped and files
// attached go to the meeting's fsserver (files.ts) and are referenced from the notes by their
// stable path.
import { api } from './api';
import { h, toast } from './dom';
import { FILE_PATH, humanSize, listFiles, upload, type MeetingFile } from './files';
import { t } from './i18n';
import type { NotesLive } from './notes-live';
import type { NotesEditor } from './notes-editor';

type EditorModule = typeof import('./notes-editor');

export interface NotesOpts {
  meetingId: number;
  /** A guest's join token (signed-in people use their session cookie). */
  joinToken?: string | null;
  /** Side-by-side editor and preview (the notes page) rather than stacked (the room). */
  wide?: boolean;
  /** The owner of a scheduled meeting may mail the notes to the invitees. */
  canMail?: boolean;
  /** Someone else changed the notes (the room marks its Notes button). */
  onRemoteChange?: () => void;
}

interface Version { version: number; created_at: number; authors: string[]; kind: string; bytes: number }

export class NotesPanel {
  readonly el: HTMLElement;
  live: NotesLive | null = null;
  editor: NotesEditor | null = null;
  private mod: EditorModule | null = null;
  private loadingEditor = false;
  private closed = false;
  private visible = false;
  private uploads = 0;
  private files: MeetingFile[] = [];
  private images = new Map<string, HTMLImageElement>();
  private historyOpen = false;
  private previewDirty = true;
  private previewTimer = 0;
  private previewSeq = 0;
  private lastRenderMs = 0;
  private observer: IntersectionObserver;
  /** When the panel was made, for `data-open-ms`: how long until editor and preview showed
   *  the whole text the first time (read by the browser tests, shown nowhere). */
  private readonly createdAt = performance.now();
  private opened = false;
  private els!: {
    editor: HTMLElement; preview: HTMLElement; status: HTMLElement; files: HTMLElement; history: HTMLElement; fileInput: HTMLInputElement;
  };

  constructor(private o: NotesOpts) {
    this.el = h('section', { class: `notes${o.wide ? ' wide' : ''}`, id: 'notes', 'aria-labelledby': 'notes-h' });
    (this.el as any).notes = this; // for the browser tests: the panel behind the element
    this.observer = new IntersectionObserver((entries) => {
      for (const e of entries) {
        if (e.target === this.el) { this.visible = e.isIntersecting; if (this.visible) this.ensureEditor(); }
        if (e.target === this.els.preview && e.isIntersecting && this.previewDirty) this.schedulePreview(0);
      }
    });
    this.build();
  }

  private get headers(): Record<string, string> {
    return this.o.joinToken ? { 'X-Join-Token': this.o.joinToken } : {};
  }

  /** A guest rejoined (new participant, new token): use it from now on. */
  setJoinToken(token: string | null): void {
    if (token === this.o.joinToken || this.closed) return;
    this.o.joinToken = token;
    this.live?.setJoinToken(token);
  }

  /** Connects the live document (its code is loaded now). */
  async start(): Promise<void> {
    try {
      const { NotesLive } = await import('./notes-live');
      if (this.closed) return;
      const live = new NotesLive({ meetingId: this.o.meetingId, joinToken: this.o.joinToken });
      this.live = live;
      live.addEventListener('state', () => this.setStatus());
      live.addEventListener('ack', () => this.setStatus());
      live.addEventListener('remote', () => { this.o.onRemoteChange?.(); this.schedulePreview(); this.maybeRefreshFiles(); });
      live.addEventListener('local', () => this.schedulePreview());
      live.start();
      this.setStatus();
      if (this.visible) this.ensureEditor();
    } catch (e) {
      this.setStatus(t('error', { msg: (e as Error).message }));
    }
    this.refreshFiles();
  }

  /** Stops the live connection (changes not yet sent go first). */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.observer.disconnect();
    this.live?.close();
    this.editor?.destroy();
  }

  /** Sends what was typed and not sent yet (the page is going away). */
  flushOnExit(): void {
    this.live?.flush();
  }

  /** The text as it is here now. */
  text(): string {
    return this.live ? this.live.text.toString() : '';
  }

  focus(): void {
    this.editor?.focus();
  }

  // ---- the DOM ---------------------------------------------------------------------------

  /** Builds the panel (again after a language switch), keeping the document. */
  build(): void {
    const fileInput = h('input', { type: 'file', id: 'notes-file', multiple: true, class: 'sr-only', tabindex: -1, 'aria-hidden': 'true' });
    fileInput.addEventListener('change', () => { const f = [...(fileInput.files || [])]; fileInput.value = ''; this.attach(f); });
    const status = h('span', { id: 'notes-status', class: 'notes-status muted', role: 'status', 'aria-live': 'polite' });
    const editor = h('div', { id: 'notes-editor', class: 'notes-editor' });
    const preview = h('div', { id: 'notes-preview', class: 'md notes-preview', role: 'region', 'aria-label': t('notes_preview') });
    const files = h('ul', { id: 'notes-files', class: 'notes-files', 'aria-label': t('notes_files') });
    const history = h('div', { id: 'notes-history', class: 'notes-history', hidden: !this.historyOpen });
    if (this.els) this.observer.unobserve(this.els.preview);
    this.els = { editor, preview, status, files, history, fileInput };
    this.el.replaceChildren(
      h('div', { class: 'notes-bar' },
        h('h2', { id: 'notes-h', class: this.o.wide ? 'sr-only' : undefined }, t('notes')),
        h('span', { class: 'grow' }),
        h('button', { type: 'button', class: 'secondary small', id: 'notes-attach', onclick: () => fileInput.click() }, t('notes_attach')),
        h('button', { type: 'button', class: 'secondary small', id: 'notes-history-btn', 'aria-expanded': String(this.historyOpen), 'aria-controls': 'notes-history', onclick: () => this.toggleHistory() }, t('notes_history')),
        this.o.canMail ? h('button', { type: 'button', class: 'secondary small', id: 'notes-mail', onclick: () => this.mail() }, t('notes_mail')) : null),
      fileInput,
      h('p', { id: 'notes-help', class: 'muted small-print' }, t('notes_help')),
      status, history,
      h('div', { class: 'notes-panes' }, editor, preview),
      h('h3', { class: 'notes-files-h' }, t('notes_files')),
      files);
    this.observer.observe(this.el);
    this.observer.observe(preview);
    // The editor's labels are in the language it was made in: make it again.
    if (this.editor) { this.editor.destroy(); this.editor = null; this.ensureEditor(); }
    this.setStatus();
    this.previewDirty = true;
    this.schedulePreview(0);
    this.drawFiles();
    if (this.historyOpen) this.drawHistory();
  }

  /** Loads the editor's code (once) and makes the editor, when the panel is shown. */
  private async ensureEditor(): Promise<void> {
    if (this.editor || this.loadingEditor || this.closed) return;
    this.loadingEditor = true;
    try {
      this.mod ??= await import('./notes-editor');
      const live = this.live;
      if (!live || this.closed || this.editor) return;
      this.editor = this.mod.createEditor(this.els.editor, live, {
        placeholder: t('notes_placeholder'), label: t('notes_editor'), describedBy: 'notes-help',
        onFiles: (files, pasted) => this.attach(files, pasted),
        onSave: () => live.flush(),
      });
      this.el.dataset.editor = '1';
      this.schedulePreview(0);
    } catch (e) {
      this.setStatus(t('error', { msg: (e as Error).message }));
    } finally {
      this.loadingEditor = false;
      // The live document may have arrived while the editor's code loaded.
      if (!this.editor && this.live && this.visible && !this.closed) this.ensureEditor();
    }
  }

  private setStatus(error?: string): void {
    const s = this.els.status;
    const live = this.live;
    const state = error ? 'error' : live ? live.state : 'loading';
    s.dataset.state = state;
    this.el.dataset.version = String(live?.version ?? 0);
    this.el.dataset.live = live && live.state !== 'connecting' && live.state !== 'offline' && live.state !== 'error' ? '1' : '0';
    s.textContent = error || ({
      loading: t('notes_loading'), connecting: t('notes_connecting'), saving: t('notes_saving'),
      saved: t('notes_saved', { v: live?.version ?? 0 }), offline: t('notes_offline'),
      error: live?.closedMessage || t('notes_error'),
    } as Record<string, string>)[state];
    if (this.uploads) s.textContent += ` · ${t('notes_uploading', { n: this.uploads })}`;
  }

  // ---- the preview ---------------------------------------------------------------------------

  private fileUrl(path: string): string | null {
    const m = path.match(FILE_PATH);
    if (!m || Number(m[1]) !== this.o.meetingId) return null;
    return this.o.joinToken ? `${path}?join_token=${encodeURIComponent(this.o.joinToken)}` : path;
  }

  private image(src: string, alt: string): HTMLImageElement {
    // Loaded images are kept: a file URL redirects to a fresh signed URL each time.
    let img = this.images.get(src);
    if (!img || img.isConnected) {
      img = h('img', { src, alt });
      img.addEventListener('error', () => img!.classList.add('broken'));
      if (!this.images.has(src)) this.images.set(src, img);
    }
    img.alt = alt;
    return img;
  }

  /** Renders the preview soon: only while it is on screen, and never more often than a
   *  render takes twice over (a huge document is not re-rendered on every keystroke). */
  private schedulePreview(delay = 150): void {
    this.previewDirty = true;
    if (!this.mod || !this.els.preview.isConnected) return;
    clearTimeout(this.previewTimer);
    this.previewTimer = window.setTimeout(() => this.drawPreview(), Math.max(delay, 2 * this.lastRenderMs));
  }

  private async drawPreview(): Promise<void> {
    const box = this.els.preview;
    if (!this.mod || !box.isConnected || !this.isOnScreen(box)) return; // drawn when it shows
    this.previewDirty = false;
    const seq = ++this.previewSeq;
    const full = this.text();
    // A large note's first render shows its beginning first (what is on screen), then all.
    const first = !this.opened && full.length > 48_000;
    const cut = first ? Math.max(full.indexOf('\n\n', 16_000), full.indexOf('\n', 16_000)) : -1;
    const text = cut > 0 && cut < 64_000 ? full.slice(0, cut) : full;
    const t0 = performance.now();
    const tokens = await this.mod.parse(text);
    if (seq !== this.previewSeq) return; // a newer render is on its way
    const t1 = performance.now();
    const frag = text.trim() ? this.mod.build(tokens, {
      fileUrl: (p) => this.fileUrl(p), image: (src, alt) => this.image(src, alt), blockedImage: t('notes_image_blocked'),
    }) : h('p', { class: 'muted' }, t('notes_empty'));
    box.dataset.parseMs = (t1 - t0).toFixed(1);
    box.dataset.buildMs = (performance.now() - t1).toFixed(1);
    const top = box.scrollTop;
    box.replaceChildren(frag);
    if (top) box.scrollTop = top;
    this.lastRenderMs = performance.now() - t0;
    box.dataset.renderMs = this.lastRenderMs.toFixed(1);
    box.dataset.renderedLength = String(text.length);
    if (!this.opened && this.editor && this.editor.view.state.doc.length === full.length && this.live?.state === 'saved') {
      // Open: the editor has the whole note and the preview shows (at least) its beginning.
      this.opened = true;
      this.el.dataset.openMs = (performance.now() - this.createdAt).toFixed(1);
    }
    if (text.length !== full.length) { this.previewDirty = true; this.schedulePreview(0); }
    else if (!this.el.dataset.fullMs && this.opened) this.el.dataset.fullMs = (performance.now() - this.createdAt).toFixed(1);
  }

  private isOnScreen(el: HTMLElement): boolean {
    const r = el.getBoundingClientRect();
    return r.width > 0 && r.bottom > 0 && r.top < innerHeight && document.visibilityState !== 'hidden';
  }

  // ---- files ---------------------------------------------------------------------------------

  private drawFiles(): void {
    this.els.files.replaceChildren(...(this.files.length ? this.files.map((f) => h('li', { 'data-id': f.id },
      h('a', { href: this.fileUrl(f.url) || '#', download: f.name, class: 'file-link' }, f.name),
      h('span', { class: 'muted' }, ` · ${humanSize(f.size)}`))) : [h('li', { class: 'muted' }, t('notes_no_files'))]));
  }

  private async refreshFiles(): Promise<void> {
    try {
      this.files = await listFiles(this.o.meetingId, this.headers);
      this.drawFiles();
    } catch { /* shown as it was */ }
  }

  /** New references may point to files we have not listed yet. */
  private maybeRefreshFiles(): void {
    const text = this.text();
    const known = new Set(this.files.map((f) => f.id));
    for (const m of text.matchAll(/\/api\/v1\/meetings\/\d+\/files\/([A-Za-z0-9_-]+)/g)) {
      if (!known.has(m[1])) { this.refreshFiles(); return; }
    }
  }

  /** Uploads files and puts a reference to each at the caret: images shown, others linked. */
  async attach(files: File[], pasted = false): Promise<void> {
    for (const f of files) {
      let name = f.name || 'file';
      if (pasted && (/^image\.\w+$/.test(name) || !f.name)) {
        const ext = (f.type.split('/')[1] || 'png').replace(/[^a-z0-9]/g, '');
        name = `pasted-${new Date().toISOString().slice(0, 19).replace(/[-:T]/g, '')}.${ext}`;
      }
      this.uploads++;
      this.setStatus();
      try {
        const stored = await upload(this.o.meetingId, f, name, this.headers, () => this.setStatus());
        const label = stored.name.replace(/[[\]\\]/g, '');
        const image = stored.content_type.startsWith('image/') && stored.content_type !== 'image/svg+xml';
        const ref = image ? `![${label}](${stored.url})` : `[${label}](${stored.url})`;
        if (this.editor) this.editor.insertBlock(ref);
        else if (this.live) this.live.text.insert(this.live.text.length, `\n${ref}\n`);
        this.files = [...this.files.filter((x) => x.id !== stored.id), stored];
        this.drawFiles();
      } catch (err) {
        toast(t('notes_upload_failed', { name, msg: (err as Error).message }));
      } finally {
        this.uploads--;
        this.setStatus();
      }
    }
  }

  // ---- history and mail ----------------------------------------------------------------------

  private toggleHistory(): void {
    this.historyOpen = !this.historyOpen;
    this.els.history.hidden = !this.historyOpen;
    this.el.querySelector('#notes-history-btn')?.setAttribute('aria-expanded', String(this.historyOpen));
    if (this.historyOpen) this.drawHistory();
  }

  private async drawHistory(): Promise<void> {
    const box = this.els.history;
    try {
      const list = await api<Version[]>('GET', `/meetings/${this.o.meetingId}/notes/versions`, undefined, this.headers);
      const when = (s: number) => new Date(s * 1000).toLocaleString(document.documentElement.lang, { dateStyle: 'short', timeStyle: 'short' });
      const kinds: Record<string, string> = { pause: t('notes_kind_pause'), end: t('notes_kind_end'), save: t('notes_kind_save'), restore: t('notes_kind_restore') };
      box.replaceChildren(list.length ? h('ol', { class: 'versions' }, ...list.map((v) => h('li', { 'data-version': v.version },
        h('span', { class: 'grow' }, `v${v.version} · ${when(v.created_at)} · ${kinds[v.kind] || v.kind}`,
          v.authors.length ? h('span', { class: 'muted' }, ` · ${t('notes_by', { names: v.authors.join(', ') })}`) : null),
        h('button', { type: 'button', class: 'secondary small diff', onclick: () => this.showDiff(v.version) }, t('notes_changes')),
        h('button', { type: 'button', class: 'secondary small restore', onclick: () => this.restore(v.version) }, t('notes_restore', { v: v.version })))))
        : h('p', { class: 'muted' }, t('notes_no_history')));
    } catch (e) {
      box.replaceChildren(h('p', {}, t('error', { msg: (e as Error).message })));
    }
  }

  private async showDiff(v: number): Promise<void> {
    try {
      const [old, mod] = await Promise.all([
        api<{ text: string }>('GET', `/meetings/${this.o.meetingId}/notes/versions/${v}`, undefined, this.headers),
        this.mod ?? import('./notes-editor'),
      ]);
      this.mod = mod;
      this.els.history.querySelector('.notes-diff-box')?.remove();
      this.els.history.append(h('div', { class: 'notes-diff-box', 'data-version': v },
        h('h3', {}, t('notes_diff_title', { v })),
        mod.diffView(old.text, this.text(), { same: t('notes_same'), skipped: (n) => t('notes_skipped', { n }) })));
    } catch (e) {
      toast(t('error', { msg: (e as Error).message }));
    }
  }

  /** The old text becomes the current one: a change everyone sees live (and can undo by
   *  restoring again). */
  private async restore(v: number): Promise<void> {
    this.live?.flush();
    try {
      await api('POST', `/meetings/${this.o.meetingId}/notes/versions/${v}/restore`, {}, this.headers);
      this.drawHistory();
    } catch (e) {
      toast(t('error', { msg: (e as Error).message }));
    }
  }

  private async mail(): Promise<void> {
    this.live?.flush();
    try {
      await api('POST', `/meetings/${this.o.meetingId}/notes/send`);
      toast(t('notes_mailed'));
    } catch (e) {
      toast(t('error', { msg: (e as Error).message }));
    }
  }
}
