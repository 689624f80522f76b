// Running a meeting, the parts the room draws for it: the waiting screen, the lobby and the
// host tools in the people panel, the hand queue, chat lines with safe links, the knock sound,
// and the per-meeting settings page for the owner. The server enforces all of it (roles,
// lobby, permissions, private chat); this only shows it and sends the host's choices.
import type { Participant } from '../static/rtc.js';
import { api, ApiError, type Meeting } from './api';
import { h, mount, toast } from './dom';
import { t } from './i18n';

export interface LobbyEntry { participant_id: string; name: string; role: string; since: number }
export interface ChatMsg { participant_id: string; name: string; text: string; at: number; to?: string; to_hosts?: boolean }

/** Host actions as the server takes them (src/proto/room.rs `RoomAction`). */
export type HostAction = { action: string; participant_id?: string | null; [k: string]: unknown };

/** Text with its http(s) links as links that open apart from the meeting and tell the other
 *  site nothing; everything else stays text (never HTML). */
export function linkify(text: string): Node[] {
  const out: Node[] = [];
  const re = /\bhttps?:\/\/[^\s<>"']+/gi;
  let at = 0;
  for (const m of text.matchAll(re)) {
    let url = m[0].replace(/[.,;:!?)\]]+$/, '');
    const start = m.index ?? 0;
    if (start > at) out.push(document.createTextNode(text.slice(at, start)));
    let ok = false;
    try { const u = new URL(url); ok = u.protocol === 'https:' || u.protocol === 'http:'; url = u.href; } catch { ok = false; }
    const raw = text.slice(start, start + m[0].replace(/[.,;:!?)\]]+$/, '').length);
    out.push(ok ? h('a', { href: url, target: '_blank', rel: 'noopener noreferrer nofollow', referrerpolicy: 'no-referrer', class: 'chat-link' }, raw) : document.createTextNode(raw));
    at = start + raw.length;
  }
  if (at < text.length) out.push(document.createTextNode(text.slice(at)));
  return out;
}

let audioCtx: AudioContext | null = null;
/** Knock-knock: two short tones when someone starts waiting. Returns whether it played. */
export function knock(): boolean {
  try {
    audioCtx = audioCtx || new AudioContext();
    const ctx = audioCtx;
    for (const [i, f] of [[0, 880], [1, 660]]) {
      const o = ctx.createOscillator();
      const g = ctx.createGain();
      o.frequency.value = f;
      g.gain.value = 0.08;
      o.connect(g).connect(ctx.destination);
      o.start(ctx.currentTime + i * 0.18);
      o.stop(ctx.currentTime + i * 0.18 + 0.15);
    }
    (window as any).knocks = ((window as any).knocks || 0) + 1;
    return true;
  } catch { return false; }
}

/** What someone is, for labels ("host" for the owner, as before). */
export function roleLabel(p: Participant): string {
  if (p.role === 'cohost') return ` · ${t('cohost')}`;
  if (p.host) return ` · ${t('host')}`;
  if (p.role === 'guest') return ` · ${t('guest')}`;
  return '';
}

/** The waiting screen of someone in the lobby. */
export function waitingScreen(title: string): HTMLElement {
  return h('section', { class: 'lobby-wait card', id: 'lobby-wait', role: 'status', 'aria-live': 'polite' },
    h('h2', { id: 'lobby-title' }, title),
    h('div', { class: 'spinner', 'aria-hidden': 'true' }),
    h('p', { id: 'lobby-text' }, t('waiting_text')));
}

/** What a host typed as the reason for denying (kept while the panel is drawn again). */
let denyReason = '';

