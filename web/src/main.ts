// The meeting-appliance web client: sign-in, home, pre-join and the meeting room.
// Plain TypeScript and the DOM: no framework (the whole client is a few screens).
import { api, ApiError, me, type Meeting, type User } from './api';
import { h, mount, toast } from './dom';
import { t, toggleLang, type Key } from './i18n';
import { Room, type RoomEnd } from './room';
import { NotesPanel } from './notes';
import { adminPage } from './admin';
import { prejoinScreen, type JoinChoice } from './prejoin';
import { LocalMedia, loadEffects } from './effects';
import { settingsPage } from './hosting';

performance.mark('module-start');
const app = document.getElementById('app') as HTMLElement;
let rerender: () => void = () => {};
let user: User | null = null;
/** Undoes what the current screen keeps running (the notes page's live connection). */
let leaveScreen: () => void = () => {};

function header(): HTMLElement {
  return h('header', { class: 'top' },
    h('a', { href: '/', class: 'brand', onclick: (e: Event) => { e.preventDefault(); go('/'); } }, t('app')),
    h('span', { class: 'grow' }),
    user?.admin ? h('a', { href: '/#admin', id: 'admin-link', onclick: (e: Event) => { e.preventDefault(); go('/#admin'); } }, t('admin')) : null,
    user ? h('span', { class: 'who' }, t('signed_in_as', { email: user.email })) : null,
    user ? h('button', { type: 'button', class: 'link', onclick: signOut }, t('sign_out')) : null,
    langButton(),
  );
}

export function langButton(): HTMLElement {
  return h('button', {
    type: 'button', class: 'lang', 'aria-label': t('lang_switch_label'), id: 'lang',
    onclick: () => { toggleLang(); rerender(); },
  }, t('lang_switch'));
}

function go(path: string): void {
  history.pushState(null, '', path);
  route();
}
window.addEventListener('popstate', () => route());
window.addEventListener('hashchange', () => route());

async function signOut(): Promise<void> {
  const r = await api<{ logout_url?: string } | undefined>('POST', '/auth/logout').catch(() => undefined);
  user = null;
  // A session from the company's identity provider: end the provider's session too; it sends
  // the browser back to /.
  if (r?.logout_url) { location.href = r.logout_url; return; }
  go('/');
}

function fail(e: unknown): void {
  toast(t('error', { msg: e instanceof Error ? e.message : String(e) }));
}

// ---- sign-in -----------------------------------------------------------------------------

/** One way to sign in, as GET /api/v1/auth/methods lists them (`auth.methods`, in order). */
interface Method { method: 'email_code' | 'oidc' | 'ldap'; name?: string; login_url?: string }

async function signInMethods(): Promise<Method[]> {
  try { return (await api<{ methods: Method[] }>('GET', '/auth/methods')).methods; } catch { return [{ method: 'email_code' }]; }
}

/** An error the identity provider's round trip came back with (`/?sso_error=…`), taken from
 *  the address once so a reload does not show it again. */
let ssoError: string | null = null;
function takeSsoError(): void {
  const q = new URLSearchParams(location.search);
  const e = q.get('sso_error');
  if (!e) return;
  ssoError = /^[a-z_]{1,40}$/.test(e) ? e : 'generic';
  q.delete('sso_error');
  const rest = q.toString();
  history.replaceState(null, '', location.pathname + (rest ? '?' + rest : '') + location.hash);
}

function ssoErrorText(code: string): string {
  // t() gives undefined for a key it does not know (an error code newer than this client).
  return (t(`sso_error_${code}` as Key) as string | undefined) || t('sso_error_generic');
}

