// Keyboard shortcuts in the room and their help overlay (opened with "?").
// Keys are ignored while typing in a field or in the notes editor.
import { h } from './dom';
import { t, type Key } from './i18n';

export interface Shortcut { key: string; label: Key; run: () => void }

export function shortcutsFor(actions: Record<'mic' | 'cam' | 'hand' | 'chat' | 'layout' | 'help' | 'details', () => void>): Shortcut[] {
  return [
    { key: 'm', label: 'sc_mic', run: actions.mic },
    { key: 'v', label: 'sc_cam', run: actions.cam },
    { key: 'h', label: 'sc_hand', run: actions.hand },
    { key: 'c', label: 'sc_chat', run: actions.chat },
    { key: 'l', label: 'sc_layout', run: actions.layout },
    { key: 'i', label: 'sc_details', run: actions.details },
    { key: '?', label: 'sc_help', run: actions.help },
  ];
}

function typing(e: KeyboardEvent): boolean {
  const el = e.target as HTMLElement | null;
  if (!el) return false;
  return el.isContentEditable || ['INPUT', 'TEXTAREA', 'SELECT'].includes(el.tagName) || !!el.closest('.cm-editor');
}

/** Installs the keys; returns what removes them. */
export function installShortcuts(list: Shortcut[]): () => void {
  const on = (e: KeyboardEvent) => {
    if (e.ctrlKey || e.metaKey || e.altKey || typing(e)) return;
    const s = list.find((x) => x.key === e.key.toLowerCase() || x.key === e.key);
    if (!s) return;
    e.preventDefault();
    s.run();
  };
  document.addEventListener('keydown', on);
  return () => document.removeEventListener('keydown', on);
}

/** The help overlay: a modal dialog listing the keys; Escape or the button closes it. */
export function helpDialog(list: Shortcut[], onClose: () => void): HTMLElement {
  const close = h('button', { type: 'button', id: 'help-close', class: 'secondary', onclick: onClose }, t('close'));
  const d = h('div', { class: 'overlay', id: 'help', role: 'dialog', 'aria-modal': 'true', 'aria-labelledby': 'help-h' },
    h('div', { class: 'card' },
      h('h2', { id: 'help-h' }, t('sc_title')),
      h('dl', { class: 'keys' }, ...list.flatMap((s) => [h('dt', {}, h('kbd', {}, s.key.toUpperCase())), h('dd', {}, t(s.label))])),
      close));
  d.addEventListener('keydown', (e) => { if (e.key === 'Escape') { e.stopPropagation(); onClose(); } });
  setTimeout(() => close.focus(), 0);
  return d;
}