/** Hosts: who waits, with let in / deny each or all. */
export function lobbyPanel(waiting: LobbyEntry[], act: (a: HostAction) => void): HTMLElement | '' {
  if (!waiting.length) return '';
  const reason = h('input', { id: 'deny-reason', maxlength: 200, autocomplete: 'off', placeholder: t('deny_reason'), 'aria-label': t('deny_reason'), value: denyReason });
  reason.addEventListener('input', () => { denyReason = (reason as HTMLInputElement).value; });
  const why = () => (reason as HTMLInputElement).value.trim() || null;
  return h('section', { class: 'lobby', id: 'lobby', 'aria-labelledby': 'lobby-h' },
    h('h3', { id: 'lobby-h' }, t('lobby', { n: waiting.length })),
    h('ul', { class: 'people' }, ...waiting.map((w) => h('li', { 'data-pid': w.participant_id },
      h('span', { class: 'grow' }, `${w.name}${w.role === 'guest' ? ` · ${t('guest')}` : ''}`),
      h('button', { type: 'button', class: 'small lobby-admit', 'aria-label': t('admit_name', { name: w.name }), onclick: () => act({ action: 'admit', participant_id: w.participant_id }) }, t('admit')),
      h('button', { type: 'button', class: 'danger small lobby-deny', 'aria-label': t('deny_name', { name: w.name }), onclick: () => act({ action: 'deny', participant_id: w.participant_id, reason: why() }) }, t('deny'))))),
    reason,
    h('div', { class: 'row' },
      h('button', { type: 'button', class: 'small', id: 'lobby-admit-all', onclick: () => act({ action: 'admit' }) }, t('admit_all')),
      h('button', { type: 'button', class: 'danger small', id: 'lobby-deny-all', onclick: () => act({ action: 'deny', reason: why() }) }, t('deny_all'))));
}

/** Hosts: raised hands, first raised first. */
export function handQueue(people: Participant[], act: (a: HostAction) => void): HTMLElement | '' {
  const up = people.filter((p) => p.hand_raised).sort((a, b) => (a.hand_at || 0) - (b.hand_at || 0));
  if (!up.length) return '';
  return h('section', { class: 'hands', 'aria-labelledby': 'hands-h' },
    h('h3', { id: 'hands-h' }, t('hand_queue')),
    h('ol', { id: 'hand-queue' }, ...up.map((p) => h('li', { 'data-pid': p.participant_id },
      h('span', { class: 'grow' }, p.name),
      h('button', { type: 'button', class: 'secondary small', 'aria-label': t('lower_hand_name', { name: p.name }), onclick: () => act({ action: 'lower_hand', participant_id: p.participant_id }) }, t('lower'))))),
    h('button', { type: 'button', class: 'secondary small', id: 'host-lower-all', onclick: () => act({ action: 'lower_hands' }) }, t('lower_all')));
}

/** Hosts: everyone at once, and what participants may publish. */
export function hostTools(perm: { cameras: boolean; screens: boolean }, act: (a: HostAction) => void): HTMLElement {
  const check = (id: string, label: string, on: boolean, set: (v: boolean) => void) => {
    const i = h('input', { type: 'checkbox', id, checked: on });
    i.addEventListener('change', () => set((i as HTMLInputElement).checked));
    return h('div', { class: 'check' }, i, h('label', { for: id }, label));
  };
  return h('section', { class: 'host-tools', 'aria-label': t('host_tools') },
    h('div', { class: 'row' },
      h('button', { type: 'button', class: 'secondary small', id: 'host-mute-all', onclick: () => act({ action: 'mute_all' }) }, t('mute_all')),
      h('button', { type: 'button', class: 'secondary small', id: 'host-ask-unmute', onclick: () => act({ action: 'ask_unmute' }) }, t('ask_unmute'))),
    check('perm-cameras', t('allow_cameras'), perm.cameras, (v) => act({ action: 'permissions', cameras: v, screens: perm.screens })),
    check('perm-screens', t('allow_screens'), perm.screens, (v) => act({ action: 'permissions', cameras: perm.cameras, screens: v })));
}

/** One chat line: who, when, to whom (private), the text with safe links. */
export function chatLine(m: ChatMsg, mine: boolean, nameOf: (pid: string) => string): HTMLElement {
  const priv = m.to ? t('chat_private_to', { name: nameOf(m.to) || '…' }) : m.to_hosts ? t('chat_to_hosts') : '';
  return h('li', { class: `${mine ? 'mine' : ''}${priv ? ' private' : ''}` },
    h('span', { class: 'who' }, m.name), priv ? h('span', { class: 'to' }, priv) : '',
    h('time', { datetime: new Date(m.at * 1000).toISOString() }, new Date(m.at * 1000).toLocaleTimeString(document.documentElement.lang, { timeStyle: 'short' })),
    h('p', {}, ...linkify(m.text)));
}

