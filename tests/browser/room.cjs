// The meeting room as people use it (issue 21), in Debian's headless Chromium through
// playwright-core, inside the private network namespace of tests/it/room_ui.rs. Each browser
// gets its fake microphone/camera from files the Rust test generated (a voice-like tone
// burst, silence, noise, a checkerboard video). Same stdio protocol as web.cjs:
//   stdout `READY_DROP` → stdin `dropped` (UDP on lo blocked); `READY_RESTORE` → `restored`
//   stdout `RESULT {...}` and exit 0, or `FAIL reason` and exit 1.
'use strict';
const fs = require('fs');
const path = require('path');
const { BASE, log, sleep, waitFor, cue, shot } = require('./web.cjs');
const pw = require(process.env.PLAYWRIGHT_CORE || '/var/tmp/meeting-appliance-node/node_modules/playwright-core');

const CODE = process.env.CODE;
const TOKEN = process.env.TOKEN; // the host's session (signed in by the Rust test)
const MEETING_ID = process.env.MEETING_ID;
const FILES = process.env.FILES; // dir with voice.wav, silence.wav, noise.wav, checker.y4m
const AXE = process.env.AXE || path.join(__dirname, '../../web/node_modules/axe-core/axe.min.js');

async function launch({ audio, video, tabShare = false, exe = '/usr/bin/chromium' } = {}) {
  // exe: the browser, or a script that starts it (on one CPU, for fast_join).
  // tabShare: the real picker (no fake UI) picks the tab titled "Tab Audio Source", with its
  // audio; permissions for camera and microphone come from the context.
  const args = [
    '--no-sandbox', '--disable-gpu', '--use-fake-device-for-media-stream',
    '--autoplay-policy=no-user-gesture-required', '--allow-loopback-in-peer-connection',
    '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run', '--disable-quic',
    '--disable-features=PreloadTopChromeWebUI,WebUIOmniboxPopup,WebUIOmniboxFullPopup,WebUIOmniboxAimPopup',
    ...(tabShare ? ['--auto-select-tab-capture-source-by-title=Tab Audio Source'] : ['--use-fake-ui-for-media-stream', '--auto-select-desktop-capture-source=Entire screen']),
  ];
  if (audio) args.push(`--use-file-for-fake-audio-capture=${path.join(FILES, audio)}`);
  if (video) args.push(`--use-file-for-fake-video-capture=${path.join(FILES, video)}`);
  // Tab audio needs a browser that renders audio: headed, on the X display and PulseAudio
  // server the test started (headless Chromium mirrors a tab's audio as silence).
  const headed = tabShare && !!process.env.DISPLAY;
  return pw.chromium.launch({ executablePath: exe, headless: !headed, args });
}

async function page(browser, who, { host = false, viewport = { width: 1280, height: 800 }, mobile = false, locale = 'en-US' } = {}) {
  const ctx = await browser.newContext({
    viewport, locale, permissions: ['camera', 'microphone'],
    ...(mobile ? { isMobile: true, hasTouch: true, deviceScaleFactor: 3 } : {}),
  });
  if (host) {
    const u = new URL(BASE);
    await ctx.addCookies([{ name: 'meeting_session', value: TOKEN, domain: u.hostname, path: '/', httpOnly: true }]);
  }
  const p = await ctx.newPage();
  p.on('console', (m) => { if (m.type() === 'error' || process.env.VERBOSE) log(`[${who} console]`, m.text()); });
  p.on('pageerror', (e) => log(`[${who} pageerror]`, String(e)));
  p.who = who;
  return p;
}

/** Opens the deep link and waits until this person is in (participant id known). */
async function joinRoom(p, name, extra = '') {
  await p.goto(`${BASE}/m/${CODE}?name=${encodeURIComponent(name)}&autojoin=1${extra}`);
  await p.waitForSelector('#ctl-leave');
  const me = await waitFor(`${name} to join`, async () => {
    const id = await p.evaluate(() => window.room && window.room.client && window.room.client.participantId);
    return { ok: !!id, id };
  }, 30000);
  return me.id;
}

const state = (p) => p.evaluate(async () => {
  const r = window.room;
  const stats = r.client ? Object.values(await r.client.inboundStats()) : [];
  return {
    me: r.me, layout: r.layout, main: document.getElementById('main-tile')?.dataset.pid || null,
    why: document.getElementById('main-tile')?.dataset.why || null,
    tiles: [...document.querySelectorAll('figure.tile')].map((f) => ({
      pid: f.dataset.pid, self: f.dataset.self === '1', cls: f.className, w: f.querySelector('video').videoWidth,
      shownW: f.querySelector('video').clientWidth, netq: f.querySelector('.netq')?.dataset.level, netqFrom: f.querySelector('.netq')?.dataset.from,
      netqLabel: f.querySelector('.netq')?.getAttribute('aria-label'), muted: !!f.querySelector('.mic-off'),
    })),
    stats,
  };
});

const frames = (s, pid, source = 'camera') => (s.stats.find((x) => x.kind === 'video' && x.participantId === pid && x.source === source) || {});

async function waitVideo(p, pid, what) {
  let first = null;
  return waitFor(what || `${p.who} to see ${pid}`, async () => {
    const f = frames(await state(p), pid);
    if (first === null && f.framesDecoded > 0) first = f.framesDecoded;
    return { ok: first !== null && f.framesDecoded >= first + 5, framesDecoded: f.framesDecoded, w: f.frameWidth };
  }, 60000);
}