async function signIn(then: () => void): Promise<void> {
  const methods = await signInMethods();
  let email = '';
  const error = ssoError;
  ssoError = null;
  const oidcPart = (m: Method) => h('section', { class: 'signin-method', 'data-method': 'oidc' },
    h('a', { class: 'button big', id: 'sso-oidc', role: 'button',
      href: `${m.login_url || '/api/v1/auth/oidc/login'}?next=${encodeURIComponent(location.pathname + location.search)}` },
    t('sign_in_with', { name: m.name || '' })));
  const ldapPart = (m: Method) => {
    const userInput = h('input', { id: 'ldap-user', name: 'username', required: true, autocomplete: 'username', maxlength: 254 });
    const passInput = h('input', { id: 'ldap-pass', name: 'password', type: 'password', required: true, autocomplete: 'current-password', maxlength: 1024 });
    const form = h('form', { class: 'signin-method', id: 'ldap-form', 'data-method': 'ldap', 'aria-label': t('sign_in_with', { name: m.name || '' }) },
      h('label', { for: 'ldap-user' }, t('username')), userInput,
      h('label', { for: 'ldap-pass' }, t('password')), passInput,
      h('button', { type: 'submit', id: 'ldap-sign-in' }, t('sign_in_with', { name: m.name || '' })));
    form.addEventListener('submit', async (e) => {
      e.preventDefault();
      try {
        const r = await api<{ user: User }>('POST', '/auth/ldap', { username: userInput.value.trim(), password: passInput.value });
        user = r.user;
        then();
      } catch (err) {
        const msg = err instanceof ApiError && err.status === 401 ? t('wrong_password')
          : err instanceof ApiError && err.status === 429 ? t('too_many_passwords') : null;
        showError(msg ?? (err instanceof Error ? err.message : String(err)));
        passInput.select();
      }
    });
    return form;
  };
  const showError = (text: string) => {
    const box = document.getElementById('signin-error');
    if (box) { box.textContent = text; box.hidden = false; } else toast(t('error', { msg: text }));
  };
  const askEmail = () => {
    const input = h('input', { type: 'email', id: 'email', name: 'email', required: true, autocomplete: 'email', value: email });
    const form = h('form', { class: 'signin-method', 'data-method': 'email_code' },
      h('label', { for: 'email' }, t('email')), input,
      h('button', { type: 'submit', id: 'send-code' }, t('send_code')));
    form.addEventListener('submit', async (e) => {
      e.preventDefault();
      email = input.value.trim();
      try { await api('POST', '/auth/code', { email }); askCode(); } catch (err) { fail(err); }
    });
    const parts: HTMLElement[] = [];
    for (const m of methods) {
      if (parts.length) parts.push(h('p', { class: 'or', 'aria-hidden': 'true' }, t('or')));
      parts.push(m.method === 'oidc' ? oidcPart(m) : m.method === 'ldap' ? ldapPart(m) : form);
    }
    const card = h('div', { class: 'card signin', role: 'region', 'aria-labelledby': 'signin-h' },
      h('h1', { id: 'signin-h' }, t('app')),
      h('p', { id: 'signin-error', class: 'error', role: 'alert', hidden: !error }, error ? ssoErrorText(error) : ''),
      ...parts);
    rerender = askEmail;
    mount(app, header(), h('main', { class: 'center' }, card));
    (document.querySelector('#sso-oidc, #ldap-user, #email') as HTMLElement | null)?.focus();
  };
  const askCode = () => {
    const input = h('input', { id: 'code', name: 'code', inputmode: 'numeric', autocomplete: 'one-time-code', pattern: '[0-9]{6}', maxlength: 6, required: true });
    const form = h('form', { class: 'card' },
      h('p', {}, t('code_sent', { email })),
      h('label', { for: 'code' }, t('code')), input,
      h('button', { type: 'submit', id: 'verify' }, t('sign_in')),
      h('button', { type: 'button', class: 'link', onclick: askEmail }, t('other_email')));
    form.addEventListener('submit', async (e) => {
      e.preventDefault();
      try {
        const r = await api<{ user: User }>('POST', '/auth/verify', { email, code: input.value.trim() });
        user = r.user;
        then();
      } catch (err) { fail(err); input.select(); }
    });
    rerender = askCode;
    mount(app, header(), h('main', { class: 'center' }, form));
    input.focus();
  };
  askEmail();
}

// ---- home --------------------------------------------------------------------------------

function fmtTime(s: number): string {
  return new Date(s * 1000).toLocaleString(document.documentElement.lang, { dateStyle: 'medium', timeStyle: 'short' });
}

async function copyLink(url: string): Promise<void> {
  try { await navigator.clipboard.writeText(url); toast(t('copied')); } catch { toast(t('copy_failed', { url })); }
}

