// Drives the real web client (web/, embedded in the binary) in Debian's headless Chromium
// through playwright-core: only what a person does (typing, clicking) plus reading state the
// page shows or its MeetingClient's getStats. Used by tests/it/web_client.rs inside a private
// network namespace. Talks to the Rust test over stdio:
//   stdout `NEED_CODE <email>`   → stdin: the sign-in code (the test reads it from mail or log)
//   stdout `SCHEDULED <code>`    → stdin: `ok` once the test checked the invitation mail
//   stdout `READY_RESTART`       → stdin: `restarted` after the appliance was killed and started
//   stdout `RESULT {...}` and exit 0, or `FAIL reason` and exit 1.
'use strict';
const fs = require('fs');
const path = require('path');
const pw = require(process.env.PLAYWRIGHT_CORE || '/var/tmp/meeting-appliance-node/node_modules/playwright-core');

const BASE = process.env.BASE;
const SCENARIO = process.env.SCENARIO;
const SHOTS = process.env.SHOTS || '';
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
const T0 = Date.now();

function log(...a) { console.error(`+${((Date.now() - T0) / 1000).toFixed(1)}s`, ...a); }
function sleep(ms) { return new Promise((r) => setTimeout(r, ms)); }

async function waitFor(what, fn, timeoutMs = 60000) {
  const end = Date.now() + timeoutMs;
  let last;
  while (Date.now() < end) {
    try { last = await fn(); } catch (e) { last = { error: String(e) }; }
    if (last && last.ok) return last;
    await sleep(300);
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
      '--auto-select-desktop-capture-source=Entire screen', '--autoplay-policy=no-user-gesture-required',
      '--allow-loopback-in-peer-connection', '--disable-background-networking', '--disable-component-update',
      '--disable-sync', '--no-first-run', '--disable-quic',
    ],
  });
}

async function newPage(browser, who) {
  const ctx = await browser.newContext({ viewport: { width: 1280, height: 800 }, locale: 'en-US', permissions: ['camera', 'microphone'] });
  const page = await ctx.newPage();
  page.on('console', (m) => { if (m.type() === 'error' || process.env.VERBOSE) log(`[${who} console]`, m.text()); });
  page.on('pageerror', (e) => log(`[${who} pageerror]`, String(e)));
  return page;
}

async function shot(page, name) {
  if (!SHOTS) return null;
  fs.mkdirSync(SHOTS, { recursive: true });
  const file = path.join(SHOTS, name);
  await page.screenshot({ path: file });
  return file;
}

// Sign in through the UI; the Rust test hands over the code from the mail (or log).
async function signIn(page, email) {
  await page.goto(BASE + '/');
  await page.getByLabel('Email address').fill(email);
  await page.click('#send-code');
  await page.waitForSelector('#code');
  console.log(`NEED_CODE ${email}`);
  const code = await cue();
  await page.getByLabel('Sign-in code').fill(code);
  await page.click('#verify');
  await page.waitForSelector('#instant');
}

// What the room shows: my participant id, the others' tiles, decoded frames per participant.
async function roomState(page) {
  return page.evaluate(async () => {
    const room = window.room;
    if (!room || !room.client) return { connected: false };
    const stats = await room.client.inboundStats();
    const tiles = [...document.querySelectorAll('figure.tile')].map((f) => {
      const v = f.querySelector('video');
      return { pid: f.dataset.pid, self: f.dataset.self === '1', w: v.videoWidth, h: v.videoHeight, shownW: v.clientWidth, label: f.getAttribute('aria-label') };
    });
    const stage = document.getElementById('stage');
    const sv = document.getElementById('stage-video');
    return {
      connected: true, me: room.client.participantId, tiles, stats: Object.values(stats),
      stage: stage && !stage.hidden && sv ? { pid: sv.dataset.pid, w: sv.videoWidth, h: sv.videoHeight, shownW: sv.clientWidth, shownH: sv.clientHeight } : null,
      audioMuted: room.audioMuted, banner: document.getElementById('banner')?.hidden ? '' : document.getElementById('banner')?.textContent,
    };
  });
}

// Waits until `viewer` decodes `name`'s camera (frames rising) and its tile shows the video.
async function waitSees(viewer, name, timeoutMs = 60000) {
  let first = null;
  return waitFor(`${viewer.who} to see ${name}`, async () => {
    const s = await roomState(viewer.page);
    if (!s.connected) return { ok: false, s: 'not connected' };
    const tile = s.tiles.find((t) => !t.self && t.label === name);
    if (!tile) return { ok: false, tiles: s.tiles };
    const v = s.stats.find((x) => x.kind === 'video' && x.participantId === tile.pid && x.source === 'camera');
    if (!v) return { ok: false, tile };
    if (first === null && v.framesDecoded > 0) first = v.framesDecoded;
    return { ok: first !== null && v.framesDecoded >= first + 10 && tile.w > 0, pid: tile.pid, framesDecoded: v.framesDecoded, frameWidth: v.frameWidth, tileVideoWidth: tile.w };
  }, timeoutMs);
}

