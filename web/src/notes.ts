// The notes panel: one Markdown document per meeting, edited by everyone in it at once.
//
// Sync model (server side: src/roles/apiserver/notes/): the server keeps numbered versions and
// accepts a change only when it names the current version (else 409 with the current text).
// We keep `base`, the last version we know the server has. Typing is saved shortly after it
// pauses (and at least every few seconds while it goes on). Others' changes arrive on the live
// WebSocket; when they meet unsaved typing, or our save comes back 409, the two edits are
// merged three ways (merge.ts) and the result saved on top. Where both edits touch the same
// words, both versions stay in the text between markers and a notice says so: nobody's text
// is lost. Images pasted or dropped and files attached go to the meeting's fsserver
// (files.ts) and are referenced from the notes by their stable path.
import { api, ApiError } from './api';
import { h, toast } from './dom';
import { FILE_PATH, humanSize, listFiles, upload, type MeetingFile } from './files';
import { t } from './i18n';
import { render } from './markdown';
import { mergeText } from './merge';

interface NotesState { text: string; version: number; by?: string | null }

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

/** Save this long after typing pauses… */
const SAVE_IDLE_MS = 500;
/** …and at least this often while it goes on, so the others see it live. */
const SAVE_MAX_MS = 2000;

export class NotesPanel {
  readonly el: HTMLElement;
  private base: NotesState = { text: '', version: 0 };
  private loaded = false;
  private saving = false;
  private pendingRemote: NotesState | null = null;
  private saveTimer = 0;
  private dirtySince = 0;
  private previewTimer = 0;
  private ws: WebSocket | null = null;
  private wsAttempt = 0;
  private wsTimer = 0;
  private pingTimer = 0;
  private closed = false;
  private uploads = 0;
  private files: MeetingFile[] = [];
  private images = new Map<string, HTMLImageElement>();
  private historyOpen = false;
  /** Merges done (409 or live) and those that left conflict markers: shown to tests too. */
  merges = 0;
  conflicts = 0;
  private els!: {
    text: HTMLTextAreaElement; preview: HTMLElement; status: HTMLElement; conflict: HTMLElement;
    files: HTMLElement; history: HTMLElement; fileInput: HTMLInputElement;
  };

  constructor(private o: NotesOpts) {
    this.el = h('section', { class: `notes${o.wide ? ' wide' : ''}`, id: 'notes', 'aria-labelledby': 'notes-h' });
    this.build();
  }

  private get headers(): Record<string, string> {
    return this.o.joinToken ? { 'X-Join-Token': this.o.joinToken } : {};
  }

  /** A guest rejoined (new participant, new token): use it from now on. */
  setJoinToken(token: string | null): void {
    if (token === this.o.joinToken || this.closed) return;
    this.o.joinToken = token;
    // The old token stops working as the old participation closes: follow with the new one.
    clearTimeout(this.wsTimer);
    if (this.ws) { this.ws.onclose = null; this.ws.close(); this.ws = null; }
    this.wsAttempt = 0;
    this.connect();
  }

  async start(): Promise<void> {
    this.connect();
    try {
      const cur = await api<NotesState>('GET', `/meetings/${this.o.meetingId}/notes`, undefined, this.headers);
      this.onRemote(cur);
    } catch (e) {
      this.setStatus('error', t('error', { msg: (e as Error).message }));
    }
    this.refreshFiles();
  }

