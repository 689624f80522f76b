// The meeting room: one MeetingClient (web/static/rtc.js) per connection. A network change
// is first met with an ICE restart on the same session; only if media does not come back
// (or the signaling connection itself drops) is the room joined again with a fresh join
// answer (backoff 1 s … 8 s), unless the server said why it ended.
//
// What is drawn where is decided by layout.ts; the camera and microphone and their effects
// live in effects.ts (LocalMedia); statistics for the details panel in details.ts.
import { mark, MeetingClient, type Participant, type RemoteTrack } from '../static/rtc.js';
import { answerOf, api, ApiError, type JoinAnswer } from './api';
import { h, mount, toast } from './dom';
import { t } from './i18n';
import { icon, type IconName } from './icons';
import { NotesPanel } from './notes';
import { arrange, type Layout, type LayoutMode } from './layout';
import { type Background, type LocalMedia } from './effects';
import { Level, Talk } from './levels';
import { diff, grade, sample, type Details, type Sample } from './details';
import { helpDialog, installShortcuts, shortcutsFor } from './shortcuts';
import type { JoinChoice } from './prejoin';
import { chatLine, chatTo, handQueue, hostTools, knock, lobbyPanel, roleLabel, waitingScreen, type ChatMsg, type HostAction, type LobbyEntry } from './hosting';

export interface RoomEnd { reason: string; message: string }
type Chat = ChatMsg & { mine: boolean };
interface Tile { el: HTMLElement; video: HTMLVideoElement; label: HTMLElement; netq: HTMLElement; actions: HTMLElement; trackId: string; mid: string }
type Panel = 'chat' | 'people' | 'devices' | 'notes' | 'details';

/** Reasons after which rejoining cannot help (see the sfuserver's `closed` messages). */
const FINAL = new Set(['removed', 'ended', 'replaced', 'locked', 'bad_token', 'left', 'denied', 'lobby_full']);
const PAGE = 9;
export const REACTIONS = ['👍', '👏', '😂', '🎉', '❤️', '😮'];
/** One reaction a second at most (the server's REACTION_INTERVAL_MS). */
const REACTION_GAP_MS = 1000;
/** How long an ICE restart may take before the room is joined again. */
const ICE_RESTART_WAIT_MS = 12000;
/** A signaling socket web/src/boot.js opened for a deep link, with what it received, and
 *  the peer connection on which it answers the server's first offer. */
interface EarlySocket {
  url: string; token: string; ws: WebSocket; messages: string[]; closed: CloseEvent | null; failed: boolean;
  pc: RTCPeerConnection; tracks: RTCTrackEvent[]; offerIndex: number; offer: string | null; negotiation: Promise<void> | null; negotiated: boolean;
}
/** What web/src/boot.js started for a deep link that joins at once. `ready`: its first
 *  offer is answered, or there is none to answer yet, or it waited long enough. */
interface Boot { code: string; body: string; join: Promise<Response>; socket: EarlySocket | null; ready: Promise<void> }

function dropEarly(s: EarlySocket | null): void {
  s?.ws.close();
  s?.pc.close();
}

/** boot.js's join, if it is the one this room would send (same meeting, name and passcode);
 *  another one is ended. */
function takeBoot(code: string, body: object): Boot | null {
  const w = window as unknown as { __boot?: Boot };
  const b = w.__boot;
  delete w.__boot;
  if (b && b.code === code && b.body === JSON.stringify(body)) return b;
  b?.join.then(() => dropEarly(b.socket), () => {});
  return null;
}

/** When the meeting notes load at the latest after a join (sooner: at the first video frame,
 *  or when the notes panel is opened). */
const NOTES_AFTER_MS = 1500;
/** How long the room waits at most for the first picture before it shows the self view and
 *  starts reading audio levels. */
const SETTLE_MS = 1000;

function pref<T extends string>(key: string, allowed: T[], dflt: T): T {
  const v = localStorage.getItem(key) as T | null;
  return v && allowed.includes(v) ? v : dflt;
}

export class Room {
  client: MeetingClient | null = null;
  answer: JoinAnswer | null = null;
  media: LocalMedia | null = null;
  audioMuted: boolean;
  videoOff: boolean;
  hand = false;
  locked = false;
  activeSpeaker: string | null = null;
  lastSpeaker: string | null = null;
  chats: Chat[] = [];
  unread = 0;
  panel: Panel | null = null;
  notes: NotesPanel | null = null;
  notesUnread = false;
  screen: MediaStreamTrack | null = null;
  screenAudio: MediaStreamTrack | null = null;
  reconnectAttempt = 0;
  page = 0;
  quality = 'connecting';
  done = false;
  // Layout.
  layout: LayoutMode = pref('layout', ['grid', 'speaker'], 'grid');
  hideSelf = localStorage.getItem('hideSelf') === '1';
  pinned: string | null = null;
  spotlight: string | null = null;
  audioOnly = localStorage.getItem('audioOnly') === '1';
  arranged: Layout | null = null;
  // Indicators.
  /** Participants whose audio is above the speech threshold now (measured in this page). */
  talking = new Set<string>();
  /** Quality levels from the server's `quality` message, if this server sends them. */
  serverQuality = new Map<string, { level: number; loss_pct: number; rtt_ms: number }>();
  serverQualityAt = 0;
  localQuality = new Map<string, number>();
  details: Details | null = null;
  mutedHint = false;
  /** performance.now() when the hint was shown / the first remote video frame was drawn. */
  mutedHintAt = 0;
  firstFrameAt = 0;
  private renderedAt = 0;
  /** Its size (which simulcast layer came first). */
  firstFrameSize = '';
  private notesStarted = false;
  /** The first join request, sent before the room is drawn (or by boot.js, earlier). */
  private firstJoin: Promise<JoinAnswer> | null = null;
  private boot: Boot | null = null;
  lastReaction = 0;
  iceRestartedAt = 0;
  help = false;
  // Running the meeting (hosting.ts).
  /** Waiting in the lobby (the server said `waiting`; `joined` ends it). */
  inLobby = false;
  waiting: LobbyEntry[] = [];
  perm = { cameras: true, screens: true };
  chatTo = '';
  handAt = 0;
  /** From the deep link (`?pwd=`) or typed when the server asked for it. */
  passcode = new URLSearchParams(location.search).get('pwd') || '';
  private passcodeAsked = false;
  /** The role the join answer gave (the meeting's settings), before any change in the meeting. */
  private joinRole = '';
  private levels = new Map<string, { level: Level; talk: Talk; trackId: string }>();
  private selfTalk = new Talk(-50, 4, 10);
  private tiles = new Map<string, Tile>();
  private audios = new Map<string, HTMLAudioElement>();
  private sentLayers = new Map<string, string>();
  private els: Record<string, HTMLElement> = {};
  private timer = 0;
  private fastTimer = 0;
  private prevSample: Sample | null = null;
  private unkeys: () => void = () => {};
  private layerSoon = 0;
  /** The signaling socket said `joined` (the people here are known). */
  private signalJoined = false;
  /** Why settled() holds, once it does (the fast-join test reads it). */
  settledWhy: '' | 'first-picture' | 'waited' | 'no-picture-to-wait-for' = '';
  /** Resolves `settledOnce` the first time settled() holds (untilSettled). */
  private settledOnce: () => void = () => {};
  private readonly settledAt = new Promise<void>((resolve) => { this.settledOnce = resolve; });

  constructor(private root: HTMLElement, private code: string, private choice: JoinChoice,
    private langButton: () => HTMLElement, private onEnd: (e: RoomEnd) => void) {
    this.audioMuted = choice.audioMuted;
    this.videoOff = choice.videoOff;
  }

  get me(): string { return this.client?.participantId || ''; }