/** The recipient picker of the chat form: everyone, the hosts, or one person. */
export function chatTo(current: string, people: Participant[], me: string, onChange: (v: string) => void): HTMLElement {
  const s = h('select', { id: 'chat-to', 'aria-label': t('chat_to') },
    h('option', { value: '', selected: current === '' }, t('chat_everyone')),
    h('option', { value: 'hosts', selected: current === 'hosts' }, t('chat_hosts')),
    ...people.filter((p) => p.participant_id !== me).map((p) => h('option', { value: p.participant_id, selected: current === p.participant_id }, p.name)));
  s.addEventListener('change', () => onChange((s as HTMLSelectElement).value));
  return s;
}

/** The owner's page for one meeting's settings (PATCH /api/v1/meetings/{id}). */
export async function settingsPage(root: HTMLElement, header: HTMLElement, id: number, back: () => void): Promise<void> {
  let m: Meeting;
  try { m = await api<Meeting>('GET', `/meetings/${id}`); } catch (e) {
    mount(root, header, h('main', { class: 'center' }, h('p', { class: 'error', id: 'settings-error' }, (e as Error).message)));
    return;
  }
  const lobby = h('select', { id: 's-lobby' }, ...(['off', 'guests', 'everyone'] as const).map((v) => h('option', { value: v, selected: m.lobby === v }, t(`s_lobby_${v}`))));
  const pass = h('input', { id: 's-passcode', maxlength: 32, autocomplete: 'off', value: m.passcode || '', pattern: '[A-Za-z0-9]{4,32}' });
  const guests = h('input', { type: 'checkbox', id: 's-guests', checked: m.guests_allowed !== false });
  const cohosts = h('input', { id: 's-cohosts', autocomplete: 'off', value: (m.cohosts || []).join(', ') });
  const chatNotes = h('input', { type: 'checkbox', id: 's-chat-notes', checked: !!m.chat_in_notes });
  const screen = h('select', { id: 's-screen' }, ...(['everyone', 'hosts'] as const).map((v) => h('option', { value: v, selected: m.screen_share === v }, t(`s_screen_${v}`))));
  const err = h('p', { class: 'error', id: 's-error', role: 'alert', hidden: true });
  const form = h('form', { class: 'card', id: 'meeting-settings', 'aria-labelledby': 's-h' },
    h('h1', { id: 's-h' }, t('meeting_settings_for', { title: m.kind === 'instant' ? t('instant_room') : m.title })),
    h('label', { for: 's-lobby' }, t('s_lobby')), lobby,
    h('label', { for: 's-passcode' }, t('s_passcode')), pass,
    h('div', { class: 'check' }, guests, h('label', { for: 's-guests' }, t('s_guests'))),
    h('label', { for: 's-cohosts' }, t('s_cohosts')), cohosts,
    h('label', { for: 's-screen' }, t('s_screen')), screen,
    h('div', { class: 'check' }, chatNotes, h('label', { for: 's-chat-notes' }, t('s_chat_notes'))),
    err,
    h('div', { class: 'row' },
      h('button', { type: 'submit', id: 's-save' }, t('s_save')),
      h('button', { type: 'button', class: 'secondary', onclick: back }, t('s_back'))));
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    err.hidden = true;
    try {
      await api('PATCH', `/meetings/${id}`, {
        lobby: (lobby as HTMLSelectElement).value,
        passcode: (pass as HTMLInputElement).value.trim(),
        guests_allowed: (guests as HTMLInputElement).checked,
        cohosts: (cohosts as HTMLInputElement).value.split(/[,;\s]+/).map((s) => s.trim()).filter(Boolean),
        screen_share: (screen as HTMLSelectElement).value,
        chat_in_notes: (chatNotes as HTMLInputElement).checked,
      });
      toast(t('s_saved'));
    } catch (x) {
      err.textContent = x instanceof ApiError ? x.message : String(x);
      err.hidden = false;
    }
  });
  mount(root, header, h('main', { class: 'center' }, form));
}