async function openPanel(page, id, panelSel) {
  if (!(await page.isVisible(panelSel))) await page.click(id);
  await page.waitForSelector(panelSel);
}

async function sendChat(page, text) {
  await openPanel(page, '#ctl-chat', '#chat-log');
  await page.fill('#chat-input', text);
  await page.press('#chat-input', 'Enter');
}

async function waitChat(viewer, text) {
  await openPanel(viewer.page, '#ctl-chat', '#chat-log');
  return waitFor(`${viewer.who} to read "${text}"`, async () => {
    const t = await viewer.page.textContent('#chat-log');
    return { ok: t.includes(text) };
  }, 15000);
}

// Host signs in and schedules; the guest joins by the deep link. `guestSetup(page)` runs
// before the guest's page opens the meeting (e.g. to route its WebSockets).
async function meetTwo(browser, { schedule, guestSetup }) {
  const host = { who: 'host', page: await newPage(browser, 'host') };
  await signIn(host.page, 'host@corp.test');
  let code;
  if (schedule) {
    await host.page.getByLabel('Title').fill('Design review');
    await host.page.getByLabel('Invitees (emails, separated by commas)').fill('guest@corp.test');
    await host.page.click('#m-create');
    const li = await host.page.waitForSelector('li.meeting:has-text("Design review")');
    code = await li.getAttribute('data-code');
    console.log(`SCHEDULED ${code}`);
    await cue();
    await host.page.click(`li.meeting[data-code="${code}"] >> text=Join`);
  } else {
    await host.page.click('#instant');
  }
  await host.page.waitForSelector('#join-now');
  code = code || host.page.url().split('/m/')[1];
  await host.page.click('#join-now');
  await host.page.waitForSelector('#ctl-leave');
  const guest = { who: 'guest', page: await newPage(browser, 'guest') };
  if (guestSetup) await guestSetup(guest.page);
  await guest.page.goto(`${BASE}/m/${code}?name=${encodeURIComponent('Guest Gina')}&autojoin=1`);
  await guest.page.waitForSelector('#ctl-leave');
  return { host, guest, code };
}


