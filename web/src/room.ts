// The meeting room: one MeetingClient (web/static/rtc.js) per connection, re-created with a
// fresh join answer after a drop (backoff 1 s … 8 s) unless the server said why it ended.
import { MeetingClient, type Participant, type RemoteTrack } from '../static/rtc.js';
import { api, ApiError, type JoinAnswer } from './api';
import { h, mount, toast } from './dom';
import { t } from './i18n';
import { icon, type IconName } from './icons';
import { NotesPanel } from './notes';

export interface RoomEnd { reason: string; message: string }
interface Choice { name: string; stream: MediaStream | null; audioMuted: boolean; videoOff: boolean; signedIn?: boolean }
interface Chat { name: string; text: string; at: number; mine: boolean }
interface Tile { el: HTMLElement; video: HTMLVideoElement; label: HTMLElement; trackId: string; mid: string }

/** Reasons after which rejoining cannot help (see the sfuserver's `closed` messages). */
const FINAL = new Set(['removed', 'ended', 'replaced', 'locked', 'bad_token', 'left']);
const PAGE = 9;

export class Room {
  client: MeetingClient | null = null;
  answer: JoinAnswer | null = null;
  audioMuted: boolean;
  videoOff: boolean;
  hand = false;
  locked = false;
  activeSpeaker: string | null = null;
  chats: Chat[] = [];
  unread = 0;
  panel: 'chat' | 'people' | 'devices' | 'notes' | null = null;
  /** The meeting's notes, followed live from the first join on (also while the panel is closed). */
  notes: NotesPanel | null = null;
  notesUnread = false;
  screen: MediaStreamTrack | null = null;
  reconnectAttempt = 0;
  page = 0;
  quality = 'connecting';
  done = false;
  private tiles = new Map<string, Tile>();
  private audios = new Map<string, HTMLAudioElement>();
  private sentLayers = new Map<string, string>();
  private els: Record<string, HTMLElement> = {};
  private timer = 0;

  constructor(private root: HTMLElement, private code: string, private choice: Choice,
    private langButton: () => HTMLElement, private onEnd: (e: RoomEnd) => void) {
    this.audioMuted = choice.audioMuted;
    this.videoOff = choice.videoOff || !choice.stream?.getVideoTracks().length;
  }

  get me(): string { return this.client?.participantId || ''; }