/** Press a key in the room (the page body has focus). */
async function key(p, k) {
  await p.evaluate(() => { if (document.activeElement && document.activeElement !== document.body) document.activeElement.blur(); });
  await p.keyboard.press(k);
}

async function axe(p) {
  await p.evaluate(fs.readFileSync(AXE, 'utf8'));
  return p.evaluate(async () => {
    const r = await window.axe.run(document, { resultTypes: ['violations'] });
    return r.violations.map((v) => ({ id: v.id, impact: v.impact, help: v.help, nodes: v.nodes.slice(0, 3).map((n) => n.target.join(' ')) }));
  });
}

/** Mean power of what `p` receives from `pid` over `ms`, in dB (from totalAudioEnergy). */
async function receivedDb(p, pid, source, ms) {
  const read = async () => (await state(p)).stats.find((x) => x.kind === 'audio' && x.participantId === pid && x.source === source) || {};
  const a = await read();
  await sleep(ms);
  const b = await read();
  const e = (b.totalAudioEnergy || 0) - (a.totalAudioEnergy || 0);
  const d = (b.totalSamplesDuration || 0) - (a.totalSamplesDuration || 0);
  return { db: d > 0 && e > 0 ? 10 * Math.log10(e / d) : -200, seconds: d, packets: (b.packetsReceived || 0) - (a.packetsReceived || 0) };
}

/** What `p` sends as its microphone over `ms`: the sent track's mean power in dB (after the
 *  page's effects, from the `media-source` stats), the audio packets sent, and the power
 *  second by second (`series`, rounded dB). */
async function sentDb(p, ms) {
  const read = () => p.evaluate(async () => {
    const o = { e: 0, d: 0, packets: 0 };
    (await window.room.client.pc.getStats()).forEach((x) => {
      if (x.type === 'media-source' && x.kind === 'audio') { o.e += x.totalAudioEnergy || 0; o.d += x.totalSamplesDuration || 0; }
      if (x.type === 'outbound-rtp' && x.kind === 'audio') o.packets += x.packetsSent || 0;
    });
    return o;
  });
  const dB = (a, b) => { const e = b.e - a.e, d = b.d - a.d; return d > 0 && e > 0 ? 10 * Math.log10(e / d) : -200; };
  const reads = [await read()];
  for (let t = 0; t < ms; t += 1000) { await sleep(Math.min(1000, ms - t)); reads.push(await read()); }
  const [a, b] = [reads[0], reads[reads.length - 1]];
  return { db: dB(a, b), packets: b.packets - a.packets, series: reads.slice(1).map((r, i) => Math.round(dB(reads[i], r))) };
}

/** CPU seconds used by a browser's whole process tree (from /proc, clock ticks of 1/100 s).
 *  The browser is found by `marker`, a string only its own command line has (its fake
 *  device file); its renderers, GPU and utility processes are its descendants. */
function cpuOf(marker) {
  const procs = new Map();
  for (const d of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try {
      const st = fs.readFileSync(`/proc/${d}/stat`, 'utf8');
      const f = st.slice(st.lastIndexOf(')') + 2).split(' ');
      const cmd = fs.readFileSync(`/proc/${d}/cmdline`, 'utf8');
      procs.set(Number(d), { ppid: Number(f[1]), cpu: (Number(f[11]) + Number(f[12])) / 100, mine: cmd.includes(marker) });
    } catch { /* gone */ }
  }
  const roots = [...procs].filter(([, p]) => p.mine && !(procs.get(p.ppid) || {}).mine).map(([pid]) => pid);
  let sum = 0;
  const walk = (pid) => { const k = procs.get(pid); if (k) sum += k.cpu; for (const [c, v] of procs) if (v.ppid === pid) walk(c); };
  roots.forEach(walk);
  return roots.length ? sum : null;
}

async function cpuOver(marker, ms) {
  const a = cpuOf(marker);
  await sleep(ms);
  const b = cpuOf(marker);
  if (a === null || b === null) throw new Error('no browser process with ' + marker);
  return Math.round(((b - a) / (ms / 1000)) * 1000) / 10; // % of one core
}

/** Contrast (std dev of luma) in the four corners of what a video element shows. */
async function corners(p, selector) {
  return p.evaluate((sel) => {
    const v = typeof sel === 'string' ? document.querySelector(sel) : null;
    if (!v || !v.videoWidth) return null;
    const c = document.createElement('canvas');
    c.width = 320; c.height = Math.round(320 * v.videoHeight / v.videoWidth);
    const g = c.getContext('2d', { willReadFrequently: true });
    g.drawImage(v, 0, 0, c.width, c.height);
    const box = (x, y) => {
      const d = g.getImageData(x, y, 48, 32).data;
      const l = [];
      for (let i = 0; i < d.length; i += 4) l.push(0.299 * d[i] + 0.587 * d[i + 1] + 0.114 * d[i + 2]);
      const m = l.reduce((a, b) => a + b, 0) / l.length;
      return { mean: m, sd: Math.sqrt(l.reduce((a, b) => a + (b - m) ** 2, 0) / l.length), luma: l };
    };
    const bs = [box(2, 2), box(c.width - 50, 2), box(2, c.height - 34), box(c.width - 50, c.height - 34)];
    return { sd: bs.reduce((a, b) => a + b.sd, 0) / 4, mean: bs.reduce((a, b) => a + b.mean, 0) / 4, luma: bs.map((b) => b.luma) };
  }, selector);
}

