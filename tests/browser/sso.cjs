// Enterprise sign-in in Debian's headless Chromium (playwright-core), for tests/it/sso.rs: the
// sign-in page with every method enabled, LDAP through the form, OpenID Connect through the
// real provider's login and consent pages (oidc-provider, tests/peers/oidc-provider.mjs), the
// attacks on the callback (replayed URL, tampered state, replayed code, a token issued to
// another client), RP-initiated logout, and a meeting connection that ends when the provider
// disables the person. Only what a person does (typing, clicking, following links) plus
// reading what the page shows.
//
// Env: BASE (the appliance), ISSUER (the provider), SCENARIO=oidc.
// Talks to the Rust test over stdio:
//   stdout `READY_DISABLE <login>` → stdin `disabled` once the provider disabled the account
//   stdout `ENDED {...}`            the room's end screen appeared
//   stdout `RESULT {...}` and exit 0, or `FAIL reason` and exit 1.
'use strict';
const pw = require(process.env.PLAYWRIGHT_CORE || '/var/tmp/meeting-appliance-node/node_modules/playwright-core');

const BASE = process.env.BASE;
const ISSUER = process.env.ISSUER;
const SCENARIO = process.env.SCENARIO;
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
const SHOTS = process.env.SHOTS || '';
const T0 = Date.now();

async function shot(page, name) {
  if (!SHOTS) return;
  require('fs').mkdirSync(SHOTS, { recursive: true });
  await page.screenshot({ path: require('path').join(SHOTS, name) });
}

function log(...a) { console.error(`+${((Date.now() - T0) / 1000).toFixed(1)}s`, ...a); }
function sleep(ms) { return new Promise((r) => setTimeout(r, ms)); }

async function waitFor(what, fn, timeoutMs = 60000) {
  const end = Date.now() + timeoutMs;
  let last;
  while (Date.now() < end) {
    try { last = await fn(); } catch (e) { last = { error: String(e) }; }
    if (last && last.ok) return last;
    await sleep(250);
  }
  throw new Error(`timed out waiting for ${what}: ${JSON.stringify(last)}`);
}

const stdinLines = [];
let stdinWaiter = null;
let stdinBuf = '';
process.stdin.on('data', (d) => {
  stdinBuf += d;
  let i;
  while ((i = stdinBuf.indexOf('\n')) >= 0) {
    stdinLines.push(stdinBuf.slice(0, i).trim());
    stdinBuf = stdinBuf.slice(i + 1);
  }
  if (stdinWaiter && stdinLines.length) { const w = stdinWaiter; stdinWaiter = null; w(stdinLines.shift()); }
});
function cue() {
  if (stdinLines.length) return Promise.resolve(stdinLines.shift());
  return new Promise((r) => { stdinWaiter = r; });
}

async function launch() {
  return pw.chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: [
      '--no-sandbox', '--disable-gpu', '--use-fake-device-for-media-stream', '--use-fake-ui-for-media-stream',
      '--autoplay-policy=no-user-gesture-required', '--allow-loopback-in-peer-connection',
      '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run', '--disable-quic',
    ],
  });
}

async function newPage(browser, who) {
  const ctx = await browser.newContext({ viewport: { width: 1280, height: 800 }, locale: 'en-US', permissions: ['camera', 'microphone'] });
  // The network rule, enforced in the browser too: only loopback (the provider's pages
  // reference web fonts on the Internet; inside the test's namespace they could not load).
  await ctx.route('**/*', (r) => {
    const host = new URL(r.request().url()).hostname;
    return host === '127.0.0.1' || host === 'localhost' ? r.continue() : r.abort();
  });
  const page = await ctx.newPage();
  page.on('console', (m) => { if (m.type() === 'error' || process.env.VERBOSE) log(`[${who} console]`, m.text()); });
  page.on('pageerror', (e) => log(`[${who} pageerror]`, String(e)));
  page.on('dialog', (d) => d.accept());
  return page;
}

const me = (page) => page.evaluate(async () => (await fetch('/api/v1/me')).status);