  async start(): Promise<void> {
    // The join request goes first: everything else on this page can happen while it is
    // answered.
    this.boot = takeBoot(this.code, this.joinBody());
    this.firstJoin = this.boot ? this.boot.join.then((r) => answerOf<JoinAnswer>(r)) : this.askJoin();
    this.firstJoin.catch(() => {});
    // boot.js answers the server's first offer while this page is still being built: the
    // room is drawn after that (building it holds the page's only thread for tens of ms).
    if (this.boot) await this.boot.ready;
    mark('room-render');
    this.renderedAt = performance.now();
    window.setTimeout(() => { this.settled(); this.update(); }, SETTLE_MS + 10);
    this.render();
    this.banner(t('joining'));
    this.timer = window.setInterval(() => this.tick(), 1000);
    this.fastTimer = window.setInterval(() => this.listen(), 50);
    this.unkeys = installShortcuts(this.shortcuts());
    const net = () => { if (this.client && !this.done) this.restartIce('network change'); };
    window.addEventListener('online', net);
    (navigator as any).connection?.addEventListener?.('change', net);
    // The devices open while the join is under way; they are published once ready.
    this.choice.media.then((m) => {
      this.media = m;
      if (!m) return;
      if (!m.video) this.videoOff = true;
      m.addEventListener('tracks', () => this.onLocalTracks());
      if (m.audio) m.audio.enabled = !this.audioMuted;
      this.update();
    });
    await this.connectLoop();
  }

  // ---- connection ---------------------------------------------------------------------

  private async connectLoop(): Promise<void> {
    for (;;) {
      if (this.done) return;
      try {
        await this.connectOnce();
        this.reconnectAttempt = 0;
        this.banner(null);
        this.update();
        return;
      } catch (e) {
        const reason = this.client?.closeReason;
        this.client?.leave();
        this.client = null;
        if (reason && FINAL.has(reason)) { this.finish({ reason, message: (e as Error).message }); return; }
        if (e instanceof ApiError && (e.code === 'passcode_required' || e.code === 'wrong_passcode' || (e.status === 429 && this.passcodeAsked))) {
          const p = await this.askPasscode(e);
          if (p === null) { this.finish({ reason: 'left', message: '' }); return; }
          this.passcode = p;
          continue;
        }
        if (e instanceof ApiError && [401, 403, 404, 410].includes(e.status)) { this.finish({ reason: e.code, message: e.message }); return; }
        this.reconnectAttempt++;
        const wait = e instanceof ApiError && e.retryAfter ? e.retryAfter * 1000 : Math.min(8000, 500 * 2 ** this.reconnectAttempt) * (0.75 + Math.random() / 2);
        this.banner(e instanceof ApiError && e.code === 'servers_not_ready' ? t('not_ready') : t('reconnecting', { n: this.reconnectAttempt }));
        await new Promise((r) => setTimeout(r, wait));
      }
    }
  }

  private joinBody(): { display_name: string; passcode?: string } {
    return { display_name: this.choice.name, passcode: this.passcode || undefined };
  }

  private askJoin(): Promise<JoinAnswer> {
    mark('join-request');
    return api<JoinAnswer>('POST', '/join/' + encodeURIComponent(this.code), this.joinBody());
  }

  /** The signaling socket boot.js opened for this very answer, if it did (it has, by the
   *  time its join resolves). */
  private earlySocket(answer: JoinAnswer): EarlySocket | null {
    const s = this.boot?.socket;
    this.boot = null;
    if (!s) return null;
    if (s.url === answer.sfu.signal_url && s.token === answer.token) return s;
    dropEarly(s);
    return null;
  }

  private async connectOnce(): Promise<void> {
    const asked = this.firstJoin ?? this.askJoin();
    this.firstJoin = null;
    let answer: JoinAnswer;
    try {
      answer = await asked;
    } catch (e) {
      // A failed first join: boot.js opened nothing for it, and later joins are ours.
      this.boot = null;
      throw e;
    }
    mark('join-answer');
    this.answer = answer;
    this.joinRole = answer.role || (answer.host ? 'owner' : 'participant');
    const c = new MeetingClient({ signalUrl: answer.sfu.signal_url, token: answer.token, iceServers: answer.ice_servers, early: this.earlySocket(answer) });
    this.client = c;
    const on = (type: string, f: (d: any) => void) => c.addEventListener(type, (e) => { if (this.client === c) f((e as CustomEvent).detail); });
    // Offers from the server (the people already here) are answered as soon as the socket
    // is up: listen before connecting.
    on('track', () => { mark('first-track'); this.update(); this.layersSoon(); });
    c.addEventListener('negotiated', () => mark('first-negotiated'));
    on('negotiated', () => { this.updateTiles(); this.sendLayers(); });
    on('waiting', () => { this.inLobby = true; this.banner(null); this.showWaiting(); });
    const joined = await c.connect();
    mark('signal-joined');
    this.signalJoined = true;
    this.inLobby = false;
    this.showWaiting();
    this.waiting = [];
    this.followNotes(answer);
    on('closed', (d) => this.onClosed(d));
    on('participant_joined', (p) => { this.announce(t('joined_room', { name: p.name })); this.update(); });
    on('participant_left', (d) => {
      const p = this.nameOf(d.participant_id);
      if (p) this.announce(t('left_room', { name: p }));
      if (this.activeSpeaker === d.participant_id) this.activeSpeaker = null;
      if (this.pinned === d.participant_id) this.pinned = null;
      this.update();
    });
    on('active_speaker', (d) => { this.activeSpeaker = d.participant_id; if (d.participant_id) this.lastSpeaker = d.participant_id; this.updateTiles(); });
    on('mute', (d) => this.onMute(d));
    on('hand', (d) => {
      const p = c.participants.get(d.participant_id);
      if (p) { p.hand_raised = d.raised; p.hand_at = d.at || 0; if (d.raised) { toast(t('hand_raised', { name: p.name })); } }
      if (d.participant_id === this.me) { this.hand = d.raised; this.handAt = d.at || 0; if (!d.raised && d.by) toast(t('hand_lowered_by', { name: d.by })); }
      if (p || d.participant_id === this.me) this.announce(d.raised ? t('hand_raised', { name: p?.name || this.choice.name }) : t('hand_lowered', { name: p?.name || this.choice.name }));
      this.update();
    });
    on('chat', (d) => {
      this.chats.push({ ...d, mine: d.participant_id === this.me });
      if (this.panel !== 'chat') this.unread++;
      this.drawChat();
      this.drawControls();
    });
    on('chat_history', (d) => {
      this.chats = (d.messages || []).map((m: ChatMsg) => ({ ...m, mine: m.participant_id === this.me }));
      this.drawChat();
    });
    on('lobby', (d) => {
      const before = new Set(this.waiting.map((w) => w.participant_id));
      this.waiting = d.waiting || [];
      const fresh = this.waiting.filter((w) => !before.has(w.participant_id));
      if (fresh.length && this.answer?.host) {
        knock();
        for (const w of fresh) toast(t('lobby_knock', { name: w.name }));
        this.announce(t('lobby_knock', { name: fresh.map((w) => w.name).join(', ') }));
      }
      this.update();
    });
    on('role', (d) => {
      const name = this.nameOf(d.participant_id);
      if (d.participant_id === this.me && this.answer) { this.answer.host = d.host; this.answer.role = d.role; }
      toast(d.role === 'cohost' ? t('now_cohost', { name }) : t('no_longer_cohost', { name }));
      this.update();
    });
    on('ask_unmute', (d) => { if (this.audioMuted) toast(t('asked_unmute', { name: d.by })); this.announce(t('asked_unmute', { name: d.by })); });
    on('permissions', (d) => this.onPermissions(d));
    on('error', (d) => { if (d.code === 'host_present') toast(t('error', { msg: d.message })); else if (d.code === 'not_allowed') toast(t('not_allowed', { msg: d.message })); else if (d.code === 'not_host' || d.code === 'not_done' || d.code === 'bad_chat') toast(t('error', { msg: d.message })); });
    on('locked', (d) => { this.locked = d.locked; this.update(); });
    on('quality', (d) => {
      this.serverQualityAt = performance.now();
      for (const q of d.participants || []) this.serverQuality.set(q.participant_id, q);
      this.updateTiles();
    });
    on('reaction', (d) => this.showReaction(d.participant_id, d.emoji));
    on('spotlight', (d) => {
      this.spotlight = d.participant_id || null;
      this.announce(d.participant_id ? t('spotlight_on', { name: this.nameOf(d.participant_id) || '' }) : t('spotlight_off'));
      this.update();
    });
    on('unsupported', (d) => {
      toast(t('not_supported', { what: d.type === 'reaction' ? t('reactions') : t('spotlight_all') }));
      this.update();
    });
    on('connection', (d) => { if (d.state === 'connected') mark('media-connected'); if (d.state === 'failed') this.restartIce('failed'); });
    on('ice', (d) => {
      mark('ice-' + d.state);
      if (d.state === 'disconnected') setTimeout(() => { if (this.client === c && c.pc.iceConnectionState === 'disconnected') this.restartIce('disconnected'); }, 2000);
      if (d.state === 'connected' || d.state === 'completed') { if (this.iceRestartedAt) this.banner(null); this.iceRestartedAt = 0; }
    });
    // Let the server's first offer (the people already here) go through before ours: our
    // offer would cross it and delay everyone's video by one more round.
    if ((joined?.participants?.length || 0) > 0) await this.firstServerOffer(c, 400);
    // This person's own camera and microphone go out once the join's first picture is in
    // (or it waited long enough, or no one else is here): publishing them (another
    // negotiation, three encoders) and a deep link's effects would take the CPU that
    // picture needs. The devices themselves opened while the join was under way.
    await this.untilSettled();
    this.choice.onSettled?.(true);
    const media = await this.choice.media;
    mark('publish');
    this.media = media;
    const a = media?.audio;
    const v = media?.video;
    if (a) await c.publish(a, 'microphone', { stream: new MediaStream([a]), defer: true });
    if (v && this.mayPublish('camera')) await c.publish(v, 'camera', { stream: new MediaStream([v]), simulcast: true, defer: true });
    if (this.screen && this.screen.readyState === 'live' && this.mayPublish('screen')) await c.publish(this.screen, 'screen', { stream: new MediaStream([this.screen]), defer: true });
    if (this.screenAudio && this.screenAudio.readyState === 'live') await c.publish(this.screenAudio, 'screen_audio', { stream: new MediaStream([this.screenAudio]), defer: true });
    await c.negotiate();
    if (this.audioMuted) c.mute('audio', true);
    if (this.videoOff) c.mute('video', true);
    if (this.hand) c.raiseHand(true);
    this.tiles.forEach((tile) => { tile.trackId = ''; });
    this.sentLayers.clear();
  }