function localInputValue(d: Date): string {
  const p = (n: number) => String(n).padStart(2, '0');
  return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())}T${p(d.getHours())}:${p(d.getMinutes())}`;
}

async function home(): Promise<void> {
  let meetings: Meeting[] = [];
  try { meetings = await api<Meeting[]>('GET', '/meetings'); } catch (e) { fail(e); }
  const draw = () => {
    const start = new Date(Date.now() + 3600_000);
    start.setMinutes(0, 0, 0);
    const title = h('input', { id: 'm-title', name: 'title', required: true, maxlength: 200 });
    const begins = h('input', { id: 'm-begin', name: 'begin', type: 'datetime-local', required: true, value: localInputValue(start) });
    const dur = h('input', { id: 'm-duration', name: 'duration', type: 'number', min: 5, max: 1440, step: 5, value: '30', required: true });
    const inv = h('input', { id: 'm-invitees', name: 'invitees', type: 'text', autocomplete: 'off' });
    const form = h('form', { class: 'card', id: 'schedule', 'aria-labelledby': 'schedule-h' },
      h('h2', { id: 'schedule-h' }, t('schedule')),
      h('label', { for: 'm-title' }, t('title')), title,
      h('label', { for: 'm-begin' }, t('begins')), begins,
      h('label', { for: 'm-duration' }, t('duration_min')), dur,
      h('label', { for: 'm-invitees' }, t('invitees')), inv,
      h('button', { type: 'submit', id: 'm-create' }, t('create')));
    form.addEventListener('submit', async (e) => {
      e.preventDefault();
      const begin = Math.floor(new Date(begins.value).getTime() / 1000);
      const invitees = inv.value.split(/[,;\s]+/).map((s) => s.trim()).filter(Boolean);
      try {
        await api('POST', '/meetings', { title: title.value.trim(), begin_at: begin, end_at: begin + Number(dur.value) * 60, invitees });
        toast(t('scheduled_ok'));
        home();
      } catch (err) { fail(err); }
    });
    const list = h('ul', { class: 'meetings', id: 'meetings' },
      ...meetings.map((m) => h('li', { class: 'meeting', 'data-code': m.code },
        h('div', { class: 'm-main' },
          h('strong', {}, m.kind === 'instant' ? t('instant_room') : m.title),
          h('span', { class: 'muted' }, m.kind === 'instant' ? m.code : `${fmtTime(m.begin_at)} · ${m.code}`)),
        h('button', { type: 'button', class: 'secondary', 'aria-label': `${t('copy_link')}: ${m.title}`, onclick: () => copyLink(m.join_url) }, t('copy_link')),
        h('button', { type: 'button', class: 'secondary notes-open', 'aria-label': `${t('notes_open')}: ${m.title}`, onclick: () => go(`/#notes/${m.id}`) }, t('notes_open')),
        m.is_owner ? h('button', { type: 'button', class: 'secondary settings-open', 'aria-label': `${t('meeting_settings')}: ${m.title}`, onclick: () => go(`/#settings/${m.id}`) }, t('meeting_settings')) : null,
        h('button', { type: 'button', 'aria-label': `${t('join')}: ${m.title}`, onclick: () => go('/m/' + m.code) }, t('join')))));
    const codeInput = h('input', { id: 'join-code', name: 'code', autocomplete: 'off' });
    const joinForm = h('form', { class: 'row' }, h('label', { for: 'join-code', class: 'sr-only' }, t('meeting_code')), codeInput,
      h('button', { type: 'submit', class: 'secondary' }, t('join_code')));
    joinForm.addEventListener('submit', (e) => {
      e.preventDefault();
      const c = codeInput.value.trim().replace(/^.*\/m\//, '');
      if (c) go('/m/' + encodeURIComponent(c));
    });
    const canCreate = user?.can_create !== false;
    rerender = draw;
    mount(app, header(), h('main', { class: 'home' },
      h('section', { class: 'card' },
        canCreate ? h('button', { type: 'button', id: 'instant', class: 'big', onclick: startInstant }, t('start_instant')) : null,
        joinForm),
      canCreate ? form : null,
      h('section', { class: 'card', 'aria-labelledby': 'list-h' },
        h('h2', { id: 'list-h' }, t('upcoming')),
        meetings.length ? list : h('p', { class: 'muted' }, t('none_yet')))));
  };
  draw();
}

async function startInstant(): Promise<void> {
  try {
    const m = await api<Meeting>('POST', '/meetings', {});
    go('/m/' + m.code);
  } catch (e) { fail(e); }
}

// ---- pre-join ----------------------------------------------------------------------------

async function prejoin(code: string, signedIn: boolean): Promise<void> {
  const params = new URLSearchParams(location.search);
  await prejoinScreen({
    root: app, header, name: params.get('name') || user?.display_name || '', signedIn,
    setRerender: (f) => { rerender = f; }, setLeave: (f) => { leaveScreen = f; },
    onJoin: (c) => enterRoom(code, c),
  });
}

/** The deep link with autojoin=1: devices, the join request and the signaling connection
 *  all start at once; the effects start, and the room publishes the devices, once the join's
 *  first picture is in (Room.connectOnce). */
function autojoin(code: string, who: Promise<User | null>): void {
  const params = new URLSearchParams(location.search);
  let onSettled = (_start: boolean) => {};
  const settled = new Promise<boolean>((resolve) => { onSettled = resolve; });
  const media = LocalMedia.open(undefined, undefined, loadEffects(), settled);
  const name = params.get('name');
  const start = (u: User | null) => enterRoom(code, { name: name || u?.display_name || 'Guest', media, audioMuted: params.get('muted') === '1', videoOff: false, signedIn: !!u, onSettled });
  if (name) { start(null); who.then((u) => { user = u; }); } else who.then(start);
}

