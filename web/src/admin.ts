// The administrators' overview (GET /api/v1/admin/overview, src/roles/apiserver/admin.rs):
// registered servers, meetings in progress and the mail outbox. Shown to the people listed
// in `auth.admin_emails`; refreshed every 10 s while open.
import { api, ApiError } from './api';
import { h, mount, type Child } from './dom';
import { t, type Key } from './i18n';

interface Overview {
  generated_at: number;
  // load and capacity are in `unit`: forwarded packets per second for an sfuserver (its
  // capacity is what the whole box carries), sessions for a turnserver.
  nodes: { id: string; role: string; address: string; capacity: number; version: string; state: string; load: number; unit: string; last_seen: number }[];
  meetings: { id: number; code: string; title: string; kind: string; owner_email: string; participants: number; since: number; sfu: string | null }[];
  mail: {
    queued: number; failed: number;
    latest_failures: { id: number; recipient: string; subject: string; attempts: number; last_error: string; next_attempt_at: number; status: string }[];
  };
}

let timer = 0;

/** A load or capacity with its unit (packets per second for an sfuserver). */
function amount(v: number, unit: string): string {
  return unit === 'pkt/s' ? `${v.toLocaleString(document.documentElement.lang)} ${t('admin_unit_pps')}` : String(v);
}

function when(s: number): string {
  return s ? new Date(s * 1000).toLocaleString(document.documentElement.lang, { dateStyle: 'short', timeStyle: 'medium' }) : '—';
}

function table(id: string, caption: string, cols: Key[], rows: Child[][], empty: string): HTMLElement {
  if (!rows.length) return h('p', { class: 'muted', id: `${id}-empty` }, empty);
  return h('div', { class: 'table-wrap' }, h('table', { id, class: 'admin-table' },
    h('caption', { class: 'sr-only' }, caption),
    h('thead', {}, h('tr', {}, ...cols.map((c) => h('th', { scope: 'col' }, t(c))))),
    h('tbody', {}, ...rows.map((r) => h('tr', {}, ...r.map((c) => h('td', {}, c)))))));
}

/** Draws the overview into `app` (below `top`), and keeps it fresh while it is shown. */
export async function adminPage(app: HTMLElement, top: HTMLElement, go: (path: string) => void): Promise<void> {
  clearTimeout(timer);
  let o: Overview;
  try {
    o = await api<Overview>('GET', '/admin/overview');
  } catch (e) {
    const msg = e instanceof ApiError && e.status === 403 ? t('admin_forbidden') : t('error', { msg: (e as Error).message });
    mount(app, top, h('main', { class: 'center' }, h('section', { class: 'card', id: 'admin-error', role: 'alert' }, h('p', {}, msg),
      h('button', { type: 'button', class: 'secondary', onclick: () => go('/') }, t('home')))));
    return;
  }
  const nodes = table('admin-nodes', t('admin_nodes'),
    ['admin_col_id', 'admin_col_role', 'admin_col_address', 'admin_col_state', 'admin_col_load', 'admin_col_capacity', 'admin_col_version', 'admin_col_seen'],
    o.nodes.map((n) => [n.id, n.role, n.address,
      h('span', { class: `state state-${n.state === 'up' ? 'up' : 'down'}` }, n.state === 'up' ? t('admin_up') : t('admin_down')),
      amount(n.load, n.unit), amount(n.capacity, n.unit), n.version, when(n.last_seen)]),
    t('admin_no_nodes'));
  const meetings = table('admin-meetings', t('admin_live'),
    ['admin_col_meeting', 'admin_col_owner', 'admin_col_people', 'admin_col_since', 'admin_col_sfu'],
    o.meetings.map((m) => [h('span', { 'data-code': m.code }, `${m.kind === 'instant' ? t('instant_room') : m.title} · ${m.code}`), m.owner_email,
      h('span', { class: 'people-count' }, String(m.participants)), when(m.since), m.sfu || '—']),
    t('admin_no_live'));
  const failures = table('admin-mail-failures', t('admin_mail'),
    ['admin_col_to', 'admin_col_subject', 'admin_col_attempts', 'admin_col_error', 'admin_col_next'],
    o.mail.latest_failures.map((f) => [f.recipient, f.subject, String(f.attempts), h('code', {}, f.last_error), when(f.next_attempt_at)]),
    t('admin_no_failures'));
  mount(app, top, h('main', { class: 'admin', id: 'admin' },
    h('div', { class: 'row' },
      h('h1', { class: 'grow' }, t('admin_title')),
      h('span', { class: 'muted' }, when(o.generated_at)),
      h('button', { type: 'button', class: 'secondary small', id: 'admin-refresh', onclick: () => adminPage(app, top, go) }, t('admin_refresh'))),
    h('section', { class: 'card', 'aria-labelledby': 'admin-nodes-h' }, h('h2', { id: 'admin-nodes-h' }, t('admin_nodes')), nodes),
    h('section', { class: 'card', 'aria-labelledby': 'admin-live-h' }, h('h2', { id: 'admin-live-h' }, t('admin_live')), meetings),
    h('section', { class: 'card', 'aria-labelledby': 'admin-mail-h' }, h('h2', { id: 'admin-mail-h' }, t('admin_mail')),
      h('p', { id: 'admin-mail-counts' },
        h('span', { id: 'admin-queued' }, t('admin_queued', { n: o.mail.queued })), ' · ',
        h('span', { id: 'admin-failed' }, t('admin_failed', { n: o.mail.failed }))),
      failures)));
  timer = window.setTimeout(() => { if (location.hash === '#admin' && document.getElementById('admin')) adminPage(app, top, go); }, 10_000);
}