  private firstServerOffer(c: MeetingClient, maxMs: number): Promise<void> {
    return new Promise((resolve) => {
      if (c.negotiations > 0) { resolve(); return; }
      const done = () => { clearTimeout(timer); c.removeEventListener('negotiated', done); resolve(); };
      const timer = setTimeout(done, maxMs);
      c.addEventListener('negotiated', done);
    });
  }

  /** Media stopped (network change): new ICE on the same session; rejoin only if that fails. */
  restartIce(why: string): void {
    const c = this.client;
    if (!c || this.done) return;
    if (this.iceRestartedAt && performance.now() - this.iceRestartedAt < ICE_RESTART_WAIT_MS) return;
    this.iceRestartedAt = performance.now();
    this.banner(t('restoring_media'));
    console.info('ICE restart:', why);
    c.restartIce();
    setTimeout(() => {
      if (this.client !== c || this.done) return;
      const s = c.pc.iceConnectionState;
      if (s !== 'connected' && s !== 'completed') this.onClosed({ reason: 'ice_failed', message: '' });
    }, ICE_RESTART_WAIT_MS);
  }

  private onClosed(d: { reason: string; message: string }): void {
    const c = this.client;
    this.client = null;
    this.iceRestartedAt = 0;
    c?.leave();
    if (FINAL.has(d.reason)) { this.finish(d); return; }
    this.reconnectAttempt = Math.max(this.reconnectAttempt, 1);
    this.banner(t('reconnecting', { n: this.reconnectAttempt }));
    setTimeout(() => this.connectLoop(), 300 + Math.random() * 700);
  }

  private onMute(d: { participant_id: string; kind: 'audio' | 'video'; muted: boolean; by_host: boolean; by?: string }): void {
    if (d.participant_id === this.me) {
      if (d.kind === 'audio') {
        this.audioMuted = d.muted;
        if (this.media?.audio) this.media.audio.enabled = !d.muted;
        if (d.by_host && d.muted) toast(d.by ? t('muted_by', { name: d.by }) : t('muted_by_host'));
      }
    } else {
      const p = this.client?.participants.get(d.participant_id);
      if (p) { if (d.kind === 'audio') p.audio_muted = d.muted; else p.video_muted = d.muted; }
    }
    this.update();
  }

  private finish(e: RoomEnd): void {
    if (this.done) return;
    this.done = true;
    // A deep link's effects were still held for the first picture: they never start.
    this.choice.onSettled?.(false);
    clearInterval(this.timer);
    clearInterval(this.fastTimer);
    this.unkeys();
    this.client?.leave();
    this.client = null;
    this.screen?.stop();
    this.screenAudio?.stop();
    this.levels.forEach((l) => l.level.close());
    this.audios.forEach((a) => { a.srcObject = null; a.remove(); });
    this.notes?.close();
    if (document.fullscreenElement) document.exitFullscreen().catch(() => {});
    this.onEnd(e);
  }

  leave(): void { this.finish({ reason: 'left', message: '' }); }

  /** The effects swapped a track (noise suppression or background on/off, another device). */
  private onLocalTracks(): void {
    const m = this.media;
    if (!m) return;
    if (m.audio) m.audio.enabled = !this.audioMuted;
    this.client?.replaceTrack('microphone', m.audio);
    this.client?.replaceTrack('camera', m.video);
    if (this.videoOff && m.video) this.client?.mute('video', true);
    this.tiles.forEach((tile, pid) => { if (pid === (this.me || 'me')) tile.trackId = ''; });
    this.update();
  }

  // ---- actions ------------------------------------------------------------------------

  toggleMic(): void {
    this.audioMuted = !this.audioMuted;
    if (this.media?.audio) this.media.audio.enabled = !this.audioMuted;
    this.client?.mute('audio', this.audioMuted);
    if (!this.audioMuted) this.setMutedHint(false);
    this.update();
  }

  toggleCam(): void {
    if (!this.media?.video) return;
    this.videoOff = !this.videoOff;
    this.client?.mute('video', this.videoOff);
    this.update();
  }

  async toggleShare(): Promise<void> {
    if (this.screen) {
      this.screen.stop();
      this.screenAudio?.stop();
      this.screen = null;
      this.screenAudio = null;
      await this.client?.unpublish('screen');
      await this.client?.unpublish('screen_audio');
      this.update();
      return;
    }
    try {
      // Tab audio when the person shares a tab and ticks "share tab audio".
      const s = await navigator.mediaDevices.getDisplayMedia({ video: { frameRate: 15 }, audio: { echoCancellation: false, noiseSuppression: false, autoGainControl: false } as MediaTrackConstraints });
      const tr = s.getVideoTracks()[0];
      tr.contentHint = 'detail';
      this.screen = tr;
      this.screenAudio = s.getAudioTracks()[0] || null;
      tr.addEventListener('ended', () => { if (this.screen === tr) this.toggleShare(); });
      await this.client?.publish(tr, 'screen', { stream: s, defer: !!this.screenAudio });
      if (this.screenAudio) await this.client?.publish(this.screenAudio, 'screen_audio', { stream: s });
      this.update();
    } catch (e) {
      toast(t('error', { msg: (e as Error).message }));
    }
  }

  toggleHand(): void {
    this.hand = !this.hand;
    this.client?.raiseHand(this.hand);
    this.update();
  }

  setLayout(mode: LayoutMode): void {
    this.layout = mode;
    localStorage.setItem('layout', mode);
    this.announce(mode === 'speaker' ? t('layout_speaker') : t('layout_grid'));
    this.update();
    this.layersSoon();
  }

  togglePin(pid: string): void {
    this.pinned = this.pinned === pid ? null : pid;
    this.update();
    this.layersSoon();
  }

  setHideSelf(on: boolean): void {
    this.hideSelf = on;
    localStorage.setItem('hideSelf', on ? '1' : '0');
    this.update();
  }

  setAudioOnly(on: boolean): void {
    this.audioOnly = on;
    localStorage.setItem('audioOnly', on ? '1' : '0');
    this.update();
    this.layersSoon();
  }

  /** Host: spotlight someone for everyone (needs a server that relays it). */
  spotlightAll(pid: string | null): void {
    if (!this.client?.spotlight(pid)) toast(t('not_supported', { what: t('spotlight_all') }));
  }

  react(emoji: string): void {
    const c = this.client;
    if (!c) return;
    const now = performance.now();
    if (now - this.lastReaction < REACTION_GAP_MS) { toast(t('reaction_wait')); return; }
    if (!c.react(emoji)) { toast(t('not_supported', { what: t('reactions') })); return; }
    this.lastReaction = now;
  }