// Goes through whatever the provider shows (its login form, its consent page) as `login`,
// until the browser is back on the appliance (or `until` says stop). Returns what was shown.
async function throughProvider(page, login, until = () => page.url().startsWith(BASE)) {
  const shown = [];
  for (let i = 0; i < 8; i++) {
    await waitFor('a page to settle', async () => ({
      ok: until() || (page.url().startsWith(ISSUER) && !!(await page.$('form'))),
      url: page.url(), text: (await page.evaluate(() => document.body && document.body.innerText || '')).slice(0, 300),
    }), 30000);
    if (until()) return shown;
    if (await page.$('input[name=login]')) {
      shown.push('login');
      await page.fill('input[name=login]', login);
      await page.fill('input[name=password]', 'any password');
    } else if (await page.$('button[type=submit]')) {
      shown.push(await page.$('button[name=logout]') ? 'logout' : 'consent');
    }
    const before = page.url();
    await page.click('button[type=submit]');
    await waitFor('the next page', async () => ({ ok: page.url() !== before || until() }), 30000);
  }
  throw new Error(`still at the provider: ${page.url()} (${shown})`);
}

// Starts a sign-in at the appliance with the browser's cookies and follows the redirects by
// hand up to the appliance's callback, which it does not open: returns the callback URL the
// provider sent the browser to (the provider knows the person and their consent already).
async function holdCallback(page) {
  let url = `${BASE}/api/v1/auth/oidc/login?next=/`;
  for (let hop = 0; hop < 8; hop++) {
    const r = await page.request.get(url, { maxRedirects: 0 });
    const loc = r.headers()['location'];
    if (!loc) throw new Error(`no redirect from ${url} (${r.status()}): ${(await r.text()).slice(0, 200)}`);
    url = new URL(loc, url).toString();
    if (url.startsWith(`${BASE}/api/v1/auth/oidc/callback`)) return url;
  }
  throw new Error('no callback after 8 redirects: ' + url);
}

// Opens `url` and returns the address the appliance finally sent the browser to.
async function landing(page, url) {
  const r = await page.goto(url);
  return r ? r.url() : page.url();
}

async function roomState(page) {
  return page.evaluate(async () => {
    const room = window.room;
    if (!room || !room.client) return { connected: false };
    const stats = await room.client.inboundStats();
    const tiles = [...document.querySelectorAll('figure.tile')].map((f) => ({ pid: f.dataset.pid, self: f.dataset.self === '1', label: f.getAttribute('aria-label'), w: f.querySelector('video').videoWidth }));
    return { connected: true, me: room.client.participantId, tiles, stats: Object.values(stats) };
  });
}

async function waitSees(page, name) {
  let first = null;
  return waitFor(`to see ${name}`, async () => {
    const s = await roomState(page);
    if (!s.connected) return { ok: false };
    const tile = s.tiles.find((t) => !t.self && t.label === name);
    if (!tile) return { ok: false, tiles: s.tiles };
    const v = s.stats.find((x) => x.kind === 'video' && x.participantId === tile.pid);
    if (!v) return { ok: false };
    if (first === null && v.framesDecoded > 0) first = v.framesDecoded;
    return { ok: first !== null && v.framesDecoded >= first + 10 && tile.w > 0, pid: tile.pid, framesDecoded: v.framesDecoded };
  });
}

// Signs in with an emailed code through the form; the Rust test hands over the code.
async function signInByCode(page, email) {
  await page.goto(BASE + '/');
  await page.getByLabel('Email address').fill(email);
  await page.click('#send-code');
  await page.waitForSelector('#code');
  console.log(`NEED_CODE ${email}`);
  await page.getByLabel('Sign-in code').fill(await cue());
  await page.click('#verify');
  await page.waitForSelector('#instant');
}

const cellsOf = (page, sel) => page.$$eval(`${sel} tbody tr`, (rows) => rows.map((r) => [...r.querySelectorAll('td')].map((td) => td.textContent.trim())));

