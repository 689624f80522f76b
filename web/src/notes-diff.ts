// A history version compared with the current notes: the lines removed and added (jsdiff),
// with a few unchanged lines around each change for context.
import { diffLines } from 'diff';
import { h } from './dom';

const CONTEXT = 2;

export function diffView(older: string, newer: string, labels: { same: string; skipped: (n: number) => string }): HTMLElement {
  const parts = diffLines(older, newer);
  const box = h('div', { class: 'notes-diff', role: 'region' });
  if (parts.every((p) => !p.added && !p.removed)) {
    box.append(h('p', { class: 'muted' }, labels.same));
    return box;
  }
  parts.forEach((p, i) => {
    const lines = p.value.replace(/\n$/, '').split('\n');
    if (p.added || p.removed) {
      for (const l of lines) box.append(h(p.added ? 'ins' : 'del', {}, (p.added ? '+ ' : '- ') + l));
      return;
    }
    // Unchanged: keep a little context before and after the changes.
    const keepHead = i > 0 ? CONTEXT : 0;
    const keepTail = i < parts.length - 1 ? CONTEXT : 0;
    if (lines.length <= keepHead + keepTail + 1) { for (const l of lines) box.append(h('span', {}, '  ' + l)); return; }
    for (const l of lines.slice(0, keepHead)) box.append(h('span', {}, '  ' + l));
    box.append(h('span', { class: 'muted skipped' }, labels.skipped(lines.length - keepHead - keepTail)));
    for (const l of lines.slice(lines.length - keepTail)) box.append(h('span', {}, '  ' + l));
  });
  return box;
}