  async fullscreen(pid: string): Promise<void> {
    const tile = this.tiles.get(pid);
    if (!tile) return;
    try {
      if (document.fullscreenElement === tile.el) await document.exitFullscreen();
      else await tile.el.requestFullscreen();
    } catch (e) { toast(t('error', { msg: (e as Error).message })); }
    this.layersSoon();
  }

  async setEffects(noise: boolean, background: Background): Promise<void> {
    const m = this.media;
    if (!m) return;
    await m.apply({ noise, background });
    if (m.failure) toast(t('effect_failed', { msg: m.failure }));
    this.drawSide(true);
  }

  /** A host action, over signaling: the sfuserver checks this person is a host (owner or
   *  co-host, also one promoted in the meeting) and enforces it. */
  control(action: string, participant_id?: string): void {
    this.hostAction({ action, participant_id });
  }

  hostAction(a: HostAction): void {
    // Owners and co-hosts by the meeting's settings act through the API (each action in the
    // audit log, under their account); hosts made in the meeting (a promoted guest) over
    // signaling, where the sfuserver knows them.
    const signedHost = this.choice.signedIn && (this.joinRole === 'owner' || this.joinRole === 'cohost');
    if (signedHost && this.answer) {
      api('POST', `/meetings/${this.answer.meeting.id}/control`, a).catch((e) => toast(t('error', { msg: (e as Error).message })));
      return;
    }
    if (!this.client?.host(a)) toast(t('error', { msg: t('reconnecting', { n: 1 }) }));
  }

  /** Whether this person may publish `source` now (hosts always; others per the hosts). */
  mayPublish(source: 'camera' | 'screen'): boolean {
    if (this.answer?.host) return true;
    if (source === 'camera') return this.perm.cameras;
    return this.perm.screens && !this.answer?.screens_hosts_only;
  }

  private async onPermissions(d: { cameras: boolean; screens: boolean; by?: string }): Promise<void> {
    const before = this.perm;
    this.perm = { cameras: d.cameras, screens: d.screens };
    const c = this.client;
    if (c && !this.answer?.host) {
      if (!this.mayPublish('camera') && c.published.has('camera')) { await c.unpublish('camera'); toast(t('cameras_off_by_host')); }
      if (this.mayPublish('camera') && !before.cameras && !c.published.has('camera') && this.media?.video) {
        await c.publish(this.media.video, 'camera', { stream: new MediaStream([this.media.video]), simulcast: true });
        if (this.videoOff) c.mute('video', true);
      }
      if (!this.mayPublish('screen') && this.screen) { await this.toggleShare(); toast(t('screens_off_by_host')); }
    }
    this.update();
  }

  /** The passcode form (the join answered passcode_required, wrong_passcode or, after a
   *  wrong one, rate_limited). Resolves with what was typed, or null when the person leaves. */
  private askPasscode(e: ApiError): Promise<string | null> {
    this.passcodeAsked = true;
    this.banner(null);
    return new Promise((resolve) => {
      const input = h('input', { id: 'passcode', name: 'passcode', autocomplete: 'off', maxlength: 64, required: true });
      const msg = e.status === 429 ? t('passcode_wait', { s: e.retryAfter || 60 }) : e.code === 'wrong_passcode' ? t('passcode_wrong') : t('passcode_needed');
      const form = h('form', { class: 'card passcode-ask', id: 'passcode-form' },
        h('h2', {}, this.answer?.meeting.title || this.code),
        h('p', { id: 'passcode-msg', role: 'alert', class: e.code === 'passcode_required' ? '' : 'error', 'data-code': e.code }, msg),
        h('label', { for: 'passcode' }, t('passcode')), input,
        h('div', { class: 'row' },
          h('button', { type: 'submit', id: 'passcode-join' }, t('join')),
          h('button', { type: 'button', class: 'secondary', onclick: () => { form.remove(); resolve(null); } }, t('leave'))));
      form.addEventListener('submit', (ev) => { ev.preventDefault(); form.remove(); resolve((input as HTMLInputElement).value.trim()); });
      document.getElementById('passcode-form')?.remove();
      (this.root.querySelector('.room') || this.root).append(form);
      (input as HTMLInputElement).focus();
    });
  }

  /** The waiting screen while in the lobby (gone once let in). */
  private showWaiting(): void {
    // While waiting only the devices and leaving make sense (the server refuses the rest).
    this.root.querySelector('.room')?.classList.toggle('in-lobby', this.inLobby);
    const old = document.getElementById('lobby-wait');
    if (!this.inLobby) { old?.remove(); return; }
    const el = waitingScreen(this.answer?.meeting.title || this.code);
    if (old) old.replaceWith(el); else (this.root.querySelector('.room') || this.root).append(el);
  }

  /** Switches camera or microphone mid-call: the new track replaces the old on the same sender. */
  async switchDevice(kind: 'audio' | 'video', deviceId: string): Promise<void> {
    try { await this.media?.switchDevice(kind, deviceId); } catch (e) { toast(t('error', { msg: (e as Error).message })); }
  }

  togglePanel(p: Panel): void {
    this.panel = this.panel === p ? null : p;
    if (this.panel === 'chat') this.unread = 0;
    if (this.panel === 'notes') { this.notesUnread = false; this.startNotes(); }
    this.update();
    if (this.panel === 'chat') (document.getElementById('chat-input') as HTMLInputElement | null)?.focus();
    if (this.panel === 'notes') this.notes?.focus();
    this.layersSoon();
  }

  toggleHelp(): void {
    this.help = !this.help;
    this.drawHelp();
  }

  private shortcuts() {
    return shortcutsFor({
      mic: () => this.toggleMic(), cam: () => this.toggleCam(), hand: () => this.toggleHand(),
      chat: () => this.togglePanel('chat'), details: () => this.togglePanel('details'),
      layout: () => this.setLayout(this.layout === 'grid' ? 'speaker' : 'grid'), help: () => this.toggleHelp(),
    });
  }

  /** Notes: a guest reads and writes them with its join token, renewed on every rejoin. */
  private followNotes(answer: JoinAnswer): void {
    const token = this.choice.signedIn ? null : answer.token;
    if (this.notes) { this.notes.setJoinToken(token); return; }
    this.notes = new NotesPanel({
      meetingId: answer.meeting.id, joinToken: token,
      onRemoteChange: () => { if (this.panel !== 'notes' && !this.notesUnread) { this.notesUnread = true; this.drawControls(); } },
    });
    // The notes (their code, the shared document and its own connection) load once the
    // first video shows, or after NOTES_AFTER_MS, or when the panel opens: not while the
    // join's media is being set up, whose every step waits for this page's main thread.
    window.setTimeout(() => this.startNotes(), NOTES_AFTER_MS);
    window.addEventListener('pagehide', () => this.notes?.flushOnExit());
  }

  /** Whether the join's first picture is in, or there is none to wait for (no one else
   *  here, or no one else's camera is on), or it waited long enough: until then the page's
   *  thread and CPU are kept for what the first picture needs. Once settled, it stays so;
   *  `settledWhy` says which. */
  private settled(): boolean {
    if (this.settledWhy) return true;
    if (this.firstFrameAt) this.settledWhy = 'first-picture';
    else if (performance.now() - this.renderedAt > SETTLE_MS) this.settledWhy = 'waited';
    else if (this.client && (this.signalJoined || this.inLobby) && this.noCameraOn()) this.settledWhy = 'no-picture-to-wait-for';
    if (!this.settledWhy) return false;
    this.settledOnce();
    return true;
  }

  private noCameraOn(): boolean {
    for (const p of this.client?.participants.values() || []) if (!p.video_muted) return false;
    return true;
  }

  /** Resolves once settled() holds: checked now, at the first picture and SETTLE_MS after
   *  the room was drawn (and whenever else the room asks). */
  private untilSettled(): Promise<void> {
    this.settled();
    return this.settledAt;
  }

  private startNotes(): void {
    if (this.notesStarted || !this.notes) return;
    this.notesStarted = true;
    this.notes.start();
  }

  // ---- every 50 ms: who is talking (and am I, while muted?) ----------------------------

