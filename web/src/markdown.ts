// A small, safe Markdown renderer for the notes preview. It builds DOM nodes (never HTML
// strings), so anything typed into the notes is shown as text; links keep only http(s),
// mailto and same-site paths. Covers what minutes need: headings, paragraphs, lists, task
// boxes, quotes, code, rules, emphasis, links, images, and the conflict blocks that
// merge.ts leaves when two edits of the same passage could not be combined.
import { h, type Child } from './dom';
import { icon } from './icons';

export interface RenderOpts {
  /** Rewrites a link or image target (e.g. a meeting file path for a guest); null drops it. */
  url: (href: string) => string | null;
  /** Whether a link target is a meeting file (gets `download`). */
  isFile: (href: string) => boolean;
  /** An <img> for a URL (lets the caller keep loaded images across renders). */
  image: (src: string, alt: string) => HTMLImageElement;
  /** Label of a conflict block. */
  conflictLabel: string;
}

function safeHref(href: string): boolean {
  return /^(https?:|mailto:)/i.test(href) || (href.startsWith('/') && !href.startsWith('//')) || href.startsWith('#');
}

const INLINE = /(`+)([\s\S]+?)\1|!\[([^\]]*)\]\(([^)\s]+)\)|\[([^\]]+)\]\(([^)\s]+)\)|\*\*([^*]+?)\*\*|__([^_]+?)__|\*([^*\s][^*]*?)\*|(?<![\w])_([^_\s][^_]*?)_(?![\w])|~~([^~]+?)~~|(https?:\/\/[^\s<]*[^\s<.,;:!?)\]'"])/;

function inline(text: string, o: RenderOpts): Child[] {
  const out: Child[] = [];
  let rest = text;
  while (rest) {
    const m = INLINE.exec(rest);
    if (!m) { out.push(rest); break; }
    if (m.index > 0) out.push(rest.slice(0, m.index));
    rest = rest.slice(m.index + m[0].length);
    if (m[1]) out.push(h('code', {}, m[2]));
    else if (m[4] !== undefined) {
      const src = safeHref(m[4]) ? o.url(m[4]) : null;
      out.push(src ? o.image(src, m[3]) : `[${m[3]}]`);
    } else if (m[6] !== undefined) {
      const href = safeHref(m[6]) ? o.url(m[6]) : null;
      if (!href) { out.push(...inline(m[5], o)); continue; }
      const file = o.isFile(m[6]);
      out.push(h('a', { href, rel: 'noopener noreferrer', class: file ? 'file' : undefined, target: file || href.startsWith('/') ? undefined : '_blank', download: file ? m[5] : undefined },
        file ? icon('clip') : null, ...inline(m[5], o)));
    } else if (m[7] !== undefined || m[8] !== undefined) out.push(h('strong', {}, ...inline(m[7] ?? m[8], o)));
    else if (m[9] !== undefined || m[10] !== undefined) out.push(h('em', {}, ...inline(m[9] ?? m[10], o)));
    else if (m[11] !== undefined) out.push(h('del', {}, ...inline(m[11], o)));
    else if (m[12] !== undefined) out.push(h('a', { href: m[12], rel: 'noopener noreferrer', target: '_blank' }, m[12]));
  }
  return out;
}

/** Renders Markdown into a fragment. */
export function render(src: string, o: RenderOpts): DocumentFragment {
  const frag = document.createDocumentFragment();
  const ls = src.replace(/\r\n?/g, '\n').split('\n');
  let i = 0;
  const para: string[] = [];
  const flush = () => {
    if (!para.length) return;
    const parts: Child[] = [];
    para.forEach((l, k) => { if (k) parts.push(h('br')); parts.push(...inline(l, o)); });
    frag.append(h('p', {}, ...parts));
    para.length = 0;
  };
  while (i < ls.length) {
    const l = ls[i];
    let m: RegExpMatchArray | null;
    if (/^\s*$/.test(l)) { flush(); i++; continue; }
    if ((m = l.match(/^(```|~~~)(.*)$/))) {
      flush();
      const fence = m[1];
      const body: string[] = [];
      i++;
      while (i < ls.length && !ls[i].startsWith(fence)) body.push(ls[i++]);
      i++;
      frag.append(h('pre', {}, h('code', {}, body.join('\n'))));
      continue;
    }
    if (l.startsWith('<<<<<<< ')) {
      flush();
      const mine: string[] = [], theirs: string[] = [];
      let cur = mine;
      const head = l.slice(8);
      let tail = '';
      i++;
      while (i < ls.length) {
        if (ls[i] === '=======') { cur = theirs; i++; continue; }
        if (ls[i].startsWith('>>>>>>> ')) { tail = ls[i].slice(8); i++; break; }
        cur.push(ls[i++]);
      }
      frag.append(h('div', { class: 'conflict', role: 'note', 'aria-label': o.conflictLabel },
        h('div', { class: 'conflict-h' }, o.conflictLabel),
        h('div', { class: 'conflict-side' }, h('div', { class: 'muted' }, head), render(mine.join('\n'), o)),
        h('div', { class: 'conflict-side' }, h('div', { class: 'muted' }, tail), render(theirs.join('\n'), o))));
      continue;
    }
    if ((m = l.match(/^(#{1,6})\s+(.*?)\s*#*\s*$/))) {
      flush();
      frag.append(h(`h${m[1].length}` as 'h1', {}, ...inline(m[2], o)));
      i++;
      continue;
    }
    if (/^\s{0,3}([-*_])(\s*\1){2,}\s*$/.test(l)) { flush(); frag.append(h('hr')); i++; continue; }
    if (/^\s{0,3}>/.test(l)) {
      flush();
      const body: string[] = [];
      while (i < ls.length && /^\s{0,3}>/.test(ls[i])) body.push(ls[i++].replace(/^\s{0,3}>\s?/, ''));
      const q = h('blockquote');
      q.append(render(body.join('\n'), o));
      frag.append(q);
      continue;
    }
    if ((m = l.match(/^\s*([-*+]|\d+[.)])\s+/))) {
      flush();
      const ordered = /\d/.test(m[1]);
      const list = h(ordered ? 'ol' : 'ul');
      while (i < ls.length && (m = ls[i].match(/^\s*([-*+]|\d+[.)])\s+(.*)$/)) && /\d/.test(m[1]) === ordered) {
        const task = m[2].match(/^\[([ xX])\]\s+(.*)$/);
        list.append(task
          ? h('li', { class: 'task' }, h('input', { type: 'checkbox', disabled: true, checked: task[1] !== ' ', 'aria-label': task[2] }), ' ', ...inline(task[2], o))
          : h('li', {}, ...inline(m[2], o)));
        i++;
      }
      frag.append(list);
      continue;
    }
    para.push(l);
    i++;
  }
  flush();
  return frag;
}