  async start(): Promise<void> {
    this.render();
    this.banner(t('joining'));
    this.timer = window.setInterval(() => this.tick(), 1000);
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
        const reason = (this.client as any)?.closeReason as string | undefined;
        this.client?.leave();
        this.client = null;
        if (reason && FINAL.has(reason)) { this.finish({ reason, message: (e as Error).message }); return; }
        if (e instanceof ApiError && [401, 403, 404, 410].includes(e.status)) { this.finish({ reason: e.code, message: e.message }); return; }
        this.reconnectAttempt++;
        const wait = e instanceof ApiError && e.retryAfter ? e.retryAfter * 1000 : Math.min(8000, 500 * 2 ** this.reconnectAttempt) * (0.75 + Math.random() / 2);
        this.banner(e instanceof ApiError && e.code === 'servers_not_ready' ? t('not_ready') : t('reconnecting', { n: this.reconnectAttempt }));
        await new Promise((r) => setTimeout(r, wait));
      }
    }
  }

  private async connectOnce(): Promise<void> {
    const answer = await api<JoinAnswer>('POST', '/join/' + encodeURIComponent(this.code), { display_name: this.choice.name });
    this.answer = answer;
    this.followNotes(answer);
    const c = new MeetingClient({ signalUrl: answer.sfu.signal_url, token: answer.token, iceServers: answer.ice_servers });
    this.client = c;
    await c.connect();
    const on = (type: string, f: (d: any) => void) => c.addEventListener(type, (e) => { if (this.client === c) f((e as CustomEvent).detail); });
    on('closed', (d) => this.onClosed(d));
    on('track', () => this.update());
    on('participant_joined', () => this.update());
    on('participant_left', (d) => { if (this.activeSpeaker === d.participant_id) this.activeSpeaker = null; this.update(); });
    on('active_speaker', (d) => { this.activeSpeaker = d.participant_id; this.updateTiles(); });
    on('mute', (d) => this.onMute(d));
    on('hand', (d) => {
      const p = c.participants.get(d.participant_id);
      if (p) { p.hand_raised = d.raised; if (d.raised) toast(t('hand_raised', { name: p.name })); }
      if (d.participant_id === this.me) this.hand = d.raised;
      this.update();
    });
    on('chat', (d) => {
      this.chats.push({ name: d.name, text: d.text, at: d.at, mine: d.participant_id === this.me });
      if (this.panel !== 'chat') this.unread++;
      this.drawChat();
      this.drawControls();
    });
    on('locked', (d) => { this.locked = d.locked; this.update(); });
    on('connection', (d) => { if (d.state === 'failed') this.onClosed({ reason: 'ice_failed', message: '' }); });
    const s = this.choice.stream;
    const a = s?.getAudioTracks()[0];
    const v = s?.getVideoTracks()[0];
    if (a) { await c.publish(a, 'microphone', { stream: s! }); }
    if (v) { await c.publish(v, 'camera', { stream: s!, simulcast: true }); }
    if (this.screen && this.screen.readyState === 'live') await c.publish(this.screen, 'screen', { stream: new MediaStream([this.screen]) });
    if (this.audioMuted) c.mute('audio', true);
    if (this.videoOff) c.mute('video', true);
    if (this.hand) c.raiseHand(true);
    this.tiles.forEach((tile) => { tile.trackId = ''; });
    this.sentLayers.clear();
  }

  private onClosed(d: { reason: string; message: string }): void {
    const c = this.client;
    this.client = null;
    c?.leave();
    if (FINAL.has(d.reason)) { this.finish(d); return; }
    this.reconnectAttempt = Math.max(this.reconnectAttempt, 1);
    this.banner(t('reconnecting', { n: this.reconnectAttempt }));
    setTimeout(() => this.connectLoop(), 300 + Math.random() * 700);
  }

  private onMute(d: { participant_id: string; kind: 'audio' | 'video'; muted: boolean; by_host: boolean }): void {
    if (d.participant_id === this.me) {
      if (d.kind === 'audio') {
        this.audioMuted = d.muted;
        const tr = this.choice.stream?.getAudioTracks()[0];
        if (tr) tr.enabled = !d.muted;
        if (d.by_host && d.muted) toast(t('muted_by_host'));
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
    clearInterval(this.timer);
    this.client?.leave();
    this.client = null;
    this.screen?.stop();
    this.audios.forEach((a) => { a.srcObject = null; a.remove(); });
    this.notes?.close();
    this.onEnd(e);
  }

  leave(): void { this.finish({ reason: 'left', message: '' }); }

  // ---- actions ------------------------------------------------------------------------

  toggleMic(): void {
    this.audioMuted = !this.audioMuted;
    const tr = this.choice.stream?.getAudioTracks()[0];
    if (tr) tr.enabled = !this.audioMuted;
    this.client?.mute('audio', this.audioMuted);
    this.update();
  }

  toggleCam(): void {
    if (!this.choice.stream?.getVideoTracks().length) return;
    this.videoOff = !this.videoOff;
    this.client?.mute('video', this.videoOff);
    this.update();
  }

  async toggleShare(): Promise<void> {
    if (this.screen) {
      this.screen.stop();
      this.screen = null;
      await this.client?.unpublish('screen');
      this.update();
      return;
    }
    try {
      const s = await navigator.mediaDevices.getDisplayMedia({ video: { frameRate: 15 }, audio: false });
      const tr = s.getVideoTracks()[0];
      tr.contentHint = 'detail';
      this.screen = tr;
      tr.addEventListener('ended', () => { if (this.screen === tr) this.toggleShare(); });
      await this.client?.publish(tr, 'screen', { stream: s });
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

  async control(action: string, participant_id?: string): Promise<void> {
    if (!this.answer) return;
    try { await api('POST', `/meetings/${this.answer.meeting.id}/control`, { action, participant_id }); } catch (e) {
      toast(t('error', { msg: (e as Error).message }));
    }
  }

  /** Switches camera or microphone mid-call: the new track replaces the old on the same sender. */
  async switchDevice(kind: 'audio' | 'video', deviceId: string): Promise<void> {
    const stream = this.choice.stream;
    if (!stream) return;
    try {
      const got = await navigator.mediaDevices.getUserMedia(kind === 'audio'
        ? { audio: { deviceId: { exact: deviceId } } }
        : { video: { deviceId: { exact: deviceId }, width: { ideal: 1280 }, height: { ideal: 720 } } });
      const track = got.getTracks()[0];
      const old = kind === 'audio' ? stream.getAudioTracks()[0] : stream.getVideoTracks()[0];
      if (old) { stream.removeTrack(old); old.stop(); }
      stream.addTrack(track);
      if (kind === 'audio') track.enabled = !this.audioMuted;
      await this.client?.replaceTrack(kind === 'audio' ? 'microphone' : 'camera', track);
      this.updateTiles();
    } catch (e) {
      toast(t('error', { msg: (e as Error).message }));
    }
  }

  togglePanel(p: 'chat' | 'people' | 'devices' | 'notes'): void {
    this.panel = this.panel === p ? null : p;
    if (this.panel === 'chat') this.unread = 0;
    if (this.panel === 'notes') this.notesUnread = false;
    this.update();
    if (this.panel === 'chat') (document.getElementById('chat-input') as HTMLInputElement | null)?.focus();
    if (this.panel === 'notes') this.notes?.focus();
  }

  /** Notes: a guest reads and writes them with its join token, renewed on every rejoin. */
  private followNotes(answer: JoinAnswer): void {
    const token = this.choice.signedIn ? null : answer.token;
    if (this.notes) { this.notes.setJoinToken(token); return; }
    this.notes = new NotesPanel({
      meetingId: answer.meeting.id, joinToken: token,
      onRemoteChange: () => { if (this.panel !== 'notes' && !this.notesUnread) { this.notesUnread = true; this.drawControls(); } },
    });
    this.notes.start();
    window.addEventListener('pagehide', () => this.notes?.flushOnExit());
  }

  // ---- rendering ----------------------------------------------------------------------

  private banner(text: string | null): void {
    const b = this.els.banner;
    if (!b) return;
    b.textContent = text || '';
    b.hidden = !text;
  }

  /** Builds the room's frame (again after a language switch); parts update in place. */
  render(): void {
    this.tiles.clear();
    const title = h('h1', { class: 'room-title' }, this.answer?.meeting.title || this.code);
    this.els = {
      title,
      quality: h('span', { class: 'quality', id: 'quality', role: 'img' }),
      banner: h('div', { class: 'banner', id: 'banner', role: 'status', hidden: true }),
      stage: h('div', { class: 'stage', id: 'stage', hidden: true }),
      grid: h('div', { class: 'grid', id: 'grid' }),
      pager: h('div', { class: 'pager' }),
      side: h('aside', { class: 'side', id: 'side', hidden: true }),
      controls: h('footer', { class: 'controls', role: 'toolbar', 'aria-label': t('app') }),
      audio: h('div', { hidden: true }),
    };
    const copy = h('button', { type: 'button', class: 'secondary small', onclick: () => {
      const url = `${location.origin}/m/${this.code}`;
      navigator.clipboard.writeText(url).then(() => toast(t('copied')), () => toast(t('copy_failed', { url })));
    } }, t('copy_link'));
    const chatForm = this.chatForm();
    mount(this.root, h('div', { class: 'room' },
      h('header', { class: 'top' }, title, h('span', { class: 'code' }, this.code), copy, h('span', { class: 'grow' }), this.els.quality, this.langButton()),
      this.els.banner,
      h('div', { class: 'room-body' },
        h('main', { class: 'stage-wrap' }, this.els.stage, this.els.grid, this.els.pager),
        this.els.side),
      this.els.controls,
      this.els.audio));
    this.els.chatForm = chatForm;
    this.notes?.build();
    for (const a of this.audios.values()) this.els.audio.append(a);
    this.update();
  }

  private chatForm(): HTMLElement {
    const input = h('input', { id: 'chat-input', name: 'message', autocomplete: 'off', maxlength: 4000, 'aria-label': t('message') });
    const form = h('form', { class: 'chat-form' }, input, h('button', { type: 'submit', id: 'chat-send' }, t('send')));
    form.addEventListener('submit', (e) => {
      e.preventDefault();
      const text = input.value.trim();
      if (text && this.client) { this.client.chat(text); input.value = ''; }
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
    };
    return [mine, ...(c ? [...c.participants.values()].filter((p) => p.participant_id !== this.me) : [])];
  }

  private remoteTrack(pid: string, source: string): RemoteTrack | undefined {
    if (!this.client) return undefined;
    // The server parks m-lines it no longer sends on as inactive (and reuses them later).
    const receiving = new Set(this.client.pc.getTransceivers()
      .filter((x) => x.currentDirection === 'recvonly' || x.currentDirection === 'sendrecv').map((x) => x.mid));
    for (const r of this.client.remote.values()) {
      if (r.participantId === pid && r.source === source && r.kind === 'video' && r.track.readyState === 'live' && receiving.has(r.mid)) return r;
    }
    return undefined;
  }

  updateTiles(): void {
    const grid = this.els.grid;
    if (!grid) return;
    const everyone = this.people();
    const pages = Math.max(1, Math.ceil(everyone.length / PAGE));
    this.page = Math.min(this.page, pages - 1);
    const shown = everyone.slice(this.page * PAGE, this.page * PAGE + PAGE);
    const keep = new Set(shown.map((p) => p.participant_id));
    for (const [pid, tile] of this.tiles) if (!keep.has(pid)) { tile.el.remove(); this.tiles.delete(pid); }
    for (const p of shown) {
      const self = p.participant_id === (this.me || 'me');
      let tile = this.tiles.get(p.participant_id);
      if (!tile) {
        const video = h('video', { autoplay: true, muted: true, playsInline: true, class: self ? 'mirror' : '' });
        const label = h('div', { class: 'label' });
        const el = h('figure', { class: 'tile', 'data-pid': p.participant_id, 'data-self': self ? '1' : '0' }, video, label);
        tile = { el, video, label, trackId: '', mid: '' };
        this.tiles.set(p.participant_id, tile);
      }
      grid.append(tile.el); // keeps the order of `shown`
      let track: MediaStreamTrack | null = null;
      if (self) {
        track = this.choice.stream?.getVideoTracks()[0] || null;
        tile.mid = '';
      } else {
        const r = this.remoteTrack(p.participant_id, 'camera');
        track = r ? r.track : null;
        tile.mid = r ? r.mid : '';
      }
      const id = track ? track.id + (tile.mid || '') : '';
      if (tile.trackId !== id) {
        tile.trackId = id;
        tile.video.srcObject = track ? new MediaStream([track]) : null;
      }
      const camOff = p.video_muted || !track;
      tile.el.classList.toggle('cam-off', camOff);
      tile.el.classList.toggle('speaking', this.activeSpeaker === p.participant_id);
      tile.el.classList.toggle('hand', p.hand_raised);
      tile.el.setAttribute('aria-label', p.name);
      tile.label.replaceChildren(
        p.hand_raised ? h('span', { class: 'badge', role: 'img', 'aria-label': t('raise') }, icon('hand')) : '',
        p.audio_muted ? h('span', { class: 'badge', role: 'img', 'aria-label': t('unmute') }, icon('micOff')) : '',
        `${p.name}${self ? ` (${t('you')})` : ''}${p.host ? ` · ${t('host')}` : ''}`,
      );
    }
    grid.dataset.count = String(shown.length);
    // Pages for large meetings.
    this.els.pager.replaceChildren(...(pages > 1 ? [
      h('button', { type: 'button', class: 'secondary small', disabled: this.page === 0, 'aria-label': '←', onclick: () => { this.page--; this.updateTiles(); } }, '←'),
      h('span', {}, `${this.page + 1} / ${pages}`),
      h('button', { type: 'button', class: 'secondary small', disabled: this.page >= pages - 1, 'aria-label': '→', onclick: () => { this.page++; this.updateTiles(); } }, '→'),
    ] : []));
    // Screen share: the first one is shown large.
    const stage = this.els.stage;
    let screen: RemoteTrack | undefined;
    for (const p of everyone) { screen = this.remoteTrack(p.participant_id, 'screen'); if (screen) break; }
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
    this.els.grid.classList.toggle('filmstrip', !!screen);
    // Remote audio, one element per track.
    const mids = new Set<string>();
    const live = new Set(this.client?.pc.getTransceivers()
      .filter((x) => x.currentDirection === 'recvonly' || x.currentDirection === 'sendrecv').map((x) => x.mid));
    for (const r of this.client?.remote.values() || []) {
      if (r.kind !== 'audio' || !live.has(r.mid)) continue;
      mids.add(r.mid);
      let a = this.audios.get(r.mid);
      if (!a) { a = h('audio', { autoplay: true }); this.audios.set(r.mid, a); this.els.audio.append(a); }
      if ((a.srcObject as MediaStream | null)?.getTracks()[0] !== r.track) { a.srcObject = new MediaStream([r.track]); a.play().catch(() => {}); }
    }
    for (const [mid, a] of this.audios) if (!mids.has(mid)) { a.srcObject = null; a.remove(); this.audios.delete(mid); }
  }

  private button(id: string, label: string, name: IconName, onclick: () => void, pressed?: boolean, extra = ''): HTMLElement {
    return h('button', { type: 'button', id, class: `ctl ${extra}`, 'aria-label': label, title: label, 'aria-pressed': pressed === undefined ? undefined : String(pressed), onclick },
      icon(name), h('span', { class: 'txt' }, label));
  }

  drawControls(): void {
    const c = this.els.controls;
    if (!c) return;
    const focused = document.activeElement?.id;
    c.replaceChildren(
      this.button('ctl-mic', this.audioMuted ? t('unmute') : t('mute'), this.audioMuted ? 'micOff' : 'mic', () => this.toggleMic(), this.audioMuted),
      this.button('ctl-cam', this.videoOff ? t('cam_on') : t('cam_off'), this.videoOff ? 'camOff' : 'cam', () => this.toggleCam(), this.videoOff),
      navigator.mediaDevices && 'getDisplayMedia' in navigator.mediaDevices
        ? this.button('ctl-share', this.screen ? t('stop_share') : t('share'), 'screen', () => this.toggleShare(), !!this.screen) : '',
      this.button('ctl-hand', this.hand ? t('lower') : t('raise'), 'hand', () => this.toggleHand(), this.hand),
      this.button('ctl-chat', this.unread ? `${t('chat')} (${this.unread})` : t('chat'), 'chat', () => this.togglePanel('chat'), this.panel === 'chat'),
      this.notes ? this.button('ctl-notes', this.notesUnread ? `${t('notes')} •` : t('notes'), 'notes', () => this.togglePanel('notes'), this.panel === 'notes') : '',
      this.button('ctl-people', `${t('people')} (${this.people().length})`, 'people', () => this.togglePanel('people'), this.panel === 'people'),
      this.choice.stream ? this.button('ctl-devices', t('devices'), 'gear', () => this.togglePanel('devices'), this.panel === 'devices') : '',
      this.button('ctl-leave', t('leave'), 'leave', () => this.leave(), undefined, 'danger'),
    );
    if (focused) document.getElementById(focused)?.focus();
  }

  private drawSide(): void {
    const side = this.els.side;
    if (!side) return;
    side.hidden = !this.panel;
    side.classList.toggle('wide', this.panel === 'notes');
    if (this.panel === 'notes' && this.notes) {
      if (!side.contains(this.notes.el)) side.replaceChildren(this.notes.el);
    } else if (this.panel === 'chat') {
      if (!side.querySelector('#chat-log')) side.replaceChildren(h('h2', {}, t('chat')), h('ol', { id: 'chat-log', class: 'chat-log', 'aria-live': 'polite' }), this.els.chatForm);
      this.drawChat();
    } else if (this.panel === 'devices') {
      const box = h('div', { id: 'devices' });
      side.replaceChildren(h('h2', {}, t('devices')), box);
      navigator.mediaDevices.enumerateDevices().then((list) => {
        const cur = (k: string) => this.choice.stream?.getTracks().find((x) => x.kind === k)?.getSettings().deviceId;
        const sel = (kind: 'audio' | 'video', id: string, label: string) => {
          const s = h('select', { id }, ...list.filter((d) => d.kind === `${kind}input`)
            .map((d, i) => h('option', { value: d.deviceId, selected: d.deviceId === cur(kind) }, d.label || `${label} ${i + 1}`)));
          s.addEventListener('change', () => this.switchDevice(kind, s.value));
          return [h('label', { for: id }, label), s];
        };
        box.replaceChildren(...sel('video', 'room-dev-video', t('camera')), ...sel('audio', 'room-dev-audio', t('microphone')));
      });
    } else if (this.panel === 'people') {
      const host = !!this.answer?.host;
      side.replaceChildren(
        h('h2', {}, t('people')),
        this.locked ? h('p', { class: 'muted' }, t('locked_note')) : '',
        host ? h('div', { class: 'row' },
          h('button', { type: 'button', class: 'secondary small', id: 'host-lock', onclick: () => this.control(this.locked ? 'unlock' : 'lock') }, this.locked ? t('unlock') : t('lock')),
          h('button', { type: 'button', class: 'danger small', id: 'host-end', onclick: () => this.control('end') }, t('end_all'))) : '',
        h('ul', { class: 'people', id: 'people' }, ...this.people().map((p) => {
          const self = p.participant_id === (this.me || 'me');
          return h('li', { 'data-pid': p.participant_id },
            p.hand_raised ? icon('hand') : '', h('span', { class: 'grow' }, `${p.name}${self ? ` (${t('you')})` : ''}${p.host ? ` · ${t('host')}` : ''}`), p.audio_muted ? icon('micOff') : '',
            host && !self && !p.audio_muted ? h('button', { type: 'button', class: 'secondary small host-mute', onclick: () => this.control('mute', p.participant_id) }, t('host_mute', { name: p.name })) : '',
            host && !self ? h('button', { type: 'button', class: 'danger small host-remove', onclick: () => this.control('remove', p.participant_id) }, t('host_remove', { name: p.name })) : '');
        })));
    }
  }

  private drawChat(): void {
    const log = this.els.side?.querySelector('#chat-log');
    if (!log) return;
    log.replaceChildren(...this.chats.map((m) => h('li', { class: m.mine ? 'mine' : '' },
      h('span', { class: 'who' }, m.name), h('time', { datetime: new Date(m.at * 1000).toISOString() }, new Date(m.at * 1000).toLocaleTimeString(document.documentElement.lang, { timeStyle: 'short' })),
      h('p', {}, m.text))));
    log.scrollTop = log.scrollHeight;
  }

  // ---- every second: the size each video is shown at, and connection quality ------------

  private async tick(): Promise<void> {
    const c = this.client;
    if (!c) return;
    // Tracks become current only after the answer is applied; pick them up here too.
    this.updateTiles();
    const sizes = new Map<string, [number, number]>();
    for (const r of c.remote.values()) if (r.kind === 'video') sizes.set(r.mid, [0, 0]);
    for (const tile of this.tiles.values()) if (tile.mid) sizes.set(tile.mid, [tile.video.clientWidth, tile.video.clientHeight]);
    const sv = this.els.stage?.querySelector('video');
    if (sv?.dataset.mid) sizes.set(sv.dataset.mid, [sv.clientWidth, sv.clientHeight]);
    for (const [mid, [w, hgt]] of sizes) {
      const dpr = window.devicePixelRatio || 1;
      const key = `${Math.round(w * dpr)}x${Math.round(hgt * dpr)}`;
      if (this.sentLayers.get(mid) !== key) { this.sentLayers.set(mid, key); c.setLayer(mid, Math.round(w * dpr), Math.round(hgt * dpr)); }
    }
    try {
      let rtt = 0, lost = 0, got = 0;
      const stats = await c.pc.getStats();
      stats.forEach((s: any) => {
        if (s.type === 'candidate-pair' && s.nominated && s.currentRoundTripTime !== undefined) rtt = s.currentRoundTripTime;
        if (s.type === 'inbound-rtp') { lost += s.packetsLost || 0; got += s.packetsReceived || 0; }
      });
      const loss = got + lost > 0 ? lost / (got + lost) : 0;
      const q = c.pc.connectionState !== 'connected' ? 'connecting' : rtt < 0.2 && loss < 0.02 ? 'good' : rtt < 0.5 && loss < 0.08 ? 'fair' : 'poor';
      if (q !== this.quality || !this.els.quality.title) {
        this.quality = q;
        const label = t('quality', { q: t(`q_${q}` as any) });
        this.els.quality.className = `quality q-${q}`;
        this.els.quality.title = label;
        this.els.quality.setAttribute('aria-label', label);
        this.els.quality.textContent = '▂▄▆'.slice(0, q === 'good' ? 3 : q === 'fair' ? 2 : 1);
      }
    } catch { /* closed meanwhile */ }
  }
}