  private listen(): void {
    if (!this.settled()) return;
    // Me: the microphone as it is, also while muted (the monitor track is never disabled).
    const mon = this.media?.monitor;
    const meKey = this.me || 'me';
    if (mon && mon.readyState === 'live') {
      let l = this.levels.get(meKey);
      if (!l || l.trackId !== mon.id) { l?.level.close(); l = { level: new Level(mon), talk: this.selfTalk, trackId: mon.id }; this.levels.set(meKey, l); }
      const talking = l.talk.push(l.level.db());
      this.setTalking(meKey, talking && !this.audioMuted);
      if (this.audioMuted && talking) this.setMutedHint(true);
    }
    // The others: their received microphone tracks.
    const seen = new Set([meKey]);
    for (const r of this.client?.remote.values() || []) {
      if (r.kind !== 'audio' || r.source !== 'microphone' || !r.participantId || r.track.readyState !== 'live') continue;
      seen.add(r.participantId);
      let l = this.levels.get(r.participantId);
      if (!l || l.trackId !== r.track.id) { l?.level.close(); l = { level: new Level(r.track), talk: new Talk(-50, 4, 10), trackId: r.track.id }; this.levels.set(r.participantId, l); }
      this.setTalking(r.participantId, l.talk.push(l.level.db()));
    }
    for (const [pid, l] of this.levels) if (!seen.has(pid)) { l.level.close(); this.levels.delete(pid); this.setTalking(pid, false); }
  }

  private setTalking(pid: string, on: boolean): void {
    if (this.talking.has(pid) === on) return;
    if (on) { this.talking.add(pid); if (pid !== (this.me || 'me')) this.lastSpeaker = pid; } else this.talking.delete(pid);
    const tile = this.tiles.get(pid);
    tile?.el.classList.toggle('talking', on);
  }

  private setMutedHint(on: boolean): void {
    if (on === this.mutedHint) { if (on) this.hintTimer(); return; }
    this.mutedHint = on;
    if (on) { this.mutedHintAt = performance.now(); this.hintTimer(); }
    const box = this.els.mutedHint;
    if (box) {
      box.hidden = !on;
      if (on) box.replaceChildren(icon('micOff'), h('span', {}, t('talking_muted')),
        h('button', { type: 'button', class: 'small', id: 'hint-unmute', onclick: () => this.toggleMic() }, t('unmute')));
    }
  }

  private hintTimerId = 0;
  private hintTimer(): void {
    clearTimeout(this.hintTimerId);
    this.hintTimerId = window.setTimeout(() => this.setMutedHint(false), 4000);
  }

  // ---- rendering ----------------------------------------------------------------------

  private banner(text: string | null): void {
    const b = this.els.banner;
    if (!b) return;
    b.textContent = text || '';
    b.hidden = !text;
  }

  /** Screen readers hear this (joins, leaves, hands, layout changes). */
  private announce(text: string): void {
    const a = this.els.announce;
    if (!a) return;
    const item = h('p', {}, text);
    a.append(item);
    setTimeout(() => item.remove(), 8000);
  }

  private nameOf(pid: string): string {
    if (pid === this.me) return this.choice.name;
    return this.client?.participants.get(pid)?.name || '';
  }

  /** Builds the room's frame (again after a language switch); parts update in place. */
  render(): void {
    this.tiles.clear();
    const title = h('h1', { class: 'room-title' }, this.answer?.meeting.title || this.code);
    this.els = {
      title,
      // Labelled from the start (and again in a new language): a role=img needs its text.
      quality: h('span', { class: `quality q-${this.quality}`, id: 'quality', role: 'img', title: t('quality', { q: t(`q_${this.quality}` as any) }), 'aria-label': t('quality', { q: t(`q_${this.quality}` as any) }) }, '▂▄▆'.slice(0, this.quality === 'good' ? 3 : this.quality === 'fair' ? 2 : 1)),
      banner: h('div', { class: 'banner', id: 'banner', role: 'status', hidden: true }),
      mutedHint: h('div', { class: 'muted-hint', id: 'muted-hint', role: 'alert', hidden: !this.mutedHint }),
      announce: h('div', { class: 'sr-only', id: 'announce', 'aria-live': 'polite' }),
      stage: h('div', { class: 'stage', id: 'stage', hidden: true }),
      main: h('div', { class: 'main-tile', id: 'main-tile', hidden: true }),
      grid: h('div', { class: 'grid', id: 'grid' }),
      pager: h('div', { class: 'pager' }),
      side: h('aside', { class: 'side', id: 'side', hidden: true }),
      controls: h('footer', { class: 'controls', role: 'toolbar', 'aria-label': t('controls') }),
      audio: h('div', { hidden: true }),
      help: h('div', {}),
      reactions: h('div', { class: 'reactions', id: 'reactions', role: 'group', 'aria-label': t('reactions'), hidden: true }),
    };
    const copy = h('button', { type: 'button', class: 'secondary small', id: 'copy-link', onclick: () => {
      const url = `${location.origin}/m/${this.code}`;
      navigator.clipboard.writeText(url).then(() => toast(t('copied')), () => toast(t('copy_failed', { url })));
    } }, t('copy_link'));
    const chatForm = this.chatForm();
    mount(this.root, h('div', { class: 'room', 'data-layout': this.layout },
      h('header', { class: 'top' }, title, h('span', { class: 'code' }, this.code), copy, h('span', { class: 'grow' }), this.els.quality, this.langButton()),
      this.els.banner,
      this.els.mutedHint,
      h('div', { class: 'room-body' },
        h('main', { class: 'stage-wrap', 'aria-label': t('videos') }, this.els.stage, this.els.main, this.els.grid, this.els.pager),
        this.els.side),
      this.els.reactions,
      this.els.controls,
      this.els.audio, this.els.announce, this.els.help));
    this.els.chatForm = chatForm;
    this.notes?.build();
    for (const a of this.audios.values()) this.els.audio.append(a);
    this.update();
    this.drawHelp();
    this.showWaiting();
  }

  private chatForm(): HTMLElement {
    const input = h('input', { id: 'chat-input', name: 'message', autocomplete: 'off', maxlength: 4000, 'aria-label': t('message') });
    const to = h('span', { class: 'chat-to' });
    const form = h('form', { class: 'chat-form' }, to, input, h('button', { type: 'submit', id: 'chat-send' }, t('send')));
    form.addEventListener('submit', (e) => {
      e.preventDefault();
      const text = input.value.trim();
      if (text && this.client) { this.client.chat(text, this.chatTo); input.value = ''; }
    });
    return form;
  }

  update(): void {
    if (this.answer) this.els.title.textContent = this.answer.meeting.title || this.code;
    this.updateTiles();
    this.drawControls();
    this.drawSide();
  }

  private people(): Participant[] {
    const c = this.client;
    const mine: Participant = {
      participant_id: this.me || 'me', name: this.choice.name, host: !!this.answer?.host,
      audio_muted: this.audioMuted, video_muted: this.videoOff, hand_raised: this.hand,
      role: this.answer?.role, hand_at: this.handAt,
    };
    return [mine, ...(c ? [...c.participants.values()].filter((p) => p.participant_id !== this.me) : [])];
  }

  /** The m-lines we receive on now: negotiated (an m-line whose answer is not applied yet
   * has no current direction) and not parked as inactive by the server (which reuses them). */
  private receivingMids(): Set<string | null> {
    return new Set(this.client?.pc.getTransceivers()
      .filter((x) => x.currentDirection === 'recvonly' || x.currentDirection === 'sendrecv').map((x) => x.mid));
  }

  private remoteTrack(pid: string, source: string): RemoteTrack | undefined {
    if (!this.client) return undefined;
    const receiving = this.receivingMids();
    for (const r of this.client.remote.values()) {
      if (r.participantId === pid && r.source === source && r.kind === 'video' && r.track.readyState === 'live' && receiving.has(r.mid)) return r;
    }
    return undefined;
  }