const scenarios = {
  // The admin page: people (disable, sign out everywhere) and the audit log (filter, export).
  async admin(browser) {
    const out = {};
    const page = await newPage(browser, 'admin');
    await signInByCode(page, 'admin@corp.test');
    await page.click('#admin-link');
    await page.waitForSelector('#admin-people');
    out.people_before = await cellsOf(page, '#admin-people');
    await page.click('.admin-disable[data-email="dan@corp.test"]');
    out.dan_after = (await waitFor('dan to show as disabled', async () => {
      const row = (await cellsOf(page, '#admin-people')).find((r) => r[0] === 'dan@corp.test');
      return { ok: !!row && row[3] === 'disabled', row };
    }, 30000)).row;
    out.dan_enable_button = (await page.$('.admin-enable[data-email="dan@corp.test"]')) !== null;
    await page.evaluate(() => document.getElementById('admin-people-h').scrollIntoView());
    await shot(page, 'admin-people-audit.png');
    await page.click('.admin-revoke[data-email="erin@corp.test"]');
    out.erin_after = (await waitFor('erin to have no session', async () => {
      const row = (await cellsOf(page, '#admin-people')).find((r) => r[0] === 'erin@corp.test');
      return { ok: !!row && row[4] === '0', row };
    }, 30000)).row;
    // The audit log: the newest first; filtered to the administrators' actions.
    out.audit = await cellsOf(page, '#admin-audit');
    await page.selectOption('#audit-action', 'admin.');
    await page.fill('#audit-q', 'dan@corp.test');
    await page.press('#audit-q', 'Enter');
    out.audit_filtered = (await waitFor('the filtered audit log', async () => {
      const rows = await cellsOf(page, '#admin-audit');
      return { ok: rows.length > 0 && rows.every((r) => r[1].startsWith('admin.') && r.join(' ').includes('dan@corp.test')), rows };
    }, 30000)).rows;
    out.export_href = await page.getAttribute('#audit-export', 'href');
    const [download] = await Promise.all([page.waitForEvent('download'), page.click('#audit-export')]);
    const file = await download.path();
    out.export_name = download.suggestedFilename();
    out.export_lines = require('fs').readFileSync(file, 'utf8').trim().split('\n').map((l) => JSON.parse(l));
    // The same page in Chinese.
    await page.click('#lang');
    out.zh_people = (await waitFor('the page in Chinese', async () => {
      const t = (await page.textContent('#admin-people-h')).trim();
      return { ok: t !== 'People', t };
    }, 30000)).t;
    out.zh_audit = (await page.textContent('#admin-audit-h')).trim();
    return out;
  },


  async oidc(browser) {
    const out = {};
    const page = await newPage(browser, 'alice');
    const callbacks = [];
    page.on('request', (r) => { if (r.isNavigationRequest() && r.url().includes('/api/v1/auth/oidc/callback')) callbacks.push(r.url()); });
    // Where the appliance sent the browser after each callback.
    const answers = [];
    page.on('response', (r) => { if (r.url().includes('/api/v1/auth/oidc/callback')) answers.push(r.headers()['location'] || `status ${r.status()}`); });

    // The sign-in page shows every enabled method, in the configured order.
    await page.goto(BASE + '/');
    await page.waitForSelector('#sso-oidc');
    out.methods = await page.$$eval('.signin-method', (e) => e.map((x) => x.dataset.method));
    out.oidc_button = (await page.textContent('#sso-oidc')).trim();
    out.ldap_button = (await page.textContent('#ldap-sign-in')).trim();
    out.email_field = (await page.$('#email')) !== null;
    await shot(page, 'sign-in-methods.png');

    // LDAP through the form: a wrong password is shown as such; the right one signs in.
    await page.fill('#ldap-user', 'bob');
    await page.fill('#ldap-pass', 'not-his-password');
    await page.click('#ldap-sign-in');
    await page.waitForSelector('#signin-error:not([hidden])');
    out.ldap_wrong = (await page.textContent('#signin-error')).trim();
    await page.fill('#ldap-pass', 'pw-bob');
    await page.click('#ldap-sign-in');
    await page.waitForSelector('#instant');
    out.ldap_who = (await page.textContent('.who')).trim();
    await page.click('text=Sign out');
    await page.waitForSelector('#sso-oidc');

    // OpenID Connect through the provider's login and consent pages, back on our home page.
    await page.click('#sso-oidc');
    out.first_provider_pages = await throughProvider(page, 'alice');
    await page.waitForSelector('#instant');
    out.oidc_who = (await page.textContent('.who')).trim();
    out.oidc_home_url = page.url();
    out.first_answer = answers[answers.length - 1];
    const cb1 = callbacks[callbacks.length - 1];
    out.callback_had_code = !!cb1 && new URL(cb1).searchParams.has('code');
    log('signed in through the provider');

    // The same callback URL again: its state was used.
    out.replayed_url = await landing(page, cb1);
    out.still_signed_in_after_replay = (await me(page)) === 200;

    // A tampered state on a fresh answer from the provider.
    const held2 = new URL(await holdCallback(page));
    const st = held2.searchParams.get('state');
    held2.searchParams.set('state', st.slice(0, -2) + (st.endsWith('AA') ? 'BB' : 'AA'));
    out.tampered_state = await landing(page, held2.toString());

    // A replayed code: the first sign-in's code with a fresh, valid state.
    const held3 = new URL(await holdCallback(page));
    held3.searchParams.set('code', new URL(cb1).searchParams.get('code'));
    out.replayed_code = await landing(page, held3.toString());

    // Signing out ends the provider's session too (RP-initiated logout, with its
    // confirmation page), so the next sign-in asks for the password again.
    await page.click('text=Sign out');
    await page.waitForURL((u) => u.toString().startsWith(ISSUER));
    out.logout_pages = await throughProvider(page, 'alice', () => page.url().startsWith(BASE) && !page.url().includes('/api/'));
    await page.waitForSelector('#sso-oidc');
    out.after_logout_url = page.url();
    await page.click('#sso-oidc');
    out.pages_after_logout = await throughProvider(page, 'alice');
    await page.waitForSelector('#instant');

    // A token issued to another client: signed out here only (the provider's session stays),
    // `other` signs in at the provider, and its ID token is handed to us in the next answer.
    await page.evaluate(() => fetch('/api/v1/auth/logout', { method: 'POST' }));
    await page.goto(ISSUER + '/other/login');
    await throughProvider(page, 'alice', () => page.url().startsWith(ISSUER + '/other/callback'));
    await page.waitForSelector('#other-ok');
    const armed = await fetch(ISSUER + '/test/swap-next', { method: 'POST' });
    if (!armed.ok) throw new Error('could not arm the swap: ' + await armed.text());
    const n = answers.length;
    await page.goto(BASE + '/');
    await page.waitForSelector('#sso-oidc');
    await page.click('#sso-oidc');
    await throughProvider(page, 'alice');
    await waitFor('the answer to the callback', async () => ({ ok: answers.length > n }), 30000);
    out.foreign_token = answers[answers.length - 1];
    out.signed_in_after_foreign_token = (await me(page)) === 200;
    await page.waitForSelector('#signin-error:not([hidden])');
    out.foreign_token_message = (await page.textContent('#signin-error')).trim();

    // Signing in properly again.
    await page.click('#sso-oidc');
    await throughProvider(page, 'alice');
    await page.waitForSelector('#instant');

    // Other people at the same provider, each in their own browser: an administrator by the
    // groups claim who is not in a group that may create; someone whose email the provider
    // does not say is verified.
    const root = await newPage(browser, 'root');
    await root.goto(BASE + '/');
    await root.click('#sso-oidc');
    await throughProvider(root, 'root');
    await root.waitForSelector('.who');
    out.root = { who: (await root.textContent('.who')).trim(), admin_link: (await root.$('#admin-link')) !== null, can_start: (await root.$('#instant')) !== null };
    await root.click('#admin-link');
    await root.waitForSelector('#admin-people');
    out.root.admin_page = true;
    const una = await newPage(browser, 'una');
    await una.goto(BASE + '/');
    await una.click('#sso-oidc');
    await throughProvider(una, 'una');
    await una.waitForSelector('#signin-error:not([hidden])');
    out.una = { error: (await una.textContent('#signin-error')).trim(), me: await me(una) };

    // In a meeting with a guest; the provider disables alice.
    await page.click('#instant');
    await page.waitForSelector('#join-now');
    const code = page.url().split('/m/')[1];
    await page.click('#join-now');
    await page.waitForSelector('#ctl-leave');
    const guest = await newPage(browser, 'guest');
    await guest.goto(`${BASE}/m/${code}?name=${encodeURIComponent('Guest Gina')}&autojoin=1`);
    await guest.waitForSelector('#ctl-leave');
    out.guest_sees_alice = await waitSees(guest, 'Alice Example');
    out.alice_sees_guest = await waitSees(page, 'Guest Gina');
    console.log('READY_DISABLE alice');
    if ((await cue()) !== 'disabled') throw new Error('unexpected cue');
    const disabledAt = Date.now();
    await page.waitForSelector('#ended', { timeout: 120000 });
    out.ended_after_ms = Date.now() - disabledAt;
    out.ended = { reason: await page.getAttribute('#ended', 'data-reason'), text: (await page.textContent('#ended-why')).trim() };
    console.log('ENDED ' + JSON.stringify(out.ended));
    out.me_after_disable = await me(page);
    // The guest stays, and sees alice go.
    out.guest_after = await waitFor('the guest to see alice leave', async () => {
      const s = await roomState(guest);
      return { ok: s.connected && !s.tiles.some((t) => !t.self), connected: s.connected };
    }, 30000);
    return out;
  },
};

(async () => {
  const browser = await launch();
  try {
    const fn = scenarios[SCENARIO];
    if (!fn) throw new Error('no scenario ' + SCENARIO);
    const r = await fn(browser);
    console.log('RESULT ' + JSON.stringify(r));
    await browser.close();
    process.exit(0);
  } catch (e) {
    console.log('FAIL ' + String(e && e.stack || e).replace(/\n/g, ' | '));
    await browser.close().catch(() => {});
    process.exit(1);
  }
})();