const scenarios = {
  async meeting(browser) {
    const out = {};
    const { host, guest, code } = await meetTwo(browser, { schedule: true });
    out.code = code;
    out.host_sees_guest = await waitSees(host, 'Guest Gina');
    out.guest_sees_host = await waitSees(guest, 'host');
    // Chat both ways.
    await sendChat(host.page, 'Hello from the host');
    await waitChat(guest, 'Hello from the host');
    await sendChat(guest.page, 'Hi host, the guest here');
    await waitChat(host, 'Hi host, the guest here');
    out.chat = true;
    await host.page.click('#ctl-chat'); // close the panel for the picture
    await sleep(1500);
    out.shot_meeting = await shot(host.page, 'meeting.png');
    // Device switching mid-call: another microphone replaces the first on the same sender,
    // and the host keeps receiving the guest's audio.
    await guest.page.click('#ctl-devices');
    await guest.page.waitForSelector('#room-dev-audio option', { state: 'attached' });
    const mics = await guest.page.$$eval('#room-dev-audio option', (o) => o.map((x) => x.value));
    const curMic = await guest.page.$eval('#room-dev-audio', (x) => x.value);
    const otherMic = mics.find((v) => v !== curMic);
    // The sender may carry the noise-suppressed track: the device is the raw microphone's.
    const senderTrack = () => guest.page.evaluate(() => { const t = window.room.client.published.get('microphone').sender.track; return { id: t.id, device: window.room.media.rawAudio.getSettings().deviceId }; });
    const micBefore = await senderTrack();
    out.device_switch = { microphones: mics.length };
    if (otherMic) {
      await guest.page.selectOption('#room-dev-audio', otherMic);
      out.device_switch.after = (await waitFor('the new microphone on the sender', async () => {
        const t = await senderTrack();
        return { ok: t.id !== micBefore.id && t.device === otherMic, t };
      }, 15000)).t;
      const audioFrom = async () => ((await roomState(host.page)).stats.find((x) => x.kind === 'audio' && x.participantId === out.host_sees_guest.pid) || {}).packetsReceived || 0;
      const a0 = await audioFrom();
      out.device_switch.audio_packets_after = (await waitFor('audio after switching', async () => { const n = await audioFrom(); return { ok: n > a0 + 25, n: n - a0 }; }, 15000)).n;
    }
    await guest.page.click('#ctl-devices');
    // Screen share from the guest: the host shows it large.
    await guest.page.click('#ctl-share');
    out.screen = await waitFor('the host to show the guest screen large', async () => {
      const s = await roomState(host.page);
      const tile = s.tiles.find((t) => !t.self);
      const st = s.stage;
      return { ok: !!st && st.w > 0 && st.pid === out.host_sees_guest.pid && st.shownW > 2 * tile.shownW, stage: st, tileShownW: tile && tile.shownW };
    }, 30000);
    out.shot_screen = await shot(host.page, 'screen-share.png');
    await guest.page.click('#ctl-share'); // stop
    await waitFor('the stage to go away', async () => ({ ok: !(await roomState(host.page)).stage }), 20000);
    // Host controls: mute, then remove; the guest is told why.
    const gpid = (await roomState(guest.page)).me;
    await openPanel(host.page, '#ctl-people', '#people');
    await host.page.click(`#people li[data-pid="${gpid}"] .host-mute`);
    out.guest_muted = await waitFor('the guest to be muted', async () => {
      const s = await roomState(guest.page);
      const pressed = await guest.page.getAttribute('#ctl-mic', 'aria-pressed');
      return { ok: s.audioMuted === true && pressed === 'true', pressed };
    }, 15000);
    await host.page.click(`#people li[data-pid="${gpid}"] .host-remove`);
    await guest.page.waitForSelector('#ended', { timeout: 15000 });
    out.guest_removed = {
      reason: await guest.page.getAttribute('#ended', 'data-reason'),
      text: await guest.page.textContent('#ended-why'),
    };
    out.host_alone = await waitFor('the host to be alone', async () => {
      const s = await roomState(host.page);
      return { ok: s.tiles.length === 1, tiles: s.tiles.length };
    }, 15000);
    // Lock: a latecomer is refused and told why; then the host ends the meeting for all.
    await host.page.click('#host-lock');
    await host.page.waitForSelector('#host-lock:has-text("Unlock meeting")');
    const late = await newPage(browser, 'late');
    await late.goto(`${BASE}/m/${code}?name=Late&autojoin=1`);
    await late.waitForSelector('#ended', { timeout: 20000 });
    out.late = { reason: await late.getAttribute('#ended', 'data-reason'), text: await late.textContent('#ended-why') };
    await host.page.click('#host-end');
    await host.page.waitForSelector('#ended', { timeout: 15000 });
    out.host_ended = await host.page.getAttribute('#ended', 'data-reason');
    // The home page with the scheduled meeting, and the Chinese switch.
    await host.page.goto(BASE + '/');
    await host.page.waitForSelector('#instant');
    out.shot_home = await shot(host.page, 'home.png');
    await host.page.click('#lang');
    out.zh_button = await host.page.textContent('#instant');
    return out;
  },

  // The admin page: servers and live meetings for an administrator; refused to anyone else.
  async admin(browser) {
    const out = {};
    const page = await newPage(browser, 'admin');
    await signIn(page, 'admin@corp.test');
    await page.click('#admin-link');
    await page.waitForSelector('#admin');
    const cells = (sel) => page.$$eval(`${sel} tbody tr`, (rows) => rows.map((r) => [...r.querySelectorAll('td')].map((td) => td.textContent)));
    out.nodes = await cells('#admin-nodes');
    out.meetings = await cells('#admin-meetings');
    out.queued = await page.textContent('#admin-queued');
    out.failed = await page.textContent('#admin-failed');
    out.failures = await page.$$eval('#admin-mail-failures tbody tr', (rows) => rows.map((r) => r.textContent));
    out.shot_admin = await shot(page, 'admin.png');
    const other = await newPage(browser, 'other');
    await signIn(other, 'bob@corp.test');
    out.other_has_link = (await other.$('#admin-link')) !== null;
    await other.goto(BASE + '/#admin');
    await other.waitForSelector('#admin-error');
    out.other_error = await other.textContent('#admin-error p');
    return out;
  },

  async restart(browser) {
    const out = {};
    const { host, guest } = await meetTwo(browser, { schedule: false });
    const before = { host: await waitSees(host, 'Guest Gina'), guest: await waitSees(guest, 'host') };
    out.before = before;
    console.log('READY_RESTART');
    const killedAt = Date.now();
    const line = await cue();
    out.restart_cue_after_s = (Date.now() - killedAt) / 1000;
    if (line !== 'restarted') throw new Error('unexpected cue ' + line);
    const [h, g] = await Promise.all([waitSees(host, 'Guest Gina', 30000), waitSees(guest, 'host', 30000)]);
    out.reconnected_after_s = (Date.now() - killedAt) / 1000;
    out.after = { host: h, guest: g };
    out.new_ids = h.pid !== before.host.pid && g.pid !== before.guest.pid;
    return out;
  },
};

// tests/browser/notes.cjs uses these helpers and runs its own scenarios.
module.exports = { BASE, SHOTS, log, sleep, waitFor, cue, launch, newPage, shot, signIn, meetTwo, run };

async function run(scenarios) {
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
}

if (require.main === module) run(scenarios);
