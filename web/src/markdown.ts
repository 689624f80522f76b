// The notes preview: Markdown parsed by markdown-it (CommonMark + GFM tables and
// strikethrough, raw HTML off, so anything typed shows as text), in a worker so a large or
// hostile document never freezes the editor, then built into DOM nodes here (never an HTML
// string). Task list items (`- [ ]`, `- [x]`) become disabled checkboxes, as in the mailed
// copy (pulldown-cmark).
//
// Links: each target is resolved with `URL` against this page. Same origin → a link inside the
// app; an absolute http(s)/mailto URL elsewhere → opens in a new tab without referrer; anything
// else (javascript:, data:, a path that really leads elsewhere such as `//evil.example`) → no
// link, just the text. Images: only this meeting's own files (served by our fsserver, the
// only image source the page's CSP allows besides itself); any other image is not loaded.
import type { Parser } from './markdown-parser';
import { h, type Child } from './dom';
import { icon } from './icons';

export interface RenderOpts {
  /** A same-origin path of this meeting's file → the URL to load it by; null: not ours. */
  fileUrl: (path: string) => string | null;
  /** An <img> for a file URL (lets the caller keep loaded images across renders). */
  image: (src: string, alt: string) => HTMLImageElement;
  /** Label of an image that is not loaded ("{alt}" is replaced). */
  blockedImage: string;
}

/** The fields of markdown-it's tokens that rendering uses (they survive postMessage). */
export interface Tok {
  type: string; tag: string; nesting: number; attrs: [string, string][] | null;
  content: string; children: Tok[] | null; info: string; hidden: boolean;
}

let md: Parser | null = null;
let worker: Worker | null = null;
let workerFailed = false;
let nextId = 1;
const waiting = new Map<number, (t: Tok[] | null) => void>();

/** Parses in the worker (or here, when workers are unavailable). */
export function parse(src: string): Promise<Tok[]> {
  if (!worker && !workerFailed) {
    try {
      worker = new Worker(new URL('./md-worker.ts', import.meta.url), { type: 'module' });
      worker.onmessage = (e) => {
        const w = waiting.get(e.data.id);
        waiting.delete(e.data.id);
        w?.(e.data.json === null ? null : unslim(JSON.parse(e.data.json)));
      };
      worker.onerror = () => {
        workerFailed = true; worker = null;
        for (const w of waiting.values()) w(null);
        waiting.clear();
      };
    } catch { workerFailed = true; }
  }
  if (worker) {
    const id = nextId++;
    const w = worker;
    return new Promise<Tok[] | null>((resolve) => { waiting.set(id, resolve); w.postMessage({ id, src }); })
      .then((t) => t ?? parseHere(src));
  }
  return parseHere(src);
}

/** Without a worker: markdown-it is loaded into the page (its own chunk) only then. */
async function parseHere(src: string): Promise<Tok[]> {
  md ??= (await import('./markdown-parser')).parser();
  return md.parse(src, {}) as unknown as Tok[];
}

type Slim = [string, string, number, [string, string][] | null, string, Slim[] | null, number];
const unslim = (a: Slim[]): Tok[] => a.map(([type, tag, nesting, attrs, content, children, hidden]) =>
  ({ type, tag, nesting, attrs, content, children: children && unslim(children), info: '', hidden: hidden === 1 }));

function attr(t: Tok, name: string): string | null {
  return t.attrs?.find((a) => a[0] === name)?.[1] ?? null;
}

type Target = { kind: 'internal' | 'external' | 'anchor'; href: string; path?: string } | null;

/** Where a link or image points, by the rules in the module comment. */
export function classify(href: string): Target {
  const raw = href.trim();
  if (raw.startsWith('#')) return { kind: 'anchor', href: raw };
  let u: URL;
  try { u = new URL(raw, location.href); } catch { return null; }
  if (u.protocol === 'mailto:') return { kind: 'external', href: u.href };
  if (u.protocol !== 'http:' && u.protocol !== 'https:') return null;
  if (u.origin === location.origin) return { kind: 'internal', href: u.pathname + u.search + u.hash, path: u.pathname };
  // Elsewhere: only when written as a full URL, not a path that leads off-site.
  return /^(https?:)?\/\//i.test(raw) && /^https?:/i.test(raw) ? { kind: 'external', href: u.href } : null;
}

const TAGS = new Set(['p', 'h1', 'h2', 'h3', 'h4', 'h5', 'h6', 'ul', 'ol', 'li', 'blockquote', 'table', 'thead', 'tbody', 'tr', 'th', 'td', 'em', 'strong', 's', 'hr']);

