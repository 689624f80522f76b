// The administrators' overview (GET /api/v1/admin/overview, src/roles/apiserver/admin.rs):
// registered servers, meetings in progress and the mail outbox; people (disable, enable, sign
// out everywhere) and the audit log (filter, export as JSON lines). Shown to the people listed
// in `auth.admin_emails` (or in an admin group of the identity provider); refreshed every
// 10 s while open, unless the administrator is typing in it.
import { api, ApiError } from './api';
import { h, mount, toast, type Child } from './dom';
import { t, type Key } from './i18n';

interface Overview {
  generated_at: number;
  // load and capacity are in `unit`: forwarded packets per second for an sfuserver (its
  // capacity is what the whole box carries), sessions for a turnserver.
  nodes: { id: string; role: string; address: string; capacity: number; version: string; state: string; load: number; unit: string; last_seen: number }[];
  meetings: { id: number; code: string; title: string; kind: string; owner_email: string; participants: number; since: number; sfu: string | null }[];
  mail: {
    queued: number; failed: number; given_up: number;
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
  const people = await peopleSection(app, top, go);
  const audit = await auditSection();
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
        h('span', { id: 'admin-failed' }, t('admin_failed', { n: o.mail.failed })), ' · ',
        h('span', { id: 'admin-given-up' }, t('admin_given_up', { n: o.mail.given_up }))),
      failures),
    people,
    audit));
  if (focusId) (document.getElementById(focusId) as HTMLInputElement | null)?.focus();
  focusId = '';
  scheduleRefresh(app, top, go);
}

function scheduleRefresh(app: HTMLElement, top: HTMLElement, go: (path: string) => void): void {
  clearTimeout(timer);
  timer = window.setTimeout(() => {
    if (location.hash !== '#admin' || !document.getElementById('admin')) return;
    // Not while the administrator types a search or filter.
    const a = document.activeElement;
    if (a instanceof HTMLInputElement || a instanceof HTMLSelectElement) { scheduleRefresh(app, top, go); return; }
    adminPage(app, top, go);
  }, 10_000);
}

// ---- people ------------------------------------------------------------------------------

interface Person {
  id: number; email: string; display_name: string; last_login_at: number; disabled_at: number | null;
  idp_disabled_at: number | null; sessions: number; methods: string[]; last_ip: string | null;
}

let peopleQuery = '';
let auditQuery = '';
let auditAction = '';
let focusId = '';

async function peopleSection(app: HTMLElement, top: HTMLElement, go: (path: string) => void): Promise<HTMLElement> {
  let list: Person[] = [];
  try {
    list = (await api<{ users: Person[] }>('GET', `/admin/users?limit=200&q=${encodeURIComponent(peopleQuery)}`)).users;
  } catch (e) { toast(t('error', { msg: (e as Error).message })); }
  const act = async (p: Person, what: 'disable' | 'enable' | 'revoke') => {
    if (what !== 'enable' && !window.confirm(t(what === 'disable' ? 'admin_confirm_disable' : 'admin_confirm_revoke', { email: p.email }))) return;
    try {
      const r = await api<{ sessions_revoked?: number; connections_closed?: number }>('POST', `/admin/users/${p.id}/${what}`);
      if (what !== 'enable') toast(t('admin_done', { email: p.email, sessions: r.sessions_revoked ?? 0, connections: r.connections_closed ?? 0 }));
    } catch (e) { toast(t('error', { msg: (e as Error).message })); }
    adminPage(app, top, go);
  };
  const status = (p: Person) => p.disabled_at ? t('admin_status_disabled') : p.idp_disabled_at ? t('admin_status_idp_disabled') : t('admin_status_active');
  const search = h('input', { id: 'people-q', type: 'search', value: peopleQuery, 'aria-label': t('admin_users_search'), placeholder: t('admin_users_search') });
  const form = h('form', { class: 'admin-audit-tools', role: 'search' }, search,
    h('button', { type: 'submit', class: 'secondary small' }, t('admin_refresh')));
  form.addEventListener('submit', (e) => { e.preventDefault(); peopleQuery = search.value.trim(); focusId = 'people-q'; adminPage(app, top, go); });
  const rows = table('admin-people', t('admin_users'),
    ['admin_col_email', 'admin_col_name', 'admin_col_last_sign_in', 'admin_col_status', 'admin_col_sessions', 'admin_col_actions'],
    list.map((p) => [p.email, p.display_name, when(p.last_login_at),
      h('span', { class: `state state-${p.disabled_at || p.idp_disabled_at ? 'down' : 'up'}`, 'data-email': p.email }, status(p)),
      `${p.sessions}${p.methods.length ? ` (${p.methods.join(', ')})` : ''}`,
      h('span', { class: 'admin-actions' },
        p.disabled_at
          ? h('button', { type: 'button', class: 'secondary small admin-enable', 'data-email': p.email, onclick: () => act(p, 'enable') }, t('admin_enable'))
          : h('button', { type: 'button', class: 'danger small admin-disable', 'data-email': p.email, onclick: () => act(p, 'disable') }, t('admin_disable')),
        h('button', { type: 'button', class: 'secondary small admin-revoke', 'data-email': p.email, onclick: () => act(p, 'revoke') }, t('admin_revoke')))]),
    t('admin_no_users'));
  return h('section', { class: 'card', 'aria-labelledby': 'admin-people-h' }, h('h2', { id: 'admin-people-h' }, t('admin_users')), form, rows);
}

