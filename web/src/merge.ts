// Three-way merge of two edits of the same notes (a diff3 on lines, refined on characters).
// Used when the server says our change was made on a stale version (409) and when someone
// else's change arrives while we have unsaved typing: both edits are kept. Where they touch
// the same passage and cannot be told apart, both versions stay in the text between
// conflict markers, so nothing anybody typed is ever lost.

/** One changed region: `o[oS..oE)` became `x[xS..xE)`. */
interface Hunk { oS: number; oE: number; xS: number; xE: number }

/** Above this many cells the LCS table is skipped and the middle becomes one hunk. */
const MAX_CELLS = 2_000_000;

function diff<T>(o: T[], x: T[]): Hunk[] {
  let p = 0;
  while (p < o.length && p < x.length && o[p] === x[p]) p++;
  let s = 0;
  while (s < o.length - p && s < x.length - p && o[o.length - 1 - s] === x[x.length - 1 - s]) s++;
  const n = o.length - p - s, m = x.length - p - s;
  if (n === 0 && m === 0) return [];
  if (n === 0 || m === 0 || n * m > MAX_CELLS) return [{ oS: p, oE: p + n, xS: p, xE: p + m }];
  // L[i][j] = LCS length of o[p+i..] and x[p+j..].
  const w = m + 1;
  const L = new Uint32Array((n + 1) * w);
  for (let i = n - 1; i >= 0; i--) {
    for (let j = m - 1; j >= 0; j--) {
      L[i * w + j] = o[p + i] === x[p + j] ? L[(i + 1) * w + j + 1] + 1 : Math.max(L[(i + 1) * w + j], L[i * w + j + 1]);
    }
  }
  const hunks: Hunk[] = [];
  let cur: Hunk | null = null;
  let i = 0, j = 0;
  while (i < n || j < m) {
    if (i < n && j < m && o[p + i] === x[p + j]) {
      if (cur) { hunks.push(cur); cur = null; }
      i++; j++;
      continue;
    }
    if (!cur) cur = { oS: p + i, oE: p + i, xS: p + j, xE: p + j };
    if (j < m && (i >= n || L[i * w + j + 1] >= L[(i + 1) * w + j])) { j++; cur.xE = p + j; } else { i++; cur.oE = p + i; }
  }
  if (cur) hunks.push(cur);
  return hunks;
}

export type Region<T> = { ok: T[] } | { conflict: { base: T[]; mine: T[]; theirs: T[] } };

/** diff3: the regions of the merge of `mine` and `theirs`, both made from `base`. */
export function merge3<T>(base: T[], mine: T[], theirs: T[]): Region<T>[] {
  const hm = diff(base, mine).map((h) => ({ ...h, side: 0 }));
  const ht = diff(base, theirs).map((h) => ({ ...h, side: 1 }));
  const all = [...hm, ...ht].sort((a, b) => a.oS - b.oS || a.oE - b.oE);
  const out: Region<T>[] = [];
  let at = 0;
  for (let k = 0; k < all.length;) {
    // A group: hunks whose base ranges overlap or touch (from either side).
    const gS = all[k].oS;
    let gE = all[k].oE;
    const group = [all[k++]];
    while (k < all.length && all[k].oS <= gE) { gE = Math.max(gE, all[k].oE); group.push(all[k++]); }
    if (gS > at) out.push({ ok: base.slice(at, gS) });
    const side = (s: number, text: T[]): T[] | null => {
      const hs = group.filter((h) => h.side === s);
      if (!hs.length) return null;
      const first = hs[0], last = hs[hs.length - 1];
      return text.slice(first.xS - (first.oS - gS), last.xE + (gE - last.oE));
    };
    const a = side(0, mine), b = side(1, theirs);
    if (a && b) {
      if (a.length === b.length && a.every((v, i) => v === b[i])) out.push({ ok: a });
      else out.push({ conflict: { base: base.slice(gS, gE), mine: a, theirs: b } });
    } else {
      out.push({ ok: (a || b) as T[] });
    }
    at = gE;
  }
  if (at < base.length) out.push({ ok: base.slice(at) });
  return out;
}

function lines(s: string): string[] {
  return s.match(/[^\n]*\n|[^\n]+/g) || [];
}

export interface Merged { text: string; conflicts: number }

/** Merges two texts made from `base`. Overlapping edits are kept both, between markers. */
export function mergeText(base: string, mine: string, theirs: string, labels: { mine: string; theirs: string }): Merged {
  if (mine === base || mine === theirs) return { text: theirs, conflicts: 0 };
  if (theirs === base) return { text: mine, conflicts: 0 };
  let text = '';
  let conflicts = 0;
  for (const r of merge3(lines(base), lines(mine), lines(theirs))) {
    if ('ok' in r) { text += r.ok.join(''); continue; }
    const a = r.conflict.mine.join(''), b = r.conflict.theirs.join('');
    const nl = (s: string) => (s === '' || s.endsWith('\n') ? s : s + '\n');
    // Both added lines at the same place: keep both, theirs (saved already) first.
    if (r.conflict.base.length === 0) { text += nl(b) + a; continue; }
    // Two edits of the same lines: often they are at different places within them.
    const fine = fineMerge(r.conflict.base.join(''), a, b);
    if (fine !== null) { text += fine; continue; }
    conflicts++;
    if (text !== '' && !text.endsWith('\n')) text += '\n';
    text += `<<<<<<< ${labels.mine}\n${nl(a)}=======\n${nl(b)}>>>>>>> ${labels.theirs}\n`;
  }
  return { text, conflicts };
}

/**
 * A character-level merge of one passage, or null when the edits overlap. Two insertions at
 * the same point are ordered when one starts a new line (typing at the end of a line while
 * someone adds the next line), else they overlap.
 */
function fineMerge(base: string, mine: string, theirs: string): string | null {
  let out = '';
  for (const r of merge3([...base], [...mine], [...theirs])) {
    if ('ok' in r) { out += r.ok.join(''); continue; }
    if (r.conflict.base.length) return null;
    const a = r.conflict.mine.join(''), b = r.conflict.theirs.join('');
    if (b.startsWith('\n')) out += a + b;
    else if (a.startsWith('\n')) out += b + a;
    else return null;
  }
  return out;
}