function inline(children: Tok[], o: RenderOpts, out: Node): void {
  const stack: Node[] = [out];
  const top = () => stack[stack.length - 1];
  for (let i = 0; i < children.length; i++) {
    const t = children[i];
    switch (t.type) {
      case 'text': top().appendChild(document.createTextNode(t.content)); break;
      case 'softbreak': top().appendChild(document.createTextNode('\n')); break;
      case 'hardbreak': top().appendChild(h('br')); break;
      case 'code_inline': top().appendChild(h('code', {}, t.content)); break;
      case 'image': {
        const alt = (t.children || []).map((c) => c.content).join('');
        const target = classify(attr(t, 'src') || '');
        const src = target?.kind === 'internal' && target.path ? o.fileUrl(target.path) : null;
        top().appendChild(src ? o.image(src, alt)
          : h('span', { class: 'img-blocked', title: attr(t, 'src') || '' }, o.blockedImage.replace('{alt}', alt)));
        break;
      }
      case 'link_open': {
        const target = classify(attr(t, 'href') || '');
        let el: HTMLElement;
        if (!target) el = h('span', { class: 'link-dropped' });
        else if (target.kind === 'internal') {
          const file = target.path ? o.fileUrl(target.path) : null;
          el = file ? h('a', { href: file, class: 'file', download: '' }, icon('clip')) : h('a', { href: target.href });
        } else if (target.kind === 'anchor') el = h('a', { href: target.href });
        else el = h('a', { href: target.href, target: '_blank', rel: 'noopener noreferrer nofollow', class: 'external' });
        top().appendChild(el);
        stack.push(el);
        break;
      }
      case 'link_close': {
        const el = stack.pop() as HTMLElement;
        if (el.getAttribute?.('download') === '') el.setAttribute('download', el.textContent || 'file');
        break;
      }
      default:
        if (t.nesting === 1 && TAGS.has(t.tag)) { const el = document.createElement(t.tag); top().appendChild(el); stack.push(el); }
        else if (t.nesting === -1 && TAGS.has(t.tag)) { if (stack.length > 1) stack.pop(); }
        else if (t.content) top().appendChild(document.createTextNode(t.content));
    }
  }
}

/** Builds the DOM for parsed tokens. */
export function build(tokens: Tok[], o: RenderOpts): DocumentFragment {
  const frag = document.createDocumentFragment();
  const stack: Node[] = [frag];
  const top = () => stack[stack.length - 1];
  for (let i = 0; i < tokens.length; i++) {
    const t = tokens[i];
    if (t.type === 'inline') {
      let kids = t.children || [];
      // A task list item: "[ ] " or "[x] " at the start of its first paragraph.
      const li = tokens[i - 2]?.type === 'list_item_open' ? stack[stack.length - (tokens[i - 1].hidden ? 1 : 2)] as HTMLElement : null;
      const m = li && kids[0]?.type === 'text' ? /^\[([ xX])\]\s+/.exec(kids[0].content) : null;
      if (li && m) {
        li.classList.add('task');
        top().appendChild(h('input', { type: 'checkbox', disabled: true, checked: m[1] !== ' ', 'aria-label': t.content.slice(m[0].length, 80) }));
        top().appendChild(document.createTextNode(' '));
        kids = [{ ...kids[0], content: kids[0].content.slice(m[0].length) }, ...kids.slice(1)];
      }
      inline(kids, o, top());
      continue;
    }
    if (t.hidden) continue; // paragraphs of tight lists
    if (t.type === 'fence' || t.type === 'code_block') { top().appendChild(h('pre', {}, h('code', {}, t.content))); continue; }
    if (t.type === 'hr') { top().appendChild(h('hr')); continue; }
    if (t.nesting === 1) {
      const el = document.createElement(TAGS.has(t.tag) ? t.tag : 'div');
      const start = t.tag === 'ol' ? attr(t, 'start') : null;
      if (start) el.setAttribute('start', String(Number(start) || 1));
      const align = attr(t, 'style')?.match(/text-align:(left|right|center)/)?.[1];
      if (align) el.style.textAlign = align;
      top().appendChild(el);
      stack.push(el);
    } else if (t.nesting === -1) {
      if (stack.length > 1) stack.pop();
    } else if (t.content) {
      top().appendChild(h('p', {}, t.content as Child));
    }
  }
  return frag;
}

/** Parses (off the main thread when possible) and builds. */
export async function render(src: string, o: RenderOpts): Promise<DocumentFragment> {
  return build(await parse(src), o);
}
