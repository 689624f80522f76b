// Parses Markdown off the main thread for the notes preview (markdown.ts builds the DOM).
// Tokens go back slimmed to what rendering uses, as one JSON string (far cheaper to pass
// than ~150,000 token objects).
import { parser } from './markdown-parser';

type Slim = [string, string, number, [string, string][] | null, string, Slim[] | null, number];

const md = parser();
const slim = (ts: any[]): Slim[] => ts.map((t) => [t.type, t.tag, t.nesting, t.attrs, t.content, t.children ? slim(t.children) : null, t.hidden ? 1 : 0]);

self.onmessage = (e: MessageEvent<{ id: number; src: string }>) => {
  let json: string | null = null;
  try { json = JSON.stringify(slim(md.parse(e.data.src, {}))); } catch { /* the page parses it itself */ }
  (self as unknown as Worker).postMessage({ id: e.data.id, json });
};
