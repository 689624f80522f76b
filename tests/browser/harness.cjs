// Drives real headless Chromium (Debian's, through playwright-core) against a running
// appliance. Used by the Rust tests in tests/media_*.rs, always inside a private network
// namespace where only loopback exists. Each scenario prints one JSON line `RESULT {...}`
// with what it measured and exits 0, or prints `FAIL reason` and exits 1.
'use strict';
const path = require('path');
const pw = require(process.env.PLAYWRIGHT_CORE || '/var/tmp/meeting-appliance-node/node_modules/playwright-core');

const BASE = process.env.BASE;
const CODE = process.env.CODE;
const SCENARIO = process.env.SCENARIO;
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';

function log(...a) { console.error(new Date().toISOString(), ...a); }
function sleep(ms) { return new Promise((r) => setTimeout(r, ms)); }

async function waitFor(what, fn, timeoutMs = 60000) {
  const end = Date.now() + timeoutMs;
  let last;
  while (Date.now() < end) {
    last = await fn();
    if (last && last.ok) return last;
    await sleep(500);
  }
  throw new Error(`timed out waiting for ${what}: ${JSON.stringify(last)}`);
}

async function launch(extraArgs = []) {
  return pw.chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: [
      '--no-sandbox', '--disable-gpu', '--use-fake-device-for-media-stream', '--use-fake-ui-for-media-stream',
      '--allow-loopback-in-peer-connection', '--disable-background-networking', '--disable-component-update',
      '--disable-sync', '--no-first-run', '--disable-quic', ...extraArgs,
    ],
  });
}

// Opens a page on the appliance's origin and joins CODE as a guest named `name`.
async function join(browser, name, opts = {}) {
  const ctx = await browser.newContext();
  const page = await ctx.newPage();
  page.on('console', (m) => { if (m.type() === 'error' || process.env.VERBOSE) log(`[${name}]`, m.text()); });
  await page.goto(BASE + '/');
  const info = await page.evaluate(async ({ code, name, opts }) => {
    const { MeetingClient } = await import('/static/rtc.js');
    const r = await fetch('/api/v1/join/' + code, {
      method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ display_name: name }),
    });
    const j = await r.json();
    if (!r.ok) throw new Error('join failed: ' + JSON.stringify(j));
    const video = opts.width ? { width: opts.width, height: opts.height, frameRate: 15 } : { width: 640, height: 480, frameRate: 15 };
    const stream = await navigator.mediaDevices.getUserMedia({ audio: opts.audio !== false, video });
    window.events = [];
    const munge = opts.viaPort ? (sdp) => sdp.replace(/ 127\.0\.0\.1 (\d+) typ host/g, ` 127.0.0.1 ${opts.viaPort} typ host`) : (sdp) => sdp;
    const c = new MeetingClient({ signalUrl: j.sfu.signal_url, token: j.token, iceServers: opts.noIce ? [] : j.ice_servers, iceTransportPolicy: opts.relay ? 'relay' : 'all', log: (...a) => console.log(...a), mungeRemoteSdp: munge, mungeLocalSdp: opts.viaPort ? (sdp) => sdp.replace(/a=candidate:[^\r\n]*\r\n/g, '') : (sdp) => sdp });
    for (const t of ['participant_joined', 'participant_left', 'closed', 'chat', 'mute', 'active_speaker', 'error', 'locked']) {
      c.addEventListener(t, (e) => window.events.push({ type: t, ...e.detail }));
    }
    window.client = c;
    await c.connect();
    const a = stream.getAudioTracks()[0];
    const v = stream.getVideoTracks()[0];
    if (a) await c.publish(a, 'microphone', { stream });
    if (v) await c.publish(v, 'camera', { stream, simulcast: !!opts.simulcast, codec: opts.codec });
    if (opts.screen) {
      // A moving canvas stands in for a shared screen.
      const canvas = document.createElement('canvas');
      canvas.width = 1280; canvas.height = 720;
      const g = canvas.getContext('2d');
      let n = 0;
      setInterval(() => { g.fillStyle = `hsl(${(n++ * 7) % 360},80%,50%)`; g.fillRect(0, 0, 1280, 720); g.fillStyle = '#fff'; g.font = '96px sans-serif'; g.fillText('slide ' + n, 100, 300); }, 100);
      const screen = canvas.captureStream(10).getVideoTracks()[0];
      await c.publish(screen, 'screen', { stream: new MediaStream([screen]) });
    }
    window.joinAnswer = j;
    return { participantId: c.participantId };
  }, { code: CODE, name, opts });
  log(`${name} joined as ${info.participantId}`);
  return { name, page, ctx, id: info.participantId };
}

