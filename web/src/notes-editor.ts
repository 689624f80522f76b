// The part of the notes loaded only when the notes are shown (its own chunk): the editor,
// the Markdown preview and the history's diff view.
export { createEditor, type NotesEditor } from './editor';
export { render, parse, build, type RenderOpts } from './markdown';
export { diffView } from './notes-diff';