  private makeTile(p: Participant, self: boolean): Tile {
    const video = h('video', { autoplay: true, muted: true, playsInline: true, class: self ? 'mirror' : '' });
    const label = h('div', { class: 'label' });
    const netq = h('span', { class: 'netq', role: 'img' }, h('i', {}), h('i', {}), h('i', {}));
    const actions = h('div', { class: 'tile-actions' });
    const el = h('figure', { class: 'tile', 'data-pid': p.participant_id, 'data-self': self ? '1' : '0' }, video, label, netq, actions,
      h('span', { class: 'only-audio', 'aria-hidden': 'true' }, t('audio_only_badge')));
    // The first picture of someone else: when the deep link's join is "done" (BENCHMARKS.md).
    if (!self && 'requestVideoFrameCallback' in video) {
      const first = () => { if (!this.firstFrameAt && video.videoWidth > 0) { this.firstFrameAt = performance.now(); this.firstFrameSize = `${video.videoWidth}x${video.videoHeight}`; window.setTimeout(() => { this.settled(); this.startNotes(); this.update(); }, 0); } else if (!this.firstFrameAt) video.requestVideoFrameCallback(first); };
      video.requestVideoFrameCallback(first);
    }
    el.addEventListener('dblclick', () => this.fullscreen(p.participant_id));
    return { el, video, label, netq, actions, trackId: '', mid: '' };
  }

  private qualityOf(pid: string): { level: number; from: 'server' | 'local' } | null {
    const fresh = performance.now() - this.serverQualityAt < 6000;
    const s = fresh ? this.serverQuality.get(pid) : undefined;
    if (s) return { level: s.level, from: 'server' };
    const l = this.localQuality.get(pid);
    return l === undefined ? null : { level: l, from: 'local' };
  }

  updateTiles(): void {
    const grid = this.els.grid;
    if (!grid) return;
    const everyone = this.people();
    const me = this.me || 'me';
    // Screen share: the first one is shown large on the stage.
    let screen: RemoteTrack | undefined;
    if (!this.audioOnly) for (const p of everyone) { screen = this.remoteTrack(p.participant_id, 'screen'); if (screen) break; }
    const lay = arrange({
      mode: this.layout, me, people: everyone.map((p) => p.participant_id), pinned: this.pinned, spotlight: this.spotlight,
      activeSpeaker: this.activeSpeaker, lastSpeaker: this.lastSpeaker, hideSelf: this.hideSelf, screen: !!screen, page: this.page, pageSize: PAGE,
    });
    this.arranged = lay;
    this.page = lay.page;
    const byId = new Map(everyone.map((p) => [p.participant_id, p]));
    const keep = new Set([...lay.tiles, ...(lay.main ? [lay.main] : [])]);
    for (const [pid, tile] of this.tiles) if (!keep.has(pid)) { tile.el.remove(); this.tiles.delete(pid); }
    const host = !!this.answer?.host;
    const place = (pid: string, into: HTMLElement) => {
      const p = byId.get(pid);
      if (!p) return;
      const self = pid === me;
      let tile = this.tiles.get(pid);
      if (!tile) { tile = this.makeTile(p, self); this.tiles.set(pid, tile); }
      if (tile.el.parentElement !== into || into === grid) into.append(tile.el); // keeps the order
      let track: MediaStreamTrack | null = null;
      if (self) {
        track = this.settled() ? this.media?.video || null : null;
        tile.mid = '';
      } else if (!this.audioOnly) {
        const r = this.remoteTrack(pid, 'camera');
        track = r ? r.track : null;
        tile.mid = r ? r.mid : '';
      } else {
        const r = this.remoteTrack(pid, 'camera');
        tile.mid = r ? r.mid : '';
      }
      const id = track ? track.id + (tile.mid || '') : '';
      if (tile.trackId !== id) {
        tile.trackId = id;
        tile.video.srcObject = track ? new MediaStream([track]) : null;
      }
      const camOff = p.video_muted || !track;
      tile.el.classList.toggle('cam-off', camOff);
      tile.el.classList.toggle('speaking', this.activeSpeaker === pid);
      tile.el.classList.toggle('talking', this.talking.has(pid));
      tile.el.classList.toggle('hand', p.hand_raised);
      tile.el.classList.toggle('pinned', this.pinned === pid);
      tile.el.classList.toggle('spotlit', this.spotlight === pid);
      tile.el.classList.toggle('audio-only', this.audioOnly && !self);
      tile.el.setAttribute('aria-label', p.name);
      tile.label.replaceChildren(
        p.hand_raised ? h('span', { class: 'badge', role: 'img', 'aria-label': t('hand_up') }, icon('hand')) : '',
        p.audio_muted ? h('span', { class: 'badge mic-off', role: 'img', 'aria-label': t('mic_muted') }, icon('micOff')) : '',
        `${p.name}${self ? ` (${t('you')})` : ''}${roleLabel(p)}`,
      );
      const q = self ? this.qualityOf(me) ?? { level: grade(this.details?.lossPct ?? 0, this.details?.rttMs ?? null, !!this.client), from: 'local' as const } : this.qualityOf(pid);
      tile.netq.dataset.level = q ? String(q.level) : '';
      tile.netq.dataset.from = q ? q.from : '';
      tile.netq.setAttribute('aria-label', q ? t('net_quality', { q: t(`q_${['lost', 'poor', 'fair', 'good'][q.level] || 'poor'}` as any) }) : t('net_unknown'));
      tile.netq.title = tile.netq.getAttribute('aria-label') || '';
      const name = p.name;
      // Rebuilt only when something on them changes (a click must not hit a replaced button).
      const canSpot = host && !!this.client && !this.client.unsupported.has('spotlight');
      const akey = `${name}|${this.pinned === pid}|${this.spotlight === pid}|${canSpot}|${document.documentElement.lang}`;
      if (tile.actions.dataset.key !== akey) tile.actions.dataset.key = akey; else return;
      tile.actions.replaceChildren(
        h('button', { type: 'button', class: 'tile-btn tile-pin', 'aria-pressed': String(this.pinned === pid), 'aria-label': this.pinned === pid ? t('unpin_name', { name }) : t('pin_name', { name }), title: this.pinned === pid ? t('unpin_name', { name }) : t('pin_name', { name }), onclick: () => this.togglePin(pid) }, icon('pin')),
        h('button', { type: 'button', class: 'tile-btn tile-full', 'aria-label': t('fullscreen_name', { name }), title: t('fullscreen_name', { name }), onclick: () => this.fullscreen(pid) }, icon('full')),
        canSpot
          ? h('button', { type: 'button', class: 'tile-btn tile-spot', 'aria-pressed': String(this.spotlight === pid), 'aria-label': this.spotlight === pid ? t('spotlight_end') : t('spotlight_name', { name }), title: this.spotlight === pid ? t('spotlight_end') : t('spotlight_name', { name }), onclick: () => this.spotlightAll(this.spotlight === pid ? null : pid) }, icon('star')) : '',
      );
    };
    const main = this.els.main;
    main.hidden = !lay.main;
    if (lay.main) { place(lay.main, main); main.dataset.pid = lay.main; main.dataset.why = lay.why || ''; } else { main.replaceChildren(); delete main.dataset.pid; }
    for (const pid of lay.tiles) place(pid, grid);
    grid.dataset.count = String(lay.tiles.length);
    this.els.pager.replaceChildren(...(lay.pages > 1 ? [
      h('button', { type: 'button', class: 'secondary small', disabled: lay.page === 0, 'aria-label': t('page_prev'), onclick: () => { this.page--; this.updateTiles(); } }, '←'),
      h('span', {}, `${lay.page + 1} / ${lay.pages}`),
      h('button', { type: 'button', class: 'secondary small', disabled: lay.page >= lay.pages - 1, 'aria-label': t('page_next'), onclick: () => { this.page++; this.updateTiles(); } }, '→'),
    ] : []));
    const stage = this.els.stage;
    let v = stage.querySelector('video');
    if (screen) {
      if (!v) { v = h('video', { autoplay: true, muted: true, playsInline: true, id: 'stage-video' }); stage.replaceChildren(v, h('div', { class: 'label', id: 'stage-label' })); }
      const key = screen.track.id + screen.mid;
      if (v.dataset.key !== key) { v.dataset.key = key; v.dataset.mid = screen.mid; v.dataset.pid = screen.participantId || ''; v.srcObject = new MediaStream([screen.track]); }
      const who = this.client?.participants.get(screen.participantId || '');
      stage.querySelector('.label')!.textContent = t('presenting', { name: who?.name || '' });
      stage.hidden = false;
    } else {
      stage.replaceChildren();
      stage.hidden = true;
    }
    grid.classList.toggle('filmstrip', !!screen || !!lay.main);
    (this.root.querySelector('.room') as HTMLElement | null)?.setAttribute('data-layout', lay.main ? 'speaker' : screen ? 'screen' : 'grid');
    // Remote audio, one element per track (screen audio too).
    const mids = new Set<string>();
    const live = this.receivingMids();
    for (const r of this.client?.remote.values() || []) {
      if (r.kind !== 'audio' || !live.has(r.mid)) continue;
      mids.add(r.mid);
      let a = this.audios.get(r.mid);
      if (!a) { a = h('audio', { autoplay: true }); this.audios.set(r.mid, a); this.els.audio.append(a); }
      a.dataset.source = r.source || '';
      a.dataset.pid = r.participantId || '';
      if ((a.srcObject as MediaStream | null)?.getTracks()[0] !== r.track) { a.srcObject = new MediaStream([r.track]); a.play().catch(() => {}); }
    }
    for (const [mid, a] of this.audios) if (!mids.has(mid)) { a.srcObject = null; a.remove(); this.audios.delete(mid); }
  }

