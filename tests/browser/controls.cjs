// Running a meeting in the real web client (tests/it/meeting_controls.rs): the lobby with a
// co-host letting a guest in and turning another away, mute all after the owner left, the
// passcode and its limit, chat with private messages and history, the hand queue.
// Same protocol as web.cjs (NEED_CODE / RESULT / FAIL), plus:
//   stdout `NEED_INVITE <email>` → stdin: the join link of the newest invitation mail to them.
'use strict';
const { BASE, log, sleep, waitFor, cue, newPage, signIn, shot, run } = require('./web.cjs');

// The room's connection state as the page shows it.
async function state(page) {
  return page.evaluate(async () => {
    const room = window.room;
    if (!room || !room.client || room.inLobby) return { connected: false, inLobby: !!(room && room.inLobby) };
    const stats = Object.values(await room.client.inboundStats());
    return { connected: true, me: room.client.participantId, stats, audioMuted: room.audioMuted, people: [...room.client.participants.values()].map((p) => p.name) };
  });
}

// Waits until `page` is in the room and sees `names` there.
async function waitIn(who, page, names, timeoutMs = 60000) {
  return waitFor(`${who} in the room with ${names.join(', ')}`, async () => {
    const s = await state(page);
    return { ok: s.connected && names.every((n) => s.people.includes(n)), s: { connected: s.connected, people: s.people } };
  }, timeoutMs);
}

// Audio packets `viewer` has received from `pid` so far.
async function audioFrom(page, pid) {
  const s = await state(page);
  return (s.stats || []).filter((x) => x.kind === 'audio' && x.participantId === pid).reduce((a, x) => a + (x.packetsReceived || 0), 0);
}

async function openPeople(page) {
  if (!(await page.isVisible('#people'))) await page.click('#ctl-people');
  await page.waitForSelector('#people');
}

async function openChat(page) {
  if (!(await page.isVisible('#chat-log'))) await page.click('#ctl-chat');
  await page.waitForSelector('#chat-log');
}

async function schedule(page, title, invitee) {
  await page.getByLabel('Title').fill(title);
  await page.getByLabel('Invitees (emails, separated by commas)').fill(invitee);
  await page.click('#m-create');
  const li = await page.waitForSelector(`li.meeting:has-text("${title}")`);
  return li.getAttribute('data-code');
}

async function settings(page, code, fill) {
  await page.click(`li.meeting[data-code="${code}"] .settings-open`);
  await page.waitForSelector('#meeting-settings');
  const before = await page.$eval('#s-lobby', (s) => s.value);
  await fill();
  await page.click('#s-save');
  await page.waitForSelector('.toast:has-text("Settings saved")');
  await shot(page, 'meeting-settings.png');
  return before;
}

async function joinSignedIn(page, code) {
  await page.goto(`${BASE}/m/${code}`);
  await page.waitForSelector('#join-now');
  await page.click('#join-now');
  await page.waitForSelector('#ctl-leave');
}

