// The notes editor: CodeMirror 6 bound to the shared Y.Text. Plain text, no Markdown
// highlighting: CodeMirror's Markdown parser (@lezer/markdown) was measured quadratic on
// hostile input (35 s of frozen tab for 267 KB of `[a](` lines, 28 s for 256 KB of `> - `),
// and the preview beside the editor shows the rendering anyway.
//
// - Input methods (Chinese pinyin, Japanese, …): while a composition is in progress its
//   unfinished text lives only in the editor. Our sync plugin keeps those changes aside (a
//   ChangeSet relative to the shared text) and maps others' changes around them; when the
//   composition ends, the committed text goes into the shared document in one change. So
//   no pinyin ever reaches the others or the server, not even as deleted history.
// - Undo/redo per person: a Y.UndoManager that tracks only this editor's own changes, so
//   Ctrl+Z never takes back what somebody else typed.
// - Others' cursors and selections with their names: y-codemirror.next's remote selections,
//   from the awareness states (the server puts each person's real name in).
import { ChangeSet, EditorState, type Extension, type Text as CmText } from '@codemirror/state';
import { EditorView, ViewPlugin, type ViewUpdate, keymap, placeholder as cmPlaceholder } from '@codemirror/view';
import { defaultKeymap, indentWithTab } from '@codemirror/commands';
import * as Y from 'yjs';
import { YSyncConfig, ySyncAnnotation, ySyncFacet, yRemoteSelections, yRemoteSelectionsTheme } from 'y-codemirror.next';
import type { NotesLive } from './notes-live';

export interface EditorOpts {
  placeholder: string;
  label: string;
  describedBy?: string;
  /** Files pasted or dropped (images and attachments). */
  onFiles: (files: File[], pasted: boolean) => void;
  /** Ctrl+S: send now. */
  onSave: () => void;
}

export interface NotesEditor {
  view: EditorView;
  undoManager: Y.UndoManager;
  /** Inserts text at the caret on its own line (file references). */
  insertBlock(s: string): void;
  focus(): void;
  destroy(): void;
}

/** Y.Text delta → CodeMirror changes (in the shared text's coordinates). */
function deltaToChanges(delta: any[]): { from: number; to: number; insert: string }[] {
  const changes: { from: number; to: number; insert: string }[] = [];
  let pos = 0;
  for (const d of delta) {
    if (d.insert != null) changes.push({ from: pos, to: pos, insert: String(d.insert) });
    else if (d.delete != null) { changes.push({ from: pos, to: pos + d.delete, insert: '' }); pos += d.delete; }
    else pos += d.retain;
  }
  return changes;
}

/** Applies CodeMirror changes (made on a document equal to `ytext`) to `ytext`. */
function applyToY(ytext: Y.Text, changes: ChangeSet, origin: unknown): void {
  ytext.doc!.transact(() => {
    let adj = 0;
    changes.iterChanges((fromA, toA, _fromB, _toB, inserted) => {
      const s = inserted.sliceString(0, inserted.length, '\n');
      if (toA > fromA) ytext.delete(fromA + adj, toA - fromA);
      if (s) ytext.insert(fromA + adj, s);
      adj += s.length - (toA - fromA);
    });
  }, origin);
}

/** Keeps the editor and the Y.Text equal, holding back everything during a composition:
 *  our unfinished text does not go out, and others' changes wait until the composition
 *  ends (changing the text under an input method breaks it: its candidate text would be
 *  left behind as typed text). Then both are exchanged, each mapped over the other. */