  private button(id: string, label: string, name: IconName, onclick: () => void, pressed?: boolean, extra = '', key?: string): HTMLElement {
    return h('button', { type: 'button', id, class: `ctl ${extra}`, 'aria-label': label, title: key ? `${label} (${key})` : label, 'aria-keyshortcuts': key, 'aria-pressed': pressed === undefined ? undefined : String(pressed), onclick },
      icon(name), h('span', { class: 'txt' }, label));
  }

  drawControls(): void {
    const c = this.els.controls;
    if (!c) return;
    const focused = document.activeElement?.id;
    const canReact = !!this.client && !this.client.unsupported.has('reaction');
    if (!canReact && this.els.reactions) this.els.reactions.hidden = true;
    c.replaceChildren(
      this.button('ctl-mic', this.audioMuted ? t('unmute') : t('mute'), this.audioMuted ? 'micOff' : 'mic', () => this.toggleMic(), this.audioMuted, '', 'M'),
      this.button('ctl-cam', this.videoOff ? t('cam_on') : t('cam_off'), this.videoOff ? 'camOff' : 'cam', () => this.toggleCam(), this.videoOff, '', 'V'),
      navigator.mediaDevices && 'getDisplayMedia' in navigator.mediaDevices && (this.mayPublish('screen') || this.screen)
        ? this.button('ctl-share', this.screen ? t('stop_share') : t('share'), 'screen', () => this.toggleShare(), !!this.screen) : '',
      this.button('ctl-hand', this.hand ? t('lower') : t('raise'), 'hand', () => this.toggleHand(), this.hand, '', 'H'),
      canReact ? this.button('ctl-react', t('reactions'), 'smile', () => { this.els.reactions.hidden = !this.els.reactions.hidden; this.drawReactions(); }, !this.els.reactions.hidden) : '',
      this.button('ctl-layout', this.layout === 'grid' ? t('layout_to_speaker') : t('layout_to_grid'), this.layout === 'grid' ? 'speaker' : 'grid', () => this.setLayout(this.layout === 'grid' ? 'speaker' : 'grid'), this.layout === 'speaker', '', 'L'),
      this.button('ctl-chat', this.unread ? `${t('chat')} (${this.unread})` : t('chat'), 'chat', () => this.togglePanel('chat'), this.panel === 'chat', '', 'C'),
      this.notes ? this.button('ctl-notes', this.notesUnread ? `${t('notes')} •` : t('notes'), 'notes', () => this.togglePanel('notes'), this.panel === 'notes') : '',
      this.button('ctl-people', `${t('people')} (${this.people().length})`, 'people', () => this.togglePanel('people'), this.panel === 'people'),
      this.button('ctl-devices', t('settings'), 'gear', () => this.togglePanel('devices'), this.panel === 'devices'),
      this.button('ctl-details', t('details'), 'info', () => this.togglePanel('details'), this.panel === 'details', '', 'I'),
      this.button('ctl-help', t('sc_title'), 'keyboard', () => this.toggleHelp(), this.help, '', '?'),
      this.button('ctl-leave', t('leave'), 'leave', () => this.leave(), undefined, 'danger'),
    );
    if (focused) document.getElementById(focused)?.focus();
  }

  private drawReactions(): void {
    const box = this.els.reactions;
    box.replaceChildren(...REACTIONS.map((e) => h('button', { type: 'button', class: 'secondary small react', 'aria-label': t('react_with', { e }), onclick: () => { this.react(e); } }, e)));
    this.drawControls();
  }

  private showReaction(pid: string, emoji: string): void {
    if (!REACTIONS.includes(emoji)) return;
    const tile = this.tiles.get(pid === this.me ? (this.me || 'me') : pid);
    this.announce(t('reacted', { name: this.nameOf(pid), e: emoji }));
    if (!tile) return;
    const b = h('span', { class: 'reaction', 'aria-hidden': 'true' }, emoji);
    tile.el.append(b);
    setTimeout(() => b.remove(), 4000);
  }

  private drawHelp(): void {
    const box = this.els.help;
    if (!box) return;
    if (!this.help) { box.replaceChildren(); return; }
    box.replaceChildren(helpDialog(this.shortcuts(), () => { this.help = false; this.drawHelp(); document.getElementById('ctl-help')?.focus(); }));
  }

  private drawSide(force = false): void {
    const side = this.els.side;
    if (!side) return;
    side.hidden = !this.panel;
    side.classList.toggle('wide', this.panel === 'notes');
    side.setAttribute('aria-label', this.panel ? t(this.panel === 'devices' ? 'settings' : this.panel === 'details' ? 'details' : this.panel) : '');
    if (this.panel === 'notes' && this.notes) {
      if (!side.contains(this.notes.el)) side.replaceChildren(this.notes.el);
    } else if (this.panel === 'chat') {
      if (!side.querySelector('#chat-log')) side.replaceChildren(h('h2', {}, t('chat')), h('ol', { id: 'chat-log', class: 'chat-log', 'aria-live': 'polite' }), this.els.chatForm);
      this.drawChat();
    } else if (this.panel === 'devices') {
      if (side.querySelector('#devices') && !force) return;
      const box = h('div', { id: 'devices' });
      side.replaceChildren(h('h2', {}, t('settings')), box);
      this.drawSettings(box);
    } else if (this.panel === 'details') {
      this.drawDetails();
    } else if (this.panel === 'people') {
      const host = !!this.answer?.host;
      const act = (a: HostAction) => this.hostAction(a);
      const focused = document.activeElement?.id;
      side.replaceChildren(
        h('h2', {}, t('people')),
        this.locked ? h('p', { class: 'muted' }, t('locked_note')) : '',
        host ? lobbyPanel(this.waiting, act) : '',
        host ? h('div', { class: 'row' },
          h('button', { type: 'button', class: 'secondary small', id: 'host-lock', onclick: () => this.control(this.locked ? 'unlock' : 'lock') }, this.locked ? t('unlock') : t('lock')),
          h('button', { type: 'button', class: 'danger small', id: 'host-end', onclick: () => this.control('end') }, t('end_all'))) : '',
        host ? hostTools(this.perm, act) : '',
        host ? handQueue(this.people(), act) : '',
        !host && this.answer?.may_claim_host && this.client && !this.people().some((p) => p.host)
          ? h('p', {}, h('button', { type: 'button', class: 'secondary small', id: 'claim-host', onclick: () => this.client?.claimHost() }, t('claim_host'))) : '',
        h('ul', { class: 'people', id: 'people' }, ...this.people().map((p) => {
          const self = p.participant_id === (this.me || 'me');
          const owner = p.role === 'owner' || (p.host && p.role !== 'cohost');
          return h('li', { 'data-pid': p.participant_id, 'data-role': p.role || '' },
            p.hand_raised ? h('span', { role: 'img', 'aria-label': t('hand_up') }, icon('hand')) : '', h('span', { class: 'grow' }, `${p.name}${self ? ` (${t('you')})` : ''}${roleLabel(p)}`), p.audio_muted ? h('span', { role: 'img', 'aria-label': t('mic_muted') }, icon('micOff')) : '',
            host && !self && !p.audio_muted ? h('button', { type: 'button', class: 'secondary small host-mute', onclick: () => this.control('mute', p.participant_id) }, t('host_mute', { name: p.name })) : '',
            host && !self && !owner ? h('button', { type: 'button', class: 'secondary small host-role', onclick: () => act({ action: 'set_role', participant_id: p.participant_id, cohost: p.role !== 'cohost' }) }, p.role === 'cohost' ? t('unmake_cohost', { name: p.name }) : t('make_cohost', { name: p.name })) : '',
            host && !self && !owner ? h('button', { type: 'button', class: 'danger small host-remove', onclick: () => this.control('remove', p.participant_id) }, t('host_remove', { name: p.name })) : '');
        })));
      if (focused) document.getElementById(focused)?.focus();
    }
  }