// ---- audit log ---------------------------------------------------------------------------

interface AuditEntry {
  id: number; at: number; action: string; result: string; method: string | null; ip: string | null;
  actor: string; target: string; detail: string;
}

async function auditSection(): Promise<HTMLElement> {
  const params = () => {
    const q = new URLSearchParams();
    if (auditQuery) q.set('q', auditQuery);
    if (auditAction) q.set('action', auditAction);
    return q;
  };
  const load = async (before?: number) => {
    const q = params();
    q.set('limit', '100');
    if (before) q.set('before', String(before));
    return api<{ entries: AuditEntry[]; next_before: number | null }>('GET', `/admin/audit?${q}`);
  };
  let page: { entries: AuditEntry[]; next_before: number | null } = { entries: [], next_before: null };
  try { page = await load(); } catch (e) { toast(t('error', { msg: (e as Error).message })); }
  const row = (e: AuditEntry): Child[] => [when(e.at), h('code', {}, e.action),
    h('span', { class: `result result-${e.result}` }, e.result), e.method || '—', e.ip || '—', e.actor || '—', e.target || '—', e.detail];
  const cols: Key[] = ['admin_col_time', 'admin_col_action', 'admin_col_result', 'admin_col_method', 'admin_col_ip', 'admin_col_actor', 'admin_col_target', 'admin_col_detail'];
  const tableEl = table('admin-audit', t('admin_audit'), cols, page.entries.map(row), t('admin_no_audit'));
  const more = h('button', { type: 'button', class: 'secondary small', id: 'audit-more', hidden: !page.next_before }, t('admin_audit_more'));
  more.addEventListener('click', async () => {
    if (!page.next_before) return;
    try {
      page = await load(page.next_before);
      const body = document.querySelector('#admin-audit tbody');
      for (const e of page.entries) body?.append(h('tr', {}, ...row(e).map((c) => h('td', {}, c))));
      more.hidden = !page.next_before;
    } catch (e) { toast(t('error', { msg: (e as Error).message })); }
  });
  const q = h('input', { id: 'audit-q', type: 'search', value: auditQuery, 'aria-label': t('admin_audit_filter'), placeholder: t('admin_audit_filter') });
  const sel = h('select', { id: 'audit-action', 'aria-label': t('admin_col_action') },
    ...['', 'sign_in', 'sign_out', 'session.ended_by_provider', 'admin.', 'host.'].map((a) => h('option', { value: a, selected: a === auditAction }, a || t('admin_all_actions'))));
  sel.style.width = 'auto';
  sel.style.margin = '0';
  const form = h('form', { class: 'admin-audit-tools', role: 'search' }, q, sel,
    h('button', { type: 'submit', class: 'secondary small' }, t('admin_refresh')),
    h('a', { id: 'audit-export', href: `/api/v1/admin/audit/export?${params()}`, download: '' }, t('admin_audit_export')));
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    auditQuery = q.value.trim();
    auditAction = sel.value;
    focusId = 'audit-q';
    document.getElementById('admin-refresh')?.click();
  });
  return h('section', { class: 'card', 'aria-labelledby': 'admin-audit-h' }, h('h2', { id: 'admin-audit-h' }, t('admin_audit')), form, tableEl, more);
}