  /** Stops the live connection; unsaved typing is sent once more (best effort). */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    clearTimeout(this.wsTimer);
    clearInterval(this.pingTimer);
    if (this.ws) { this.ws.onclose = null; this.ws.close(); this.ws = null; }
    this.flushOnExit();
  }

  /** Sends unsaved typing with a request that outlives the page (small notes only). */
  flushOnExit(): void {
    const text = this.els.text.value;
    if (!this.loaded || text === this.base.text || this.saving || text.length > 60_000) return;
    fetch(`/api/v1/meetings/${this.o.meetingId}/notes`, {
      method: 'PUT', keepalive: true, credentials: 'same-origin',
      headers: { ...this.headers, 'content-type': 'application/json' },
      body: JSON.stringify({ text, version: this.base.version }),
    }).catch(() => {});
  }

  // ---- the DOM ---------------------------------------------------------------------------

  /** Builds the panel (again after a language switch), keeping the text and the caret. */
  build(): void {
    const old = this.els?.text;
    const text = h('textarea', {
      id: 'notes-text', class: 'notes-text', spellcheck: true, 'aria-label': t('notes_editor'),
      'aria-describedby': 'notes-help', placeholder: t('notes_placeholder'), disabled: !this.loaded,
    });
    if (old) { text.value = old.value; text.selectionStart = old.selectionStart; text.selectionEnd = old.selectionEnd; }
    text.addEventListener('input', () => this.onLocalEdit());
    text.addEventListener('paste', (e) => this.onPaste(e));
    text.addEventListener('dragover', (e) => { if (e.dataTransfer?.types.includes('Files')) { e.preventDefault(); text.classList.add('drop'); } });
    text.addEventListener('dragleave', () => text.classList.remove('drop'));
    text.addEventListener('drop', (e) => {
      text.classList.remove('drop');
      const files = [...(e.dataTransfer?.files || [])];
      if (!files.length) return;
      e.preventDefault();
      this.attach(files);
    });
    text.addEventListener('keydown', (e) => {
      if ((e.ctrlKey || e.metaKey) && e.key === 's') { e.preventDefault(); this.flush(); }
    });
    const fileInput = h('input', { type: 'file', id: 'notes-file', multiple: true, class: 'sr-only', tabindex: -1, 'aria-hidden': 'true' });
    fileInput.addEventListener('change', () => { const f = [...(fileInput.files || [])]; fileInput.value = ''; this.attach(f); });
    const status = h('span', { id: 'notes-status', class: 'notes-status muted', role: 'status', 'aria-live': 'polite' });
    const conflict = h('div', { id: 'notes-conflict', class: 'notes-conflict', role: 'alert', hidden: true });
    const preview = h('div', { id: 'notes-preview', class: 'md notes-preview', role: 'region', 'aria-label': t('notes_preview') });
    const files = h('ul', { id: 'notes-files', class: 'notes-files', 'aria-label': t('notes_files') });
    const history = h('div', { id: 'notes-history', class: 'notes-history', hidden: !this.historyOpen });
    this.els = { text, preview, status, conflict, files, history, fileInput };
    this.el.replaceChildren(
      h('div', { class: 'notes-bar' },
        h('h2', { id: 'notes-h', class: this.o.wide ? 'sr-only' : undefined }, t('notes')),
        h('span', { class: 'grow' }),
        h('button', { type: 'button', class: 'secondary small', id: 'notes-attach', onclick: () => fileInput.click() }, t('notes_attach')),
        h('button', { type: 'button', class: 'secondary small', id: 'notes-history-btn', 'aria-expanded': String(this.historyOpen), 'aria-controls': 'notes-history', onclick: () => this.toggleHistory() }, t('notes_history')),
        this.o.canMail ? h('button', { type: 'button', class: 'secondary small', id: 'notes-mail', onclick: () => this.mail() }, t('notes_mail')) : null),
      fileInput,
      h('p', { id: 'notes-help', class: 'muted small-print' }, t('notes_help')),
      status, conflict, history,
      h('div', { class: 'notes-panes' }, text, preview),
      h('h3', { class: 'notes-files-h' }, t('notes_files')),
      files);
    this.setStatus(this.loaded ? (this.els.text.value === this.base.text ? 'saved' : 'unsaved') : 'loading');
    this.drawPreview();
    this.drawFiles();
    if (this.historyOpen) this.drawHistory();
  }

  private setStatus(state: 'loading' | 'saved' | 'saving' | 'unsaved' | 'uploading' | 'error' | 'offline', extra = ''): void {
    const s = this.els.status;
    s.dataset.state = state;
    this.el.dataset.version = String(this.base.version);
    this.el.dataset.merges = String(this.merges);
    this.el.dataset.conflicts = String(this.conflicts);
    const text = {
      loading: t('notes_loading'), saved: t('notes_saved', { v: this.base.version }), saving: t('notes_saving'),
      unsaved: t('notes_unsaved'), uploading: t('notes_uploading', { n: this.uploads }), error: extra || t('notes_error'),
      offline: t('notes_offline'),
    }[state];
    s.textContent = state === 'error' || !extra ? text : `${text} · ${extra}`;
  }

  private fileUrl(href: string): string | null {
    const m = href.match(FILE_PATH);
    if (!m) return href;
    if (Number(m[1]) !== this.o.meetingId) return null;
    return this.o.joinToken ? `${href}?join_token=${encodeURIComponent(this.o.joinToken)}` : href;
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

  private drawPreview(): void {
    clearTimeout(this.previewTimer);
    const text = this.els.text.value;
    const box = this.els.preview;
    const top = box.scrollTop;
    box.replaceChildren(); // frees the kept images for reuse below
    box.append(text.trim() ? render(text, {
      url: (u) => this.fileUrl(u),
      isFile: (u) => FILE_PATH.test(u),
      image: (src, alt) => this.image(src, alt),
      conflictLabel: t('notes_conflict_block'),
    }) : h('p', { class: 'muted' }, t('notes_empty')));
    box.scrollTop = top;
  }

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

  // ---- local edits and saving ------------------------------------------------------------

  private onLocalEdit(): void {
    if (!this.loaded) return;
    clearTimeout(this.previewTimer);
    this.previewTimer = window.setTimeout(() => this.drawPreview(), 120);
    this.setStatus(this.els.text.value === this.base.text ? 'saved' : 'unsaved');
    this.scheduleSave();
  }

  private scheduleSave(): void {
    const now = Date.now();
    if (!this.dirtySince) this.dirtySince = now;
    clearTimeout(this.saveTimer);
    const wait = Math.max(0, Math.min(SAVE_IDLE_MS, this.dirtySince + SAVE_MAX_MS - now));
    this.saveTimer = window.setTimeout(() => this.flush(), wait);
  }

  /** Saves the typing not yet on the server. One save at a time; more typing saves again after. */
  async flush(): Promise<void> {
    clearTimeout(this.saveTimer);
    if (this.saving || !this.loaded) return;
    const sent = this.els.text.value;
    if (sent === this.base.text) { this.dirtySince = 0; return; }
    this.saving = true;
    this.dirtySince = 0;
    this.setStatus('saving');
    let retry = 0;
    try {
      const r = await api<NotesState>('PUT', `/meetings/${this.o.meetingId}/notes`, { text: sent, version: this.base.version }, this.headers);
      this.base = { text: sent, version: r.version };
    } catch (e) {
      if (e instanceof ApiError && e.status === 409 && e.body && typeof e.body.text === 'string') {
        // Someone saved first: merge our typing (from base) with their version.
        this.applyTheirs({ text: e.body.text, version: e.body.version, by: null });
      } else if (e instanceof ApiError && [400, 401, 403, 404, 410, 413].includes(e.status)) {
        this.setStatus('error', e.message);
        this.saving = false;
        return; // typing stays in the editor; saving again would fail the same way
      } else {
        retry = 3000;
        this.setStatus('offline');
      }
    }
    this.saving = false;
    const queued = this.pendingRemote;
    this.pendingRemote = null;
    if (queued) this.onRemote(queued);
    if (this.els.text.value !== this.base.text) {
      if (retry) this.saveTimer = window.setTimeout(() => this.flush(), retry);
      else this.scheduleSave();
    } else if (!retry) {
      this.setStatus('saved');
    }
  }

  /** A newer server version while we may have unsaved typing: merge, then save the result. */
  private applyTheirs(theirs: NotesState): void {
    const mine = this.els.text.value;
    if (mine === this.base.text) {
      this.setText(theirs.text);
    } else {
      // A live change names its author; a 409 does not (it is the version saved meanwhile).
      const who = theirs.by || t('notes_someone');
      const label = theirs.by ? t('notes_theirs', { name: theirs.by }) : t('notes_saved_version');
      const m = mergeText(this.base.text, mine, theirs.text, { mine: t('notes_mine'), theirs: label });
      this.merges++;
      this.setText(m.text);
      if (m.conflicts) {
        this.conflicts += m.conflicts;
        this.els.conflict.textContent = t('notes_conflict', { name: who });
        this.els.conflict.hidden = false;
      } else {
        toast(t('notes_merged', { name: who }));
      }
    }
    this.base = { text: theirs.text, version: theirs.version };
    this.setStatus(this.els.text.value === this.base.text ? 'saved' : 'unsaved');
  }

  /** Replaces the editor's text, keeping the caret where it was relative to the text around it. */
  private setText(next: string): void {
    const ta = this.els.text;
    const prev = ta.value;
    if (prev === next) return;
    const focused = document.activeElement === ta;
    let p = 0;
    while (p < prev.length && p < next.length && prev[p] === next[p]) p++;
    let s = 0;
    while (s < prev.length - p && s < next.length - p && prev[prev.length - 1 - s] === next[next.length - 1 - s]) s++;
    const move = (x: number) => (x <= p ? x : x >= prev.length - s ? x + next.length - prev.length : p + (next.length - s - p));
    const [a, b] = [move(ta.selectionStart), move(ta.selectionEnd)];
    ta.value = next;
    if (focused) ta.setSelectionRange(a, b);
    if (!/^<<<<<<< /m.test(next)) this.els.conflict.hidden = true;
    this.drawPreview();
  }

  // ---- others' changes ---------------------------------------------------------------------

  private onRemote(msg: NotesState): void {
    if (!this.loaded) {
      this.loaded = true;
      this.els.text.disabled = false;
      if (msg.version >= this.base.version) this.base = { text: msg.text, version: msg.version };
      this.setText(this.base.text);
      this.setStatus('saved');
      this.refreshFiles();
      return;
    }
    if (msg.version <= this.base.version) return; // our own save coming back, or old news
    if (this.saving) {
      if (!this.pendingRemote || msg.version > this.pendingRemote.version) this.pendingRemote = msg;
      return;
    }
    this.applyTheirs(msg);
    this.o.onRemoteChange?.();
    // New references may point to files we have not listed yet.
    if (this.files.length === 0 || /\/files\//.test(msg.text)) this.refreshFiles();
    if (this.els.text.value !== this.base.text) this.scheduleSave();
  }

  private connect(): void {
    if (this.closed) return;
    const q = this.o.joinToken ? `?join_token=${encodeURIComponent(this.o.joinToken)}` : '';
    const ws = new WebSocket(`${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}/api/v1/meetings/${this.o.meetingId}/notes/live${q}`);
    this.ws = ws;
    let fatal = false;
    ws.onopen = () => {
      this.wsAttempt = 0;
      this.el.dataset.live = '1';
      const st = this.els.status.dataset.state;
      if (this.loaded && (st === 'error' || st === 'offline')) this.setStatus(this.els.text.value === this.base.text ? 'saved' : 'unsaved');
      clearInterval(this.pingTimer);
      this.pingTimer = window.setInterval(() => { if (ws.readyState === WebSocket.OPEN) ws.send('{"type":"ping"}'); }, 25_000);
    };
    ws.onmessage = (e) => {
      let m: any;
      try { m = JSON.parse(e.data); } catch { return; }
      if (m.type === 'notes') this.onRemote({ text: m.text, version: m.version, by: m.by });
      else if (m.type === 'closed') {
        // Not allowed (any more): retrying with the same credentials cannot help; a guest
        // who rejoins comes back through setJoinToken.
        fatal = ['not_allowed', 'bad_auth', 'left_meeting'].includes(m.reason);
        this.setStatus('error', m.message);
      }
    };
    ws.onclose = () => {
      if (this.ws !== ws) return;
      this.ws = null;
      this.el.dataset.live = '0';
      clearInterval(this.pingTimer);
      if (this.closed || fatal) return;
      this.wsAttempt++;
      const wait = Math.min(10_000, 500 * 2 ** this.wsAttempt) * (0.75 + Math.random() / 2);
      this.wsTimer = window.setTimeout(() => this.connect(), wait);
    };
  }

  // ---- images and files --------------------------------------------------------------------

  private onPaste(e: ClipboardEvent): void {
    const dt = e.clipboardData;
    if (!dt) return;
    const files = [...dt.files];
    if (!files.length) {
      for (const it of dt.items) if (it.kind === 'file') { const f = it.getAsFile(); if (f) files.push(f); }
    }
    if (!files.length) return; // plain text: the textarea takes it
    e.preventDefault();
    this.attach(files, true);
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
      this.setStatus('uploading', name);
      try {
        const stored = await upload(this.o.meetingId, f, name, this.headers, (x) => this.setStatus('uploading', `${name} ${Math.round(x * 100)}%`));
        const label = stored.name.replace(/[[\]\\]/g, '');
        const image = stored.content_type.startsWith('image/') && stored.content_type !== 'image/svg+xml';
        this.insertAtCaret(image ? `![${label}](${stored.url})` : `[${label}](${stored.url})`);
        this.files = [...this.files.filter((x) => x.id !== stored.id), stored];
        this.drawFiles();
      } catch (err) {
        toast(t('notes_upload_failed', { name, msg: (err as Error).message }));
      } finally {
        this.uploads--;
      }
    }
    this.setStatus(this.els.text.value === this.base.text ? 'saved' : 'unsaved');
  }

  private insertAtCaret(s: string): void {
    const ta = this.els.text;
    const a = ta.selectionStart, b = ta.selectionEnd;
    const before = ta.value.slice(0, a);
    const after = ta.value.slice(b);
    const lead = before && !before.endsWith('\n') ? '\n' : '';
    const trail = after.startsWith('\n') ? '' : '\n';
    ta.setRangeText(lead + s + trail, a, b, 'end');
    this.drawPreview();
    this.onLocalEdit();
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
      const list = await api<{ version: number; created_at: number }[]>('GET', `/meetings/${this.o.meetingId}/notes/versions`, undefined, this.headers);
      box.replaceChildren(h('ol', { class: 'versions' }, ...list.slice(0, 50).map((v) => h('li', {},
        h('span', { class: 'grow' }, `v${v.version} · ${new Date(v.created_at * 1000).toLocaleString(document.documentElement.lang, { dateStyle: 'short', timeStyle: 'short' })}`),
        v.version === this.base.version ? h('span', { class: 'muted' }, t('notes_current'))
          : h('button', { type: 'button', class: 'secondary small', onclick: () => this.restore(v.version) }, t('notes_restore', { v: v.version }))))));
    } catch (e) {
      box.replaceChildren(h('p', {}, t('error', { msg: (e as Error).message })));
    }
  }

  private async restore(v: number): Promise<void> {
    await this.flush();
    if (this.els.text.value !== this.base.text) { toast(t('notes_unsaved')); return; }
    try {
      const r = await api<NotesState>('POST', `/meetings/${this.o.meetingId}/notes/versions/${v}/restore`, { version: this.base.version }, this.headers);
      this.base = { text: r.text, version: r.version };
      this.setText(r.text);
      this.setStatus('saved');
      this.drawHistory();
    } catch (e) {
      toast(t('error', { msg: (e as Error).message }));
    }
  }

  private async mail(): Promise<void> {
    await this.flush();
    try {
      await api('POST', `/meetings/${this.o.meetingId}/notes/send`);
      toast(t('notes_mailed'));
    } catch (e) {
      toast(t('error', { msg: (e as Error).message }));
    }
  }
}