  /** Devices, effects and view options. */
  private drawSettings(box: HTMLElement): void {
    const m = this.media;
    const parts: HTMLElement[] = [];
    const check = (id: string, label: string, on: boolean, change: (v: boolean) => void) => {
      const i = h('input', { type: 'checkbox', id, checked: on });
      i.addEventListener('change', () => change((i as HTMLInputElement).checked));
      return h('div', { class: 'check' }, i, h('label', { for: id }, label));
    };
    if (m?.monitor) parts.push(check('room-fx-noise', t('noise_suppression'), m.effects.noise, (v) => this.setEffects(v, m.effects.background)));
    if (m?.rawVideo) {
      const s = h('select', { id: 'room-fx-bg' }, ...(['none', 'blur', 'replace'] as Background[]).map((b) => h('option', { value: b, selected: m.effects.background === b }, t(`bg_${b}`))));
      s.addEventListener('change', () => this.setEffects(m.effects.noise, (s as HTMLSelectElement).value as Background));
      parts.push(h('label', { for: 'room-fx-bg' }, t('background')), s);
    }
    parts.push(check('room-hide-self', t('hide_self'), this.hideSelf, (v) => this.setHideSelf(v)));
    parts.push(check('room-audio-only', t('audio_only'), this.audioOnly, (v) => this.setAudioOnly(v)));
    const devs = h('div', {});
    parts.push(devs);
    box.replaceChildren(...parts);
    if (!m) return;
    navigator.mediaDevices.enumerateDevices().then((list) => {
      const cur = (k: string) => (k === 'audio' ? m.rawAudio : m.rawVideo)?.getSettings().deviceId;
      const sel = (kind: 'audio' | 'video', id: string, label: string) => {
        const opts = list.filter((d) => d.kind === `${kind}input`);
        if (!opts.length) return [];
        const s = h('select', { id }, ...opts.map((d, i) => h('option', { value: d.deviceId, selected: d.deviceId === cur(kind) }, d.label || `${label} ${i + 1}`)));
        s.addEventListener('change', () => this.switchDevice(kind, s.value));
        return [h('label', { for: id }, label), s];
      };
      devs.replaceChildren(...sel('video', 'room-dev-video', t('camera')), ...sel('audio', 'room-dev-audio', t('microphone')));
    });
  }

  private drawDetails(): void {
    const side = this.els.side;
    if (!side || this.panel !== 'details') return;
    const d = this.details;
    const row = (k: string, v: string) => [h('dt', {}, k), h('dd', {}, v)];
    const name = (pid?: string) => (pid ? this.nameOf(pid) || pid : '');
    side.replaceChildren(h('h2', {}, t('details')),
      d ? h('dl', { class: 'details', id: 'details' },
        ...row(t('d_rtt'), d.rttMs === null ? '–' : `${d.rttMs} ms`),
        ...row(t('d_send'), `${Math.round(d.sendKbps)} kbit/s`),
        ...row(t('d_recv'), `${Math.round(d.recvKbps)} kbit/s`),
        ...row(t('d_loss'), `${d.lossPct.toFixed(1)} %`),
        ...row(t('d_audio_codec'), d.audioCodec || '–'),
        ...row(t('d_layers'), d.layers.map((l) => `${l.rid || '–'} ${l.w}×${l.h} ${l.codec || ''}${l.limited && l.limited !== 'none' ? ` (${l.limited})` : ''}`).join(', ') || '–'),
        ...d.videos.flatMap((v) => row(`${name(v.pid)}${v.source === 'screen' ? ` (${t('share')})` : ''}`, `${v.codec || ''} ${v.w}×${v.h} ${v.fps ? Math.round(v.fps) + ' fps' : ''}`)),
        ...row(t('d_ice_restarts'), String(this.client?.iceRestarts ?? 0)),
        ...row(t('d_quality_from'), performance.now() - this.serverQualityAt < 6000 ? t('d_from_server') : t('d_from_here')),
      ) : h('p', { class: 'muted' }, t('joining')));
  }

  private drawChat(): void {
    const log = this.els.side?.querySelector('#chat-log');
    if (!log) return;
    log.replaceChildren(...this.chats.map((m) => chatLine(m, m.mine, (pid) => this.nameOf(pid))));
    log.scrollTop = log.scrollHeight;
    // The recipient picker follows who is here (a private recipient who left: back to all).
    const people = this.people();
    if (this.chatTo && this.chatTo !== 'hosts' && !people.some((p) => p.participant_id === this.chatTo)) this.chatTo = '';
    const slot = this.els.chatForm?.querySelector('.chat-to');
    const focusedTo = document.activeElement?.id === 'chat-to';
    if (slot && !focusedTo) slot.replaceChildren(chatTo(this.chatTo, people, this.me || 'me', (v) => { this.chatTo = v; }));
  }

  // ---- the size each video is shown at (the server picks simulcast layers by it) -------

  private layersSoon(): void {
    if (this.layerSoon) return;
    this.layerSoon = requestAnimationFrame(() => { this.layerSoon = 0; this.sendLayers(); });
  }

  private sendLayers(): void {
    const c = this.client;
    if (!c) return;
    const sizes = new Map<string, [number, number]>();
    // A video we receive and do not show is paused (0×0). One still being negotiated is not
    // told anything yet: pausing it would make its publisher stop the layer the new viewer
    // is about to start on, and start it again a moment later.
    const receiving = this.receivingMids();
    for (const r of c.remote.values()) if (r.kind === 'video' && receiving.has(r.mid)) sizes.set(r.mid, [0, 0]);
    if (!this.audioOnly) {
      for (const tile of this.tiles.values()) if (tile.mid && tile.el.isConnected) sizes.set(tile.mid, [tile.video.clientWidth, tile.video.clientHeight]);
      const sv = this.els.stage?.querySelector('video');
      if (sv?.dataset.mid) sizes.set(sv.dataset.mid, [sv.clientWidth, sv.clientHeight]);
    }
    const dpr = window.devicePixelRatio || 1;
    for (const [mid, [w, hgt]] of sizes) {
      const key = `${Math.round(w * dpr)}x${Math.round(hgt * dpr)}`;
      if (this.sentLayers.get(mid) !== key) { this.sentLayers.set(mid, key); c.setLayer(mid, Math.round(w * dpr), Math.round(hgt * dpr)); }
    }
  }

  // ---- every second: layers, statistics, quality -----------------------------------------

  /** The connection indicator in the top bar, from the last measured quality. */
  private drawQuality(): void {
    const q = this.quality;
    const el = this.els.quality;
    if (!el) return;
    const label = t('quality', { q: t(`q_${q}` as any) });
    el.className = `quality q-${q}`;
    el.title = label;
    el.setAttribute('aria-label', label);
    el.textContent = '▂▄▆'.slice(0, q === 'good' ? 3 : q === 'fair' ? 2 : 1);
  }

  private async tick(): Promise<void> {
    const c = this.client;
    if (!c) return;
    // Tracks become current only after the answer is applied; pick them up here too.
    this.updateTiles();
    this.sendLayers();
    try {
      const s = await sample(c);
      const d = diff(this.prevSample, s);
      this.prevSample = s;
      this.details = d;
      for (const p of c.participants.keys()) {
        const receiving = Object.values(s.inbound).some((x: any) => x.participantId === p && x.packetsReceived > 0);
        this.localQuality.set(p, grade(d.lossBy[p] ?? 0, d.rttMs, receiving));
      }
      const q = c.pc.connectionState !== 'connected' ? 'connecting' : ['poor', 'poor', 'fair', 'good'][grade(d.lossPct, d.rttMs)];
      if (q !== this.quality || !this.els.quality.title) {
        this.quality = q;
        this.drawQuality();
      }
      this.drawDetails();
    } catch { /* closed meanwhile */ }
  }
}