const stats = (p) => p.page.evaluate(() => window.client.inboundStats());
const events = (p) => p.page.evaluate(() => window.events);

// Waits until `viewer` decodes `from`'s camera (frames rising) and hears its microphone.
async function waitMedia(viewer, from, minWidth = 1) {
  let first = null;
  return waitFor(`${viewer.name} to see and hear ${from.name}`, async () => {
    const s = Object.values(await stats(viewer));
    const v = s.find((x) => x.kind === 'video' && x.participantId === from.id);
    const a = s.find((x) => x.kind === 'audio' && x.participantId === from.id);
    if (!v || !a) return { ok: false, v, a };
    if (!first && v.framesDecoded > 0) first = v.framesDecoded;
    const ok = first !== null && v.framesDecoded >= first + 10 && v.frameWidth >= minWidth && a.packetsReceived > 25;
    return { ok, framesDecoded: v.framesDecoded, frameWidth: v.frameWidth, frameHeight: v.frameHeight, audioPackets: a.packetsReceived, audioEnergy: a.totalAudioEnergy };
  });
}

async function videoOf(viewer, from) {
  return Object.values(await stats(viewer)).find((x) => x.kind === 'video' && x.participantId === from.id) || {};
}

// Reads one line from stdin (the Rust test's cue).
function cue() {
  return new Promise((resolve) => {
    let buf = '';
    const on = (d) => {
      buf += d;
      const i = buf.indexOf('\n');
      if (i >= 0) { process.stdin.off('data', on); resolve(buf.slice(0, i)); }
    };
    process.stdin.on('data', on);
  });
}