const scenarios = {
  // Speaker view follows the talker, pin overrides, full screen, hide self view, layer
  // requests follow tile sizes, talking-while-muted hint, indicators, details, shortcuts,
  // help overlay, reactions, spotlight for all, server quality, audio-only mode, zh-CN.
  async room(_) {
    const out = {};
    const talkers = await launch({ audio: 'voice.wav' });
    const quiet = await launch({ audio: 'silence.wav' });
    try {
      const alice = await page(talkers, 'alice', { host: true });
      const bob = await page(talkers, 'bob');
      const carol = await page(quiet, 'carol');
      const A = await joinRoom(alice, 'Alice');
      const B = await joinRoom(bob, 'Bob', '&muted=1');
      const C = await joinRoom(carol, 'Carol');
      out.ids = { A, B, C };
      await waitVideo(carol, A);
      await waitVideo(carol, B);
      // Speaker view by the shortcut: Alice talks (Bob is muted).
      await key(carol, 'l');
      out.speaker_alice = await waitFor('Alice large', async () => { const s = await state(carol); return { ok: s.layout === 'speaker' && s.main === A, main: s.main, why: s.why }; }, 20000);
      out.shot_speaker = await shot(carol, 'room-speaker.png');
      // Bob talks, Alice goes quiet: the large tile follows.
      await bob.click('#ctl-mic');
      await alice.click('#ctl-mic');
      out.speaker_bob = await waitFor('Bob large', async () => { const s = await state(carol); return { ok: s.main === B, main: s.main, why: s.why }; }, 20000);
      // Carol sees who is talking and who is muted on the tiles.
      out.indicators = await waitFor('talking and muted marks', async () => {
        const s = await state(carol);
        const b = s.tiles.find((t) => t.pid === B), a = s.tiles.find((t) => t.pid === A);
        return { ok: !!b && !!a && b.cls.includes('talking') && a.muted && !b.muted && !!b.netq, bob: b && b.cls, aliceMuted: a && a.muted, netq: b && [b.netq, b.netqFrom, b.netqLabel] };
      }, 15000);
      // Pin Alice: she stays large although Bob talks.
      await carol.hover(`#main-tile`);
      await carol.click(`figure.tile[data-pid="${A}"] .tile-pin`);
      await sleep(3000);
      const pinned = await state(carol);
      out.pinned = { main: pinned.main, why: pinned.why };
      // The large tile asks for a large layer, the filmstrip for a small one.
      out.layers = await waitFor('layers by tile size', async () => {
        const s = await state(carol);
        const a = frames(s, A), b = frames(s, B);
        const ta = s.tiles.find((t) => t.pid === A), tb = s.tiles.find((t) => t.pid === B);
        return { ok: a.frameWidth >= 2 * (b.frameWidth || 1e9) || (a.frameWidth > b.frameWidth && a.frameWidth >= 640), alice: a.frameWidth, bob: b.frameWidth, aliceShown: ta && ta.shownW, bobShown: tb && tb.shownW };
      }, 30000);
      // Full screen a tile.
      await carol.click(`figure.tile[data-pid="${A}"] .tile-full`);
      out.fullscreen = await waitFor('full screen', async () => {
        const r = await carol.evaluate(() => ({ pid: document.fullscreenElement && document.fullscreenElement.dataset.pid, w: document.fullscreenElement && document.fullscreenElement.clientWidth, vw: innerWidth }));
        return { ok: r.pid !== null && r.pid !== undefined, ...r };
      }, 10000);
      await carol.evaluate(() => document.exitFullscreen());
      await carol.click(`figure.tile[data-pid="${A}"] .tile-pin`); // unpin
      // Hide self view.
      await carol.click('#ctl-devices');
      await carol.check('#room-hide-self');
      out.hide_self = await waitFor('own tile hidden', async () => { const s = await state(carol); return { ok: !s.tiles.some((t) => t.self), tiles: s.tiles.length }; }, 5000);
      await carol.uncheck('#room-hide-self');
      // Audio only: no video received, shown on the tiles.
      await carol.check('#room-audio-only');
      await sleep(2500);
      const f0 = frames(await state(carol), B).framesDecoded || 0;
      await sleep(3000);
      const s1 = await state(carol);
      out.audio_only = { frames_in_3s: (frames(s1, B).framesDecoded || 0) - f0, marked: s1.tiles.filter((t) => !t.self && t.cls.includes('audio-only')).length };
      out.shot_audio_only = await shot(carol, 'room-audio-only.png');
      await carol.uncheck('#room-audio-only');
      out.video_back = await waitVideo(carol, B, 'video after audio-only');
      await carol.click('#ctl-devices');
      // Talking while muted: Alice (her microphone has a voice) mutes herself with "m".
      await alice.click('#ctl-mic'); // unmute
      await sleep(1500);
      const t0 = await alice.evaluate(() => performance.now());
      await key(alice, 'm');
      const hint = await waitFor('the muted hint', async () => {
        const r = await alice.evaluate(() => ({ shown: !document.getElementById('muted-hint').hidden, at: window.room.mutedHintAt, muted: window.room.audioMuted, text: document.getElementById('muted-hint').textContent }));
        return { ok: r.shown && r.muted, ...r };
      }, 5000);
      out.muted_hint = { after_ms: Math.round(hint.at - t0), text: hint.text };
      out.shot_hint = await shot(alice, 'room-muted-hint.png');
      // The connection details panel ("i").
      await key(carol, 'i');
      out.details = await waitFor('details', async () => {
        const txt = await carol.textContent('#side').catch(() => '');
        return { ok: /ms/.test(txt) && /VP8|H264/.test(txt) && /kbit\/s/.test(txt), text: txt };
      }, 10000);
      out.shot_details = await shot(carol, 'room-details.png');
      await key(carol, 'i');
      // The help overlay ("?"), closed with Escape.
      await key(carol, 'Shift+Slash');
      await carol.waitForSelector('#help', { timeout: 5000 });
      out.help = { keys: await carol.$$eval('#help dt', (d) => d.map((x) => x.textContent)), focus: await carol.evaluate(() => document.activeElement && document.activeElement.id) };
      out.shot_help = await shot(carol, 'room-shortcuts.png');
      await carol.keyboard.press('Escape');
      out.help_closed = (await carol.$('#help')) === null;
      // The hand by shortcut, announced to the others.
      await key(bob, 'h');
      out.hand_announced = await waitFor('hand announced', async () => { const t = await carol.textContent('#announce'); return { ok: t.includes('Bob raised a hand'), t }; }, 10000);
      // Reactions: relayed by the server to everyone; shown on the sender's tile.
      await bob.click('#ctl-react');
      await bob.click('.react >> nth=0');
      out.reactions = await waitFor('reaction seen', async () => {
        const r = await carol.evaluate((b) => ({ onTile: [...document.querySelectorAll(`figure.tile[data-pid="${b}"] .reaction`)].map((x) => x.textContent), said: document.getElementById('announce')?.textContent || '' }), B);
        return { ok: r.onTile.length > 0, ...r };
      }, 10000);
      // A second reaction within the second: the client holds it back (the server would refuse it).
      await bob.click('.react >> nth=1');
      out.reaction_wait = await bob.evaluate(() => document.getElementById('toast')?.textContent || '');
      // Spotlight for everyone (host only): Carol's view follows Alice's choice.
      const spotSel = `figure.tile[data-pid="${B}"] .tile-spot`;
      out.spot_button_for_host = !!(await alice.$(spotSel));
      out.spot_button_for_guest = !!(await carol.$('.tile-spot'));
      if (out.spot_button_for_host) { await alice.hover(`figure.tile[data-pid="${B}"]`); await alice.click(spotSel); }
      out.spotlight = await waitFor('spotlight at carol', async () => {
        const r = await carol.evaluate((b) => ({ spot: window.room.spotlight, lit: !!document.querySelector(`figure.tile[data-pid="${b}"].spotlit`) }), B);
        return { ok: r.spot === B && r.lit, ...r };
      }, 10000);
      await alice.click(spotSel);
      out.spotlight_off = await waitFor('spotlight off at carol', async () => {
        const spot = await carol.evaluate(() => window.room.spotlight);
        return { ok: spot === null, spot };
      }, 10000);
      // Quality as the server measures it: bars on Bob's tile at Carol, from the server.
      out.quality_msg = await waitFor('server quality', async () => {
        const q = (await state(carol)).tiles.find((t) => t.pid === B);
        return { ok: !!q && q.netqFrom === 'server', level: q && q.netq, from: q && q.netqFrom, label: q && q.netqLabel };
      }, 10000);
      // Grid again and a picture; then the same room in Chinese.
      await key(carol, 'l');
      await sleep(1500);
      out.shot_grid = await shot(carol, 'room-grid.png');
      await carol.click('#lang');
      await sleep(800);
      out.zh = { mic: await carol.getAttribute('#ctl-mic', 'aria-label'), layout: await carol.getAttribute('#ctl-layout', 'aria-label') };
      await key(carol, 'Shift+Slash');
      await carol.waitForSelector('#help');
      out.zh.help = await carol.textContent('#help h2');
      out.zh.glyphs = await carol.evaluate(() => {
        // Real CJK glyphs: a CJK string and a string of "no such glyph" boxes differ in ink.
        const c = document.createElement('canvas'); c.width = 200; c.height = 40;
        const g = c.getContext('2d'); g.font = '24px sans-serif'; g.fillStyle = '#fff';
        const ink = (s) => { g.clearRect(0, 0, 200, 40); g.fillText(s, 0, 30); return [...g.getImageData(0, 0, 200, 40).data].filter((x, i) => i % 4 === 3 && x > 0).length; };
        return { cjk: ink('键盘快捷键'), tofu: ink('\u{10FFFD}\u{10FFFD}\u{10FFFD}\u{10FFFD}\u{10FFFD}') };
      });
      out.shot_zh = await shot(carol, 'room-zh.png');
      await carol.keyboard.press('Escape');
      await carol.click('#lang');
    } finally {
      await talkers.close().catch(() => {});
      await quiet.close().catch(() => {});
    }
    return out;
  },

  // Pre-join: the microphone meter moves, the speaker test plays, the camera preview shows
  // the blurred picture, and the choice is remembered by this browser.
  async prejoin(_) {
    const out = {};
    const b = await launch({ audio: 'voice.wav', video: 'checker.y4m' });
    try {
      const p = await page(b, 'guest');
      await p.goto(`${BASE}/m/${CODE}`);
      await p.waitForSelector('#mic-meter');
      out.meter = await waitFor('the meter to move', async () => {
        const v = await p.$eval('#mic-meter', (m) => Number(m.dataset.db || -100));
        return { ok: v > -40, db: v };
      }, 10000);
      await p.click('#speaker-test');
      out.speaker = (await waitFor('the test sound', async () => { const v = await p.getAttribute('#speaker-test', 'data-played'); return { ok: v !== null, v }; }, 10000)).v;
      await sleep(1000);
      const sharp = await corners(p, '#preview');
      await p.selectOption('#fx-bg', 'blur');
      await sleep(3000);
      const blurred = await waitFor('the blurred preview', async () => { const c = await corners(p, '#preview'); return { ok: !!c && c.sd < sharp.sd / 2, sd: c && c.sd }; }, 30000);
      out.preview = { sharp_sd: sharp.sd, blurred_sd: blurred.sd, status: await p.textContent('#fx-status') };
      out.shot = await shot(p, 'prejoin.png');
      out.axe_prejoin = await axe(p);
      await p.reload();
      await p.waitForSelector('#fx-bg');
      out.remembered = { bg: await p.$eval('#fx-bg', (s) => s.value), noise: await p.$eval('#fx-noise', (c) => c.checked) };
      await p.selectOption('#fx-bg', 'none');
    } finally { await b.close().catch(() => {}); }
    return out;
  },

  // Noise suppression: the sender's microphone is noise only; what the other browser
  // receives, with RNNoise off and then on.
  async noise(_) {
    const out = {};
    const noisy = await launch({ audio: 'noise.wav' });
    const quiet = await launch({ audio: 'silence.wav' });
    try {
      const s = await page(noisy, 'sender');
      const r = await page(quiet, 'receiver');
      const S = await joinRoom(s, 'Noisy');
      await joinRoom(r, 'Listener');
      await waitFor('audio from the sender', async () => { const x = (await state(r)).stats.find((y) => y.kind === 'audio' && y.participantId === S); return { ok: !!x && x.packetsReceived > 50 }; }, 30000);
      await s.click('#ctl-devices');
      await s.waitForSelector('#room-fx-noise');
      // Switching on loads RNNoise (wasm and worklet) first: measure only once the page sends
      // the track the setting asks for, then let the filter settle (its recurrent state takes
      // a few seconds to learn a steady noise; this measures the steady state).
      const sending = (on) => s.evaluate((on) => {
        const m = window.room.media;
        const sender = window.room.client.pc.getSenders().find((x) => x.track && x.track.kind === 'audio');
        const want = on ? m.noise && m.noise.dest.stream.getAudioTracks()[0] : m.rawAudio;
        return { ok: !!sender && !!want && sender.track === want };
      }, on);
      const measure = async (on) => {
        await s.setChecked('#room-fx-noise', on);
        await waitFor(`the ${on ? 'filtered' : 'raw'} microphone sent`, () => sending(on), 20000);
        await sleep(4000);
        const [received, sent] = await Promise.all([receivedDb(r, S, 'microphone', 5000), sentDb(s, 5000)]);
        return { ...received, sent };
      };
      if (process.env.NOISE_SERIES) {
        await s.setChecked('#room-fx-noise', true);
        await waitFor('filtered', () => sending(true), 20000);
        out.series = (await sentDb(s, 15000)).series;
        await s.setChecked('#room-fx-noise', false);
        await waitFor('raw', () => sending(false), 20000);
      }
      out.off = await measure(false);
      out.on = await measure(true);
      out.off_again = await measure(false);
      out.reduction_db = Math.round((Math.min(out.off.db, out.off_again.db) - out.on.db) * 10) / 10;
      out.sender_effects = await s.evaluate(() => window.room.media.effects);
    } finally { await noisy.close().catch(() => {}); await quiet.close().catch(() => {}); }
    return out;
  },

  // Background blur: the received picture's background is blurred (a checkerboard camera:
  // all of it is background), and the sending browser's CPU with blur off and on.
  async blur(_) {
    const out = {};
    const cam = await launch({ audio: 'silence.wav', video: 'checker.y4m' });
    const viewer = await launch({ audio: 'silence.wav' });
    try {
      const s = await page(cam, 'sender');
      const r = await page(viewer, 'receiver');
      const S = await joinRoom(s, 'Camera');
      await joinRoom(r, 'Viewer');
      await waitVideo(r, S);
      await sleep(3000);
      const tileSel = `figure.tile[data-pid="${S}"] video`;
      out.sent_raw = await s.evaluate(async () => {
        const v = document.createElement('video'); v.muted = true; v.srcObject = new MediaStream([window.room.media.rawVideo]); await v.play();
        v.id = 'raw-probe'; v.style.cssText = 'position:fixed;left:-9999px;width:320px'; document.body.append(v);
        await new Promise((res) => setTimeout(res, 500));
        return true;
      });
      const rawS = await corners(s, '#raw-probe');
      const offR = await corners(r, tileSel);
      out.cpu_off = await cpuOver('checker.y4m', 8000);
      await s.click('#ctl-devices');
      await s.selectOption('#room-fx-bg', 'blur');
      const onR = await waitFor('blurred video received', async () => { const c = await corners(r, tileSel); return { ok: !!c && c.sd < offR.sd / 2, ...c }; }, 40000);
      await sleep(2000);
      out.cpu_on = await cpuOver('checker.y4m', 8000);
      out.worker = await s.evaluate(() => window.backgroundStats || null);
      const rawNow = await corners(s, '#raw-probe');
      const diff = (a, b) => { let d = 0, n = 0; for (let i = 0; i < a.luma.length; i++) for (let j = 0; j < a.luma[i].length; j++) { d += Math.abs(a.luma[i][j] - b.luma[i][j]); n++; } return d / n; };
      out.contrast = { sent_raw: rawS.sd, received_off: offR.sd, received_on: onR.sd };
      out.background_diff = { raw_vs_received_off: diff(rawS, offR), raw_vs_received_on: diff(rawNow, onR) };
      out.shot_sender = await shot(s, 'room-blur-sender.png');
      out.shot_receiver = await shot(r, 'room-blur.png');
      await s.selectOption('#room-fx-bg', 'none');
    } finally { await cam.close().catch(() => {}); await viewer.close().catch(() => {}); }
    return out;
  },

  // A tab shared with its audio: the other browser hears it as a screen_audio track.
  async screen_audio(_) {
    const out = {};
    const b = await launch({ audio: 'silence.wav', tabShare: true });
    const v = await launch({ audio: 'silence.wav' });
    try {
      const s = await page(b, 'sharer');
      // The tab to share: a page that plays a tone, titled for auto-selection.
      const tab = await s.context().newPage();
      await tab.goto(`${BASE}/api/v1/auth/methods`);
      await tab.evaluate(() => {
        document.title = 'Tab Audio Source';
        const ctx = new AudioContext(); const o = ctx.createOscillator(); o.frequency.value = 440; const g = ctx.createGain(); g.gain.value = 0.5;
        o.connect(g).connect(ctx.destination); o.start(); window.osc = ctx;
      });
      out.tab_audio_state = await tab.evaluate(() => window.osc.state);
      const r = await page(v, 'viewer');
      const S = await joinRoom(s, 'Sharer');
      await joinRoom(r, 'Viewer');
      await s.bringToFront();
      await s.click('#ctl-share');
      out.published = await waitFor('screen and tab audio published', async () => {
        const x = await s.evaluate(() => ({ sources: [...window.room.client.published.keys()], audio: !!window.room.screenAudio,
          surface: window.room.screen && window.room.screen.getSettings().displaySurface, audioLabel: window.room.screenAudio && window.room.screenAudio.label }));
        return { ok: x.sources.includes('screen_audio'), ...x };
      }, 20000);
      // The captured tab audio as the sharer's page has it (before any network).
      out.local_capture_db = await s.evaluate(async () => {
        const ctx = new AudioContext(); const an = ctx.createAnalyser(); ctx.createMediaStreamSource(new MediaStream([window.room.screenAudio])).connect(an);
        await new Promise((r) => setTimeout(r, 500));
        const b = new Float32Array(an.fftSize); an.getFloatTimeDomainData(b);
        const rms = Math.sqrt(b.reduce((a, x) => a + x * x, 0) / b.length); return rms > 0 ? 20 * Math.log10(rms) : -200;
      });
      await waitFor('screen audio arriving', async () => { const x = (await state(r)).stats.find((y) => y.kind === 'audio' && y.source === 'screen_audio'); return { ok: !!x && x.packetsReceived > 50, x }; }, 30000);
      out.heard = await receivedDb(r, S, 'screen_audio', 3000);
      out.mic = await receivedDb(r, S, 'microphone', 2000);
      out.element = await r.evaluate(() => [...document.querySelectorAll('audio')].map((a) => ({ source: a.dataset.source, playing: !a.paused })));
    } finally { await b.close().catch(() => {}); await v.close().catch(() => {}); }
    return out;
  },

  // 390×844 portrait and 844×390 landscape (Chromium's mobile emulation): every control is
  // reachable (scrolled into view and hit-testable), nothing scrolls sideways.
  async mobile(_) {
    const out = {};
    const b = await launch({ audio: 'silence.wav' });
    try {
      const other = await page(b, 'other');
      await joinRoom(other, 'Desk');
      const check = async (viewport, name) => {
        const p = await page(b, name, { viewport, mobile: true });
        await joinRoom(p, 'Phone');
        await sleep(2500);
        const res = { viewport };
        res.before = await p.evaluate(() => ({ sw: document.documentElement.scrollWidth, bw: document.body.scrollWidth, iw: innerWidth }));
        res.controls = [];
        for (const id of await p.$$eval('.controls button', (bs) => bs.map((x) => x.id))) {
          const el = await p.$(`#${id}`);
          await el.scrollIntoViewIfNeeded();
          const r = await p.evaluate((i) => {
            const e = document.getElementById(i); const b = e.getBoundingClientRect();
            const hit = document.elementFromPoint(b.left + b.width / 2, b.top + b.height / 2);
            return { id: i, inView: b.left >= 0 && b.right <= innerWidth + 0.5 && b.top >= 0 && b.bottom <= innerHeight + 0.5, hit: !!hit && (hit === e || e.contains(hit)), w: Math.round(b.width), h: Math.round(b.height) };
          }, id);
          res.controls.push(r);
        }
        // Open the chat and send a line: the panel and its field work on the small screen.
        await p.click('#ctl-chat');
        await p.fill('#chat-input', 'from the phone');
        await p.press('#chat-input', 'Enter');
        res.chat = (await waitFor('chat from the phone', async () => ({ ok: await other.evaluate(() => window.room.chats.some((c) => c.text === 'from the phone')) }), 10000)).ok;
        await p.click('#ctl-chat');
        res.after = await p.evaluate(() => ({ sw: document.documentElement.scrollWidth, bw: document.body.scrollWidth, iw: innerWidth }));
        res.shot = await shot(p, `room-mobile-${name}.png`);
        await p.click('#ctl-leave');
        await p.context().close();
        return res;
      };
      out.portrait = await check({ width: 390, height: 844 }, 'portrait');
      out.landscape = await check({ width: 844, height: 390 }, 'landscape');
    } finally { await b.close().catch(() => {}); }
    return out;
  },

  // axe-core on every screen: sign-in, home, pre-join, room, notes (and the room in zh-CN).
  async axe(_) {
    const out = {};
    const b = await launch({ audio: 'silence.wav' });
    try {
      const anon = await page(b, 'anon');
      await anon.goto(BASE + '/');
      await anon.waitForSelector('#email');
      out.signin = await axe(anon);
      const host = await page(b, 'host', { host: true });
      await host.goto(BASE + '/');
      await host.waitForSelector('#instant');
      out.home = await axe(host);
      await host.goto(`${BASE}/m/${CODE}`);
      await host.waitForSelector('#join-now');
      out.prejoin = await axe(host);
      await host.click('#join-now');
      await host.waitForSelector('#ctl-leave');
      const guest = await page(b, 'guest');
      await joinRoom(guest, 'Guest');
      await waitFor('two tiles', async () => ({ ok: (await host.$$('figure.tile')).length === 2 }), 20000);
      await sleep(1500);
      out.room = await axe(host);
      await host.click('#ctl-people');
      out.room_people = await axe(host);
      await host.click('#ctl-details');
      await sleep(1200);
      out.room_details = await axe(host);
      await host.click('#ctl-devices');
      out.room_settings = await axe(host);
      await host.click('#ctl-help');
      out.room_help = await axe(host);
      await host.keyboard.press('Escape');
      await host.click('#lang');
      out.room_zh = await axe(host);
      await host.click('#lang');
      await host.click('#ctl-leave');
      const notes = await page(b, 'notes', { host: true });
      await notes.goto(`${BASE}/#notes/${MEETING_ID}`);
      await notes.waitForSelector('.notes');
      await sleep(1500);
      out.notes = await axe(notes);
    } finally { await b.close().catch(() => {}); }
    return out;
  },

  // A network change: UDP is dropped and restored by the Rust test; the clients restart
  // ICE on the same session, and nobody sees anyone leave or join.
  async ice_restart(_) {
    const out = {};
    const b = await launch({ audio: 'silence.wav' });
    try {
      const x = await page(b, 'x');
      const y = await page(b, 'y');
      const X = await joinRoom(x, 'Xavier');
      const Y = await joinRoom(y, 'Yolanda');
      await waitVideo(x, Y);
      await waitVideo(y, X);
      for (const p of [x, y]) {
        await p.evaluate(() => {
          window.seen = [];
          const c = window.room.client;
          window.firstClient = c;
          for (const t of ['participant_left', 'participant_joined', 'ice', 'closed']) c.addEventListener(t, (e) => window.seen.push({ t, d: e.detail && (e.detail.participant_id || e.detail.state || e.detail.reason || (e.detail.participant && e.detail.participant.participant_id)), at: performance.now() }));
          window.ufragBefore = c.localUfrag();
        });
      }
      console.log('READY_DROP');
      if ((await cue()) !== 'dropped') throw new Error('unexpected cue');
      // Both sides notice on their own (not at the same moment): restore only once both have
      // restarted, or the later one may recover by itself before its restart is due.
      out.during = await waitFor('ICE to notice and restart on both sides', async () => {
        const state = () => ({ ice: window.room.client && window.room.client.pc.iceConnectionState, restarts: window.room.client && window.room.client.iceRestarts, banner: document.getElementById('banner').textContent });
        const r = { x: await x.evaluate(state), y: await y.evaluate(state) };
        return { ok: r.x.restarts >= 1 && r.y.restarts >= 1, ...r };
      }, 40000);
      console.log('READY_RESTORE');
      if ((await cue()) !== 'restored') throw new Error('unexpected cue');
      const restoredAt = Date.now();
      const [vx, vy] = await Promise.all([waitVideo(x, Y, 'x sees y again'), waitVideo(y, X, 'y sees x again')]);
      out.recovered_after_s = (Date.now() - restoredAt) / 1000;
      out.after = { vx, vy };
      for (const [name, p] of [['x', x], ['y', y]]) {
        out[name] = await p.evaluate(() => ({
          same_client: window.room.client === window.firstClient, me: window.room.me, restarts: window.room.client.iceRestarts,
          ufrag_before: window.ufragBefore, ufrag_after: window.room.client.localUfrag(), seen: window.seen,
        }));
      }
      out.ids = { X, Y };
    } finally { await b.close().catch(() => {}); }
    return out;
  },

  // Deep link → first remote frame, five times, with someone already there.
  // The two browsers are two people's devices: on a box with 2 CPUs or more each runs on a
  // CPU of its own (else the joiner's network service waits behind the other browser's
  // three-layer video encoder, which no real joiner shares a CPU with); the server floats.
  async fast_join(_) {
    // The CPUs this process may run on (a container may allow fewer than the box has).
    const allowed = (/^Cpus_allowed_list:\s*(\S+)/m.exec(fs.readFileSync('/proc/self/status', 'utf8')) || [])[1] || '';
    const cpus = allowed.split(',').filter(Boolean).flatMap((r) => {
      const [a, z = a] = r.split('-').map(Number);
      return Array.from({ length: z - a + 1 }, (_, i) => a + i);
    });
    const out = { joins: [], cpus: cpus.length };
    const on = (cpu) => {
      if (cpus.length < 2) return undefined;
      const f = path.join(FILES, `chromium-cpu${cpu}`);
      fs.writeFileSync(f, `#!/bin/sh\nexec taskset -c ${cpu} /usr/bin/chromium "$@"\n`, { mode: 0o755 });
      return f;
    };
    const b = await launch({ audio: 'silence.wav', exe: on(cpus[1]) });
    const there = await launch({ audio: 'silence.wav', exe: on(cpus[0]) });
    try {
      const host = await page(there, 'there');
      const H = await joinRoom(host, 'Already there');
      await sleep(2000);
      for (let i = 0; i < 5; i++) {
        const ctx = await b.newContext({ viewport: { width: 1280, height: 800 }, permissions: ['camera', 'microphone'] });
        const p = await ctx.newPage();
        if (process.env.TRACE_DIR) await b.startTracing(p, { path: `${process.env.TRACE_DIR}/join${i}.json`, categories: (process.env.TRACE_CATEGORIES || 'devtools.timeline,v8,blink,toplevel,disabled-by-default-devtools.timeline').split(',') });
        await p.goto(`${BASE}/m/${CODE}?name=Joiner${i}&autojoin=1`);
        const r = await waitFor('first frame', async () => {
          const v = await p.evaluate(() => window.room && window.room.firstFrameAt);
          return { ok: v > 0, v };
        }, 20000);
        // The joiner's own camera and microphone go out after the first frame (the room
        // publishes them once its first picture is in): wait until both are published.
        await waitFor('the joiner to publish', async () => {
          const v = await p.evaluate(() => ['camera', 'microphone'].filter((s) => window.room.client && window.room.client.published.has(s)));
          return { ok: v.length === 2, v };
        }, 10000);
        // The meeting notes load by themselves (the panel stays closed), after the first frame.
        const notesAt = (await waitFor('the notes to load', async () => {
          const v = await p.evaluate(() => { const e = performance.getEntriesByType('resource').find((x) => /notes-live/.test(x.name)); return e ? Math.round(e.startTime) : 0; });
          return { ok: v > 0, v };
        }, 10000)).v;
        const settledWhy = await p.evaluate(() => window.room.settledWhy);
        const nav = await p.evaluate(() => {
          const n = performance.getEntriesByType('navigation')[0];
          const m = {};
          for (const e of performance.getEntriesByType('mark')) m[e.name] = Math.round(e.startTime);
          // The page, its scripts and the join request: when each was asked for, answered and done.
          const fetched = {};
          for (const e of performance.getEntriesByType('resource')) {
            if (!/\.js$|\/join\//.test(e.name)) continue;
            fetched[e.name.replace(/^.*\//, '')] = [e.startTime, e.responseStart, e.responseEnd].map(Math.round);
          }
          return { size: window.room.firstFrameSize, adopted: !!(window.room.client && window.room.client.adopted), page: [n.requestStart, n.responseStart, n.responseEnd].map(Math.round), domInteractive: Math.round(n.domInteractive), load: Math.round(n.loadEventEnd), marks: m, fetched };
        });
        if (process.env.TRACE_DIR) await b.stopTracing();
        out.joins.push({ ms: Math.round(r.v), notes_at: notesAt, settled_why: settledWhy, ...nav });
        await p.click('#ctl-leave');
        await ctx.close();
        await sleep(1500);
      }
      // The layers the person already there sends (simulcast; fewer for a small camera).
      out.host_layers = await host.evaluate(async () => {
        const r = [];
        (await window.room.client.pc.getStats()).forEach((s) => { if (s.type === 'outbound-rtp' && s.kind === 'video') r.push({ rid: s.rid, w: s.frameWidth, h: s.frameHeight, frames: s.framesEncoded, active: s.active }); });
        return r;
      });
      // With the camera of the person there off, a joiner has no first picture to wait for:
      // it publishes at once (not after the room's 1 s fallback).
      await host.click('#ctl-cam');
      {
        const ctx = await b.newContext({ viewport: { width: 1280, height: 800 }, permissions: ['camera', 'microphone'] });
        const p = await ctx.newPage();
        await p.goto(`${BASE}/m/${CODE}?name=Joiner5&autojoin=1`);
        const pub = await waitFor('a joiner with no camera on to publish', async () => {
          const v = await p.evaluate(() => window.room && window.room.client ? { why: window.room.settledWhy, published: ['camera', 'microphone'].filter((s) => window.room.client.published.has(s)) } : null);
          return { ok: !!v && v.published.length === 2, v };
        }, 10000);
        out.no_camera_join = pub.v;
        await p.click('#ctl-leave');
        await ctx.close();
      }
      const ms = out.joins.map((j) => j.ms).sort((a, b2) => a - b2);
      out.median_ms = ms[2];
      out.host = H;
    } finally { await b.close().catch(() => {}); await there.close().catch(() => {}); }
    return out;
  },
};

// Each scenario launches the browsers it needs (each with its own fake devices).
(async () => {
  try {
    const fn = scenarios[process.env.SCENARIO];
    if (!fn) throw new Error('no scenario ' + process.env.SCENARIO);
    const r = await fn();
    console.log('RESULT ' + JSON.stringify(r));
    process.exit(0);
  } catch (e) {
    console.log('FAIL ' + String(e && e.stack || e).replace(/\n/g, ' | '));
    process.exit(1);
  }
})();