function compositionSafeSync(conf: YSyncConfig, live: NotesLive): Extension {
  return ViewPlugin.fromClass(class {
    /** Local changes not yet in the shared text, from `base` (the shared text when the
     *  composition began) to the editor's text. */
    pending: ChangeSet | null = null;
    /** Others' changes not yet in the editor, from `base` to the shared text now. */
    remote: ChangeSet | null = null;
    observer: (e: Y.YTextEvent, tr: Y.Transaction) => void;
    timer = 0;

    constructor(readonly view: EditorView) {
      this.observer = (e, tr) => {
        if (tr.origin === conf) return;
        const r = ChangeSet.of(deltaToChanges(e.delta), this.yLengthBefore(e));
        if (this.holding()) {
          this.remote = this.remote ? this.remote.compose(r) : r;
          this.schedule();
          return;
        }
        view.dispatch({ changes: r, annotations: [ySyncAnnotation.of(conf)] });
      };
      conf.ytext.observe(this.observer);
    }

    holding(): boolean {
      return this.view.composing || this.pending !== null || this.remote !== null;
    }

    /** The shared text's length before event `e`. */
    yLengthBefore(e: Y.YTextEvent): number {
      let len = conf.ytext.length;
      for (const d of e.delta) {
        if (d.insert != null) len -= typeof d.insert === 'string' ? d.insert.length : 1;
        else if (d.delete != null) len += d.delete;
      }
      return len;
    }

    update(u: ViewUpdate): void {
      if (!u.docChanged || u.transactions.some((t) => t.annotation(ySyncAnnotation) === conf)) return;
      if (this.holding()) {
        this.pending = this.pending ? this.pending.compose(u.changes) : u.changes;
        this.schedule();
      } else {
        applyToY(conf.ytext, u.changes, conf);
      }
    }

    schedule(): void {
      clearTimeout(this.timer);
      this.timer = window.setTimeout(() => this.commit(), this.view.composing ? 50 : 0);
    }

    /** After the composition: others' changes into the editor, ours into the shared text. */
    commit(): void {
      if (this.view.composing) { this.schedule(); return; }
      const len = this.pending ? this.pending.length : this.remote ? this.remote.length : 0;
      const local = this.pending ?? ChangeSet.empty(len);
      const remote = this.remote ?? ChangeSet.empty(len);
      this.pending = this.remote = null;
      if (!remote.empty) this.view.dispatch({ changes: remote.map(local, true), annotations: [ySyncAnnotation.of(conf)] });
      if (!local.empty) applyToY(conf.ytext, local.map(remote, false), conf);
      live.hold(false); // others' changes kept back meanwhile arrive now, editor and text equal
    }

    destroy(): void { clearTimeout(this.timer); conf.ytext.unobserve(this.observer); live.hold(false); }
  }, {
    eventHandlers: {
      compositionstart() { live.hold(true); },
      compositionend(this: any) { this.schedule(); },
    },
  });
}

export function createEditor(parent: HTMLElement, live: NotesLive, o: EditorOpts): NotesEditor {
  const conf = new YSyncConfig(live.text, live.awareness);
  const um = new Y.UndoManager(live.text, { trackedOrigins: new Set([conf]), captureTimeout: 500 });
  const undo = () => { um.undo(); return true; };
  const redo = () => { um.redo(); return true; };
  const state = EditorState.create({
    doc: live.text.toString(),
    extensions: [
      keymap.of([
        { key: 'Mod-z', run: undo, preventDefault: true },
        { key: 'Mod-y', mac: 'Mod-Shift-z', run: redo, preventDefault: true },
        { key: 'Mod-Shift-z', run: redo, preventDefault: true },
        { key: 'Mod-s', run: () => { o.onSave(); return true; }, preventDefault: true },
      ]),
      keymap.of([...defaultKeymap, indentWithTab]),
      EditorView.lineWrapping,
      cmPlaceholder(o.placeholder),
      EditorView.contentAttributes.of({ 'aria-label': o.label, 'aria-multiline': 'true', ...(o.describedBy ? { 'aria-describedby': o.describedBy } : {}) }),
      ySyncFacet.of(conf),
      compositionSafeSync(conf, live),
      yRemoteSelectionsTheme,
      yRemoteSelections,
      EditorView.domEventHandlers({
        beforeinput(e) {
          if (e.inputType === 'historyUndo') { e.preventDefault(); return undo(); }
          if (e.inputType === 'historyRedo') { e.preventDefault(); return redo(); }
          return false;
        },
        paste(e) {
          const dt = e.clipboardData;
          if (!dt) return false;
          const files = [...dt.files];
          if (!files.length) for (const it of dt.items) if (it.kind === 'file') { const f = it.getAsFile(); if (f) files.push(f); }
          if (!files.length) return false; // text: the editor takes it
          e.preventDefault();
          o.onFiles(files, true);
          return true;
        },
        drop(e) {
          const files = [...(e.dataTransfer?.files || [])];
          if (!files.length) return false;
          e.preventDefault();
          o.onFiles(files, false);
          return true;
        },
      }),
    ],
  });
  const view = new EditorView({ state, parent });
  return {
    view,
    undoManager: um,
    insertBlock(s: string) {
      const doc: CmText = view.state.doc;
      const at = view.state.selection.main;
      const before = doc.sliceString(Math.max(0, at.from - 1), at.from);
      const after = doc.sliceString(at.to, at.to + 1);
      const text = (at.from > 0 && before !== '\n' ? '\n' : '') + s + (after === '\n' ? '' : '\n');
      view.dispatch({ changes: { from: at.from, to: at.to, insert: text }, selection: { anchor: at.from + text.length }, userEvent: 'input.paste' });
    },
    focus() { view.focus(); },
    destroy() { um.destroy(); view.destroy(); },
  };
}