const scenarios = {
  // H.264 camera, a screen share as its own track, and the active speaker.
  async codecs_screen_speaker(browser) {
    const a = await join(browser, 'Speaker', { codec: 'video/H264', screen: true });
    const b = await join(browser, 'Listener', { audio: false });
    await waitFor('Listener to receive camera and screen', async () => {
      const s = Object.values(await stats(b));
      const cam = s.find((x) => x.kind === 'video' && x.participantId === a.id && x.source === 'camera');
      const scr = s.find((x) => x.kind === 'video' && x.participantId === a.id && x.source === 'screen');
      return { ok: cam && scr && cam.framesDecoded > 10 && scr.framesDecoded > 5, cam, scr };
    });
    const s = Object.values(await stats(b));
    const cam = s.find((x) => x.kind === 'video' && x.participantId === a.id && x.source === 'camera');
    const scr = s.find((x) => x.kind === 'video' && x.participantId === a.id && x.source === 'screen');
    const speaker = await waitFor('an active-speaker event', async () => {
      const ev = await events(b);
      const e = ev.find((x) => x.type === 'active_speaker' && x.participant_id);
      return { ok: !!e, participant_id: e && e.participant_id };
    }, 30000);
    return { speaker_id: a.id, camera: cam, screen: scr, active_speaker: speaker.participant_id };
  },

  // A call runs while garbage hits signaling (from a third page) and, from the Rust test,
  // the media port. The call must keep flowing.
  async under_fire(browser) {
    const a = await join(browser, 'Alice');
    const b = await join(browser, 'Bob');
    await waitMedia(a, b);
    await waitMedia(b, a);
    const before = { ab: (await videoOf(a, b)).framesDecoded, ba: (await videoOf(b, a)).framesDecoded };
    console.log('READY');
    const ctx = await browser.newContext();
    const m = await ctx.newPage();
    await m.goto(BASE + '/');
    const signaling = await m.evaluate(async ({ code }) => {
      const r = await fetch('/api/v1/join/' + code, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ display_name: 'Mallory' }) });
      const j = await r.json();
      const url = j.sfu.signal_url;
      const session = (fn) => new Promise((resolve) => {
        const ws = new WebSocket(url);
        const got = [];
        ws.onopen = () => fn(ws);
        ws.onmessage = (e) => { try { got.push(JSON.parse(e.data)); } catch { got.push(e.data); } };
        ws.onclose = (e) => resolve({ got, code: e.code, reason: e.reason });
        setTimeout(() => { try { ws.close(); } catch {} }, 4000);
      });
      const join = JSON.stringify({ type: 'join', token: j.token });
      const out = {};
      out.no_join = await session((ws) => ws.send('{"type":"chat","text":"hi"}'));
      out.not_json = await session((ws) => ws.send('{{{{'));
      out.forged = await session((ws) => ws.send(JSON.stringify({ type: 'join', token: 'eyJmYWtlIjp0cnVlfQ.AAAA' })));
      out.binary = await session((ws) => ws.send(new Uint8Array([1, 2, 3, 4])));
      out.oversized = await session((ws) => { ws.send(join); setTimeout(() => ws.send('x'.repeat(1200000)), 300); });
      out.bad_messages = await session((ws) => {
        ws.send(join);
        setTimeout(() => {
          ws.send(JSON.stringify({ type: 'offer', sdp: 'v=0 this is not SDP' }));
          ws.send('not json at all');
          ws.send(JSON.stringify({ type: 'answer', sdp: 'v=0' }));
          ws.send(JSON.stringify({ type: 'layer', mid: 'nope', width: -1, height: 5 }));
          ws.send(JSON.stringify({ type: 'chat', text: 'still here' }));
        }, 300);
      });
      return out;
    }, { code: CODE });
    await cue(); // the Rust test is done with the media port
    await sleep(3000);
    const after = { ab: (await videoOf(a, b)).framesDecoded, ba: (await videoOf(b, a)).framesDecoded };
    await sleep(3000);
    const later = { ab: (await videoOf(a, b)).framesDecoded, ba: (await videoOf(b, a)).framesDecoded };
    return { before, after, later, signaling };
  },

  // Bob receives through a relay the Rust test runs; it drops packets in a burst.
  async lossy(browser) {
    const a = await join(browser, 'Alice', { audio: false });
    const b = await join(browser, 'Bob', { audio: false, viaPort: Number(process.env.VIA_PORT) });
    await waitFor('Bob to decode Alice', async () => { const v = await videoOf(b, a); return { ok: v.framesDecoded > 10, v }; });
    const before = await videoOf(b, a);
    console.log('READY');
    await cue(); // the burst is over
    await sleep(4000);
    const after = await videoOf(b, a);
    return { before, after };
  },

  // Bob's uplink goes through the lossy relay: what Alice receives of Bob, and what Bob's
  // camera stream was asked to resend (NACKs from the server) and resent.
  async lossy_up(browser) {
    const a = await join(browser, 'Alice', { audio: false });
    const b = await join(browser, 'Bob', { audio: false, viaPort: Number(process.env.VIA_PORT) });
    await waitFor('Alice to decode Bob', async () => { const v = await videoOf(a, b); return { ok: v.framesDecoded > 10, v }; });
    const sent = async () => {
      const o = (await b.page.evaluate(() => window.client.outboundStats())).filter((x) => x.kind === 'video');
      return { nackCount: o.reduce((n, x) => n + (x.nackCount || 0), 0), retransmittedPacketsSent: o.reduce((n, x) => n + (x.retransmittedPacketsSent || 0), 0), packetsSent: o.reduce((n, x) => n + (x.packetsSent || 0), 0) };
    };
    const before = { alice: await videoOf(a, b), bob: await sent() };
    console.log('READY');
    await cue(); // the burst is over
    await sleep(4000);
    const after = { alice: await videoOf(a, b), bob: await sent() };
    return { before, after };
  },

  // The host (signed in, through the API) mutes, then removes the guest; locks; ends.
  async host_controls(browser) {
    const g = await join(browser, 'Guest');
    const o = await join(browser, 'Other');
    await waitMedia(o, g);
    console.log('READY ' + JSON.stringify({ guest: g.id, other: o.id }));
    const step = async () => { const line = await cue(); return line.trim(); };
    const out = {};
    // 1. mute
    await step();
    out.guest_muted = await waitFor('the guest to be told it was muted', async () => {
      const ev = await events(g);
      const m = ev.find((e) => e.type === 'mute' && e.participant_id === g.id && e.by_host);
      return { ok: !!m, m };
    }, 10000);
    const audioBefore = Object.values(await stats(o)).find((x) => x.kind === 'audio' && x.participantId === g.id).packetsReceived;
    await sleep(2000);
    const audioAfter = Object.values(await stats(o)).find((x) => x.kind === 'audio' && x.participantId === g.id).packetsReceived;
    out.audio_packets_while_muted = audioAfter - audioBefore;
    console.log('STEP muted');
    // 2. remove
    await step();
    out.guest_closed = await waitFor('the guest to be removed', async () => {
      const ev = await events(g);
      const c = ev.find((e) => e.type === 'closed');
      return { ok: !!c, reason: c && c.reason, message: c && c.message };
    }, 10000);
    out.other_told = await waitFor('the other to see the guest leave', async () => {
      const ev = await events(o);
      const l = ev.find((e) => e.type === 'participant_left' && e.participant_id === g.id);
      return { ok: !!l, reason: l && l.reason };
    }, 10000);
    console.log('STEP removed');
    // 3. lock: a newcomer is refused
    await step();
    out.late = await join(browser, 'Late').then(() => ({ joined: true })).catch((e) => ({ joined: false, error: String(e) }));
    console.log('STEP locked');
    // 4. end for all
    await step();
    out.other_closed = await waitFor('the meeting to end', async () => {
      const ev = await events(o);
      const c = ev.find((e) => e.type === 'closed');
      return { ok: !!c, reason: c && c.reason };
    }, 10000);
    return out;
  },

  // Two browsers meet; a third joins late and receives both; the third leaves and the
  // others are told.
  async three_party(browser) {
    const a = await join(browser, 'Alice');
    const b = await join(browser, 'Bob');
    const ab = await waitMedia(a, b);
    const ba = await waitMedia(b, a);
    const c = await join(browser, 'Carol');
    const ca = await waitMedia(c, a);
    const cb = await waitMedia(c, b);
    const ac = await waitMedia(a, c);
    await c.page.evaluate(() => window.client.leave());
    for (const p of [a, b]) {
      await waitFor(`${p.name} to learn that Carol left`, async () => {
        const ev = await events(p);
        return { ok: ev.some((e) => e.type === 'participant_left' && e.participant_id === c.id) };
      }, 20000);
    }
    return { alice_sees_bob: ab, bob_sees_alice: ba, carol_sees_alice: ca, carol_sees_bob: cb, alice_sees_carol: ac };
  },

  // One of two leaves (every m-line towards the other goes inactive), then someone new comes:
  // the freed m-lines carry the newcomer, and no negotiation step fails on the way.
  async leave_and_return(browser) {
    const a = await join(browser, 'Stayer');
    const b = await join(browser, 'Leaver');
    await waitMedia(a, b);
    await b.page.evaluate(() => window.client.leave());
    await waitFor('Stayer to see Leaver go', async () => ({ ok: (await events(a)).some((e) => e.type === 'participant_left' && e.participant_id === b.id) }), 20000);
    await sleep(1500); // let the deactivating renegotiation finish
    const c = await join(browser, 'Newcomer');
    const seen = await waitMedia(a, c);
    const mids = await a.page.evaluate(() => window.client.pc.getTransceivers().length);
    const errors = (await events(a)).filter((e) => e.type === 'error');
    return { stayer_sees_newcomer: seen, transceivers: mids, errors };
  },

  // Two people join at the same instant, both publishing at once: offers cross (glare).
  async glare(browser) {
    const [a, b] = await Promise.all([join(browser, 'Ann'), join(browser, 'Ben')]);
    return { ann_sees_ben: await waitMedia(a, b), ben_sees_ann: await waitMedia(b, a) };
  },

  // Simulcast: the subscriber asks for a small size, then a large one.
  async simulcast(browser) {
    const pub = await join(browser, 'Publisher', { simulcast: true, width: 1280, height: 720, audio: true });
    const sub = await join(browser, 'Viewer', { audio: false, width: 320, height: 240 });
    await waitMedia(sub, pub);
    const setLayer = (w, h) => sub.page.evaluate(({ w, h, pid }) => {
      for (const r of window.client.remote.values()) if (r.kind === 'video' && r.participantId === pid) window.client.setLayer(r.mid, w, h);
    }, { w, h, pid: pub.id });
    const widthNow = async () => {
      const v = Object.values(await stats(sub)).find((x) => x.kind === 'video' && x.participantId === pub.id);
      return v ? v.frameWidth : 0;
    };
    const activeLayers = () => pub.page.evaluate(() => window.client.published.get('camera').sender.getParameters().encodings.filter((e) => e.active).map((e) => e.rid));
    await setLayer(320, 180);
    const small = await waitFor('the low layer', async () => { const w = await widthNow(); return { ok: w > 0 && w <= 400, width: w }; });
    // Dynacast: the publisher is told to stop the layers nobody watches.
    const smallLayers = await waitFor('the publisher to send only the low layer', async () => { const l = await activeLayers(); return { ok: l.length === 1 && l[0] === 'q', layers: l }; }, 20000);
    await setLayer(1280, 720);
    // Up at least one layer (the top one needs the bandwidth estimate to allow it).
    const large = await waitFor('a higher layer', async () => { const w = await widthNow(); return { ok: w >= 2 * small.width, width: w }; });
    const largeLayers = await activeLayers();
    const out = await pub.page.evaluate(() => window.client.outboundStats());
    return { small_width: small.width, large_width: large.width, small_layers: smallLayers.layers, large_layers: largeLayers, publisher_layers: out.filter((o) => o.kind === 'video').map((o) => ({ rid: o.rid, width: o.frameWidth })) };
  },

  // Both browsers may use only TURN relay candidates (iceTransportPolicy 'relay'), as behind
  // a firewall that blocks the sfuserver's UDP: media goes browser -> turnserver -> sfuserver.
  async relay_only(browser) {
    const a = await join(browser, 'Alice', { relay: true });
    const b = await join(browser, 'Bob', { relay: true });
    const ab = await waitMedia(a, b);
    const ba = await waitMedia(b, a);
    // The local candidate of the pair in use: must be a relay candidate.
    const selected = (p) => p.page.evaluate(async () => {
      const byId = {};
      (await window.client.pc.getStats()).forEach((r) => { byId[r.id] = r; });
      const all = Object.values(byId);
      const t = all.find((r) => r.type === 'transport' && r.selectedCandidatePairId);
      const pair = t ? byId[t.selectedCandidatePairId] : all.find((r) => r.type === 'candidate-pair' && r.nominated && r.state === 'succeeded');
      const local = pair && byId[pair.localCandidateId];
      const remote = pair && byId[pair.remoteCandidateId];
      return local ? { type: local.candidateType, relayProtocol: local.relayProtocol, url: local.url, remote: remote && `${remote.address}:${remote.port}` } : null;
    });
    return { alice_sees_bob: ab, bob_sees_alice: ba, alice_pair: await selected(a), bob_pair: await selected(b) };
  },
};

(async () => {
  const fn = scenarios[SCENARIO];
  if (!fn) { console.log(`FAIL unknown scenario ${SCENARIO}`); process.exit(1); }
  const browser = await launch(SCENARIO === 'simulcast' ? ['--force-fieldtrials=WebRTC-LegacySimulcastLayerLimit/Disabled/'] : []);
  try {
    const result = await fn(browser);
    console.log('RESULT ' + JSON.stringify(result));
    await browser.close();
    process.exit(0);
  } catch (e) {
    console.log('FAIL ' + (e && e.stack || e));
    await browser.close().catch(() => {});
    process.exit(1);
  }
})();