const scenarios = {
  async lobby(browser) {
    const out = {};
    const owner = await newPage(browser, 'owner');
    await signIn(owner, 'owner@corp.test');
    const code = await schedule(owner, 'Board review', 'cohost@corp.test');
    out.default_lobby = await settings(owner, code, () => owner.fill('#s-cohosts', 'cohost@corp.test'));
    await joinSignedIn(owner, code);
    const co = await newPage(browser, 'cohost');
    await signIn(co, 'cohost@corp.test');
    await co.goto(`${BASE}/m/${code}?autojoin=1`);
    await waitIn('cohost', co, ['owner']);
    out.cohost_role = await co.evaluate(() => window.room.answer.role);

    // A guest by link waits: the waiting screen with the title, nothing else.
    const gina = await newPage(browser, 'gina');
    await gina.goto(`${BASE}/m/${code}?name=${encodeURIComponent('Guest Gina')}&autojoin=1`);
    await gina.waitForSelector('#lobby-wait');
    out.waiting = { title: await gina.textContent('#lobby-title'), text: await gina.textContent('#lobby-text') };
    await shot(gina, 'lobby-waiting.png');
    out.lobby_refusals = await gina.evaluate(async () => {
      const c = window.room.client;
      const errs = [];
      c.addEventListener('error', (e) => errs.push(e.detail.code));
      c._send({ type: 'chat', text: 'let me in' });
      c._send({ type: 'hand', raised: true });
      c._send({ type: 'offer', sdp: 'v=0', sources: {} });
      c._send({ type: 'host', action: { action: 'admit' } });
      await new Promise((r) => setTimeout(r, 1500));
      const a = window.room.answer;
      const h = { 'X-Join-Token': a.token };
      const notes = (await fetch(`/api/v1/meetings/${a.meeting.id}/notes`, { headers: h })).status;
      const files = (await fetch(`/api/v1/meetings/${a.meeting.id}/files`, { headers: h })).status;
      return { errs, notes, files, people: c.participants.size, remote: c.remote.size };
    });
    // Both hosts hear the knock; the co-host (not the owner) lets her in.
    for (const [who, page] of [['owner', owner], ['cohost', co]]) {
      out[`knock_${who}`] = await waitFor(`${who} to be told`, async () => {
        const n = await page.evaluate(() => window.knocks || 0);
        const toast = await page.isVisible('.toast:has-text("Guest Gina is waiting to join")');
        return { ok: n > 0 && toast, knocks: n };
      }, 15000);
    }
    await openPeople(co);
    await co.waitForSelector('#lobby li .lobby-admit');
    await shot(co, 'lobby-host.png');
    await co.click('#lobby li .lobby-admit');
    await gina.waitForSelector('#lobby-wait', { state: 'detached', timeout: 20000 });
    await waitIn('gina', gina, ['owner', 'cohost']);
    out.admitted_notes = await waitFor('her notes access', async () => {
      const st = await gina.evaluate(async () => {
        const a = window.room.answer;
        return (await fetch(`/api/v1/meetings/${a.meeting.id}/notes`, { headers: { 'X-Join-Token': a.token } })).status;
      });
      return { ok: st === 200, st };
    }, 15000);

    // A second guest is turned away with a reason, and sees it.
    const greg = await newPage(browser, 'greg');
    await greg.goto(`${BASE}/m/${code}?name=${encodeURIComponent('Guest Greg')}&autojoin=1`);
    await greg.waitForSelector('#lobby-wait');
    // The waiting screen in Chinese (the language switch redraws it).
    await greg.click('#lang');
    out.waiting_zh = await greg.textContent('#lobby-text');
    await shot(greg, 'lobby-waiting-zh.png');
    await greg.click('#lang');
    await co.waitForSelector('#lobby li:has-text("Guest Greg")', { timeout: 15000 });
    await co.fill('#deny-reason', 'Invite only today');
    await co.click('#lobby li:has-text("Guest Greg") .lobby-deny');
    await greg.waitForSelector('#ended', { timeout: 15000 });
    out.denied = { reason: await greg.getAttribute('#ended', 'data-reason'), text: await greg.textContent('#ended-why') };

    // A third guest is let in with everyone waiting ("let everyone in").
    const gus = await newPage(browser, 'gus');
    await gus.goto(`${BASE}/m/${code}?name=Gus&autojoin=1`);
    await gus.waitForSelector('#lobby-wait');
    await co.waitForSelector('#lobby li:has-text("Gus")', { timeout: 15000 });
    await co.click('#lobby-admit-all');
    await waitIn('gus', gus, ['owner', 'cohost', 'Guest Gina']);

    // The owner leaves; the co-host mutes everyone: the guests' audio stops reaching everyone.
    const gpid = await gina.evaluate(() => window.room.client.participantId);
    const upid = await gus.evaluate(() => window.room.client.participantId);
    const flows = [[co, gpid], [co, upid], [gus, gpid], [gina, upid]];
    const counts = () => Promise.all(flows.map(([p, pid]) => audioFrom(p, pid)));
    await waitFor('audio from both guests at everyone', async () => {
      const c0 = await counts();
      await sleep(2000);
      const c1 = await counts();
      const d = c1.map((x, i) => x - c0[i]);
      return { ok: d.every((x) => x > 15), d };
    }, 30000);
    const b0 = await counts();
    await sleep(3000);
    out.audio_before = (await counts()).map((x, i) => x - b0[i]);
    await owner.click('#ctl-leave');
    await waitFor('the owner gone', async () => { const s = await state(co); return { ok: !s.people.includes('owner'), people: s.people }; }, 15000);
    await openPeople(co);
    await co.click('#host-mute-all');
    out.gina_muted = await waitFor('Gina muted by the co-host', async () => {
      const s = await state(gina);
      const pressed = await gina.getAttribute('#ctl-mic', 'aria-pressed');
      const toast = await gina.isVisible('.toast:has-text("cohost muted you")');
      return { ok: s.audioMuted === true && pressed === 'true' && toast, pressed, toast };
    }, 15000);
    await sleep(1000);
    const a1 = await counts();
    await sleep(3000);
    out.audio_after = (await counts()).map((x, i) => x - a1[i]);
    out.gus_muted = (await state(gus)).audioMuted;
    out.cohost_sees_muted = await co.evaluate((pid) => window.room.client.participants.get(pid).audio_muted, gpid);
    // Asking to unmute does not unmute.
    await co.click('#host-ask-unmute');
    await gina.waitForSelector('.toast:has-text("cohost asks everyone to unmute.")', { timeout: 15000 });
    out.still_muted = (await state(gina)).audioMuted;

    // The co-host promotes Gus (a guest): he gets the host tools.
    await openPeople(co);
    await co.click(`#people li[data-pid="${upid}"] .host-role`);
    out.gus_promoted = await waitFor('Gus a co-host', async () => {
      await openPeople(gus);
      const tools = await gus.isVisible('#host-mute-all');
      const role = await gus.evaluate(() => window.room.answer.role);
      return { ok: tools && role === 'cohost', tools, role };
    }, 15000);
    // Cameras off for participants: Gina's camera stops reaching the co-host (the server ends
    // it, her page unpublishes it); Gus, a host now, keeps his.
    const videoFrom = async (page, pid) => ((await state(page)).stats || [])
      .filter((x) => x.kind === 'video' && x.participantId === pid && x.source === 'camera')
      .reduce((a, x) => a + (x.framesDecoded || 0), 0);
    await openPeople(co);
    await co.uncheck('#perm-cameras');
    out.gina_camera_off = await waitFor('Gina told and unpublished', async () => {
      const published = await gina.evaluate(() => window.room.client.published.has('camera'));
      const toast = await gina.isVisible('.toast:has-text("The hosts turned cameras off for participants.")');
      return { ok: !published && toast, published, toast };
    }, 15000);
    await sleep(1500);
    const v0 = [await videoFrom(co, gpid), await videoFrom(co, upid)];
    await sleep(3000);
    out.video_after_off = [(await videoFrom(co, gpid)) - v0[0], (await videoFrom(co, upid)) - v0[1]];
    return out;
  },

  async hands_chat_passcode(browser) {
    const out = {};
    const owner = await newPage(browser, 'owner');
    await signIn(owner, 'owner@corp.test');
    const code = await schedule(owner, 'Weekly sync', 'ivy@corp.test');
    await settings(owner, code, async () => {
      await owner.selectOption('#s-lobby', 'off');
      await owner.fill('#s-passcode', 'Blue42');
    });
    out.code = code;
    await joinSignedIn(owner, code);
    const guest = async (name) => {
      const page = await newPage(browser, name);
      await page.goto(`${BASE}/m/${code}?name=${encodeURIComponent(name)}&pwd=Blue42&autojoin=1`);
      return page;
    };
    const gus = await guest('Gus');
    const gail = await guest('Gail');
    await waitIn('gus', gus, ['owner', 'Gail']);
    await waitIn('gail', gail, ['owner', 'Gus']);
    await waitIn('owner', owner, ['Gus', 'Gail']);

    // Chat: a public message with a link and markup; Gus to Gail privately.
    await openChat(owner);
    await owner.fill('#chat-input', 'Agenda: https://example.com/agenda?x=1 <b>bold</b>');
    await owner.press('#chat-input', 'Enter');
    const gailId = await gail.evaluate(() => window.room.client.participantId);
    await openChat(gus);
    await gus.waitForSelector(`#chat-to option[value="${gailId}"]`, { state: 'attached' });
    await gus.selectOption('#chat-to', gailId);
    await gus.fill('#chat-input', 'psst, Gail only');
    await gus.press('#chat-input', 'Enter');
    await openChat(gail);
    await waitFor('Gail to read both', async () => {
      const t = await gail.textContent('#chat-log');
      return { ok: t.includes('psst, Gail only') && t.includes('Agenda:'), t };
    }, 15000);
    await sleep(2000);
    out.owner_log = await owner.textContent('#chat-log');
    out.gus_private_marked = await gus.isVisible('#chat-log li.private:has-text("psst, Gail only")');
    out.link = await gail.$eval('#chat-log a.chat-link', (a) => ({ href: a.href, rel: a.rel, target: a.target, text: a.textContent }));
    out.markup_elements = await gail.$$eval('#chat-log b', (x) => x.length);
    out.markup_text = await gail.isVisible('#chat-log li:has-text("<b>bold</b>")');

    // Mallory guesses: 5 wrong passcodes, then even the right one is refused for a while.
    const mal = await newPage(browser, 'mallory');
    await mal.goto(`${BASE}/m/${code}?name=Mallory&autojoin=1`);
    await mal.waitForSelector('#passcode-form');
    out.passcode_first = await mal.getAttribute('#passcode-msg', 'data-code');
    out.passcode_tries = [];
    for (let i = 0; i < 6; i++) {
      await mal.fill('#passcode', i < 5 ? `Wrong${i}` : 'Blue42');
      await mal.click('#passcode-join');
      await mal.waitForSelector('#passcode-form', { state: 'detached' }).catch(() => {});
      const form = await mal.waitForSelector('#passcode-form', { timeout: 15000 });
      out.passcode_tries.push(await mal.getAttribute('#passcode-msg', 'data-code'));
      void form;
    }
    out.mallory_in = await mal.evaluate(() => !!(window.room && window.room.client));

    // Ivy, invited, comes with the link from her mail (it carries the passcode): straight in,
    // and as a late joiner she gets the chat so far (not the private message).
    console.log('NEED_INVITE ivy@corp.test');
    const link = await cue();
    out.invite_link = link;
    const ivy = await newPage(browser, 'ivy');
    await signIn(ivy, 'ivy@corp.test');
    await ivy.goto(link);
    await ivy.waitForSelector('#join-now');
    await ivy.click('#join-now');
    await waitIn('ivy', ivy, ['owner', 'Gus', 'Gail']);
    out.ivy_prompted = await ivy.isVisible('#passcode-form');
    await openChat(ivy);
    out.ivy_log = (await waitFor('Ivy to get the history', async () => {
      const t = await ivy.textContent('#chat-log');
      return { ok: t.includes('Agenda:'), t };
    }, 15000)).t;

    // Hands: Gail, Ivy, Gus in that order; the owner sees the queue so and lowers all.
    for (const p of [gail, ivy, gus]) {
      await p.click('#ctl-hand');
      await sleep(400);
    }
    await openPeople(owner);
    out.queue = (await waitFor('the hand queue', async () => {
      const q = await owner.$$eval('#hand-queue li .grow', (x) => x.map((e) => e.textContent));
      return { ok: q.length === 3, q };
    }, 15000)).q;
    await shot(owner, 'hand-queue.png');
    await owner.click('#host-lower-all');
    out.lowered = await waitFor('all hands down', async () => {
      const q = await owner.$$('#hand-queue li');
      const pressed = await Promise.all([gail, ivy, gus].map((p) => p.getAttribute('#ctl-hand', 'aria-pressed')));
      return { ok: q.length === 0 && pressed.every((x) => x === 'false'), pressed };
    }, 15000);
    return out;
  },
};

run(scenarios).catch((e) => { log(e); process.exit(1); });