async function enterRoom(code: string, choice: JoinChoice): Promise<void> {
  const room = new Room(app, code, choice, langButton, (end: RoomEnd) => ended(code, choice, end));
  rerender = () => room.render();
  (window as any).room = room;
  await room.start();
}

async function ended(code: string, choice: JoinChoice, end: RoomEnd): Promise<void> {
  (await choice.media)?.stop();
  // A host's own words for a denial come after the server's sentence ("…: reason").
  const said = end.message.replace(/^denied: /, '');
  const hostSaid = end.reason === 'denied' && said.includes(': ') ? said.slice(said.indexOf(': ') + 2) : '';
  let why = end.reason === 'left' ? '' : (({ removed: t('reason_removed'), ended: t('reason_ended'), locked: t('reason_locked'), replaced: t('reason_replaced'), denied: hostSaid ? `${t('reason_denied')} ${hostSaid}` : t('reason_denied'), lobby_full: t('reason_lobby_full') } as Record<string, string>)[end.reason] || end.message || end.reason);
  // Removed because the sign-in ended (disabled by an administrator or the company's identity
  // provider), not by the host: say so.
  if (end.reason === 'removed' && choice.signedIn) {
    const still = await me().catch(() => user);
    if (!still) { user = null; why = t('reason_signed_out'); }
  }
  const draw = () => mount(app, header(), h('main', { class: 'center' },
    h('section', { class: 'card', id: 'ended', 'data-reason': end.reason },
      h('h1', {}, end.reason === 'left' ? t('left_title') : t('closed_title')),
      why ? h('p', { id: 'ended-why', role: 'alert' }, why) : null,
      end.reason === 'left' ? h('button', { type: 'button', onclick: () => route() }, t('rejoin')) : null,
      h('button', { type: 'button', class: 'secondary', onclick: () => go('/') }, t('home')))));
  rerender = draw;
  draw();
}

// ---- a meeting's notes, outside the meeting ----------------------------------------------

async function notesPage(id: number): Promise<void> {
  let meeting: Meeting | null = null;
  try { meeting = await api<Meeting>('GET', `/meetings/${id}`); } catch { /* a participant, not invited: notes only */ }
  const panel = new NotesPanel({ meetingId: id, wide: true, canMail: !!meeting?.is_owner && meeting.kind === 'scheduled' });
  const onHide = () => panel.flushOnExit();
  window.addEventListener('pagehide', onHide);
  leaveScreen = () => { window.removeEventListener('pagehide', onHide); panel.close(); };
  const title = () => meeting ? (meeting.kind === 'instant' ? t('instant_room') : meeting.title) : `#${id}`;
  const draw = () => {
    document.title = t('notes_page_title', { title: title() });
    mount(app, header(), h('main', { class: 'notes-page' },
      h('div', { class: 'row' },
        h('button', { type: 'button', class: 'link', id: 'notes-back', onclick: () => go('/') }, `← ${t('notes_back')}`),
        h('h1', { class: 'grow' }, t('notes_page_title', { title: title() })),
        meeting ? h('button', { type: 'button', onclick: () => go('/m/' + meeting!.code) }, t('join')) : null),
      panel.el));
  };
  rerender = () => { panel.build(); draw(); };
  draw();
  await panel.start();
}

// ---- routing -----------------------------------------------------------------------------

async function route(): Promise<void> {
  leaveScreen();
  leaveScreen = () => {};
  document.title = t('app');
  const path = location.pathname;
  const m = path.match(/^\/m\/([^/]+)\/?$/);
  const notes = location.hash.match(/^#notes\/(\d+)$/);
  const settings = location.hash.match(/^#settings\/(\d+)$/);
  takeSsoError();
  const who = me().catch((e) => { fail(e); return null; });
  if (m && new URLSearchParams(location.search).get('autojoin') === '1') { autojoin(decodeURIComponent(m[1]), who); return; }
  user = await who;
  if (user && ssoError) {
    // Signed in already (e.g. a replayed sign-in link): say what went wrong anyway.
    toast(ssoErrorText(ssoError));
    ssoError = null;
  }
  if (m) {
    await prejoin(decodeURIComponent(m[1]), !!user);
  } else if (!user) {
    await signIn(() => route());
  } else if (notes) {
    await notesPage(Number(notes[1]));
  } else if (settings) {
    const id = Number(settings[1]);
    rerender = () => settingsPage(app, header(), id, () => go('/'));
    await settingsPage(app, header(), id, () => go('/'));
  } else if (location.hash === '#admin') {
    rerender = () => adminPage(app, header(), go);
    await adminPage(app, header(), go);
  } else {
    await home();
  }
}

route();
