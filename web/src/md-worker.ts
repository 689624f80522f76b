// Parses Markdown off the main thread for the notes preview (markdown.ts builds the DOM).
import { parser } from './markdown-parser';

const md = parser();
self.onmessage = (e: MessageEvent<{ id: number; src: string }>) => {
  let tokens = null;
  try { tokens = md.parse(e.data.src, {}); } catch { /* the page parses it itself */ }
  (self as unknown as Worker).postMessage({ id: e.data.id, tokens });
};
