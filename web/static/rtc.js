// meeting-appliance browser client: signaling + one RTCPeerConnection to the sfuserver.
// Protocol: see src/proto/mod.rs (module doc). This side is the IMPOLITE peer: it ignores a
// server offer that arrives while its own offer waits for an answer (the server drops its
// offer then and offers again later). All SDP work runs one step at a time.

const LAYERS = [
  { rid: 'q', scaleResolutionDownBy: 4, maxBitrate: 150_000 },
  { rid: 'h', scaleResolutionDownBy: 2, maxBitrate: 500_000 },
  { rid: 'f', scaleResolutionDownBy: 1, maxBitrate: 1_500_000 },
];

/** A join stage as a performance mark, the first time it happens (the fast-join test reads
 *  them; cheap, kept in production). */
export function mark(name) {
  if (!performance.getEntriesByName(name).length) performance.mark(name);
}

export class MeetingClient extends EventTarget {
  // `mungeRemoteSdp`/`mungeLocalSdp` rewrite SDP on its way in/out (tests use them to route
  // media through a lossy relay).
  // `early`: a signaling socket the page opened (and sent the join on) before this client
  // existed, with what arrived on it so far, and the peer connection on which the page
  // answers (or answered) the server's first offer (web/src/boot.js); both are taken over.
  constructor({ signalUrl, token, iceServers = [], iceTransportPolicy = 'all', log = () => {}, mungeRemoteSdp = (s) => s, mungeLocalSdp = (s) => s, early = null }) {
    super();
    this.munge = mungeRemoteSdp;
    this.mungeLocal = mungeLocalSdp;
    this.signalUrl = signalUrl;
    this.token = token;
    this.log = log;
    // The signaling socket opens first, so its handshake runs while the peer connection is
    // made. Nothing arrives on it before the caller's current task ends: listeners added
    // before the first `await` (then `connect()`) see every message.
    this.joined = this._open(early);
    this.adopted = !!early;
    this.joined.catch(() => {});
    // A candidate pool of one: the browser gathers its candidates now, while signaling
    // connects, instead of after the server's first offer is answered.
    this.pc = early && early.pc ? early.pc : new RTCPeerConnection({ iceServers, iceTransportPolicy, bundlePolicy: 'max-bundle', iceCandidatePoolSize: 1 });
    this.remote = new Map();      // mid -> { participantId, kind, source, track }
    this.trackInfo = new Map();   // mid -> info from the server's `tracks` message
    this.participants = new Map();
    this.published = new Map();   // source -> RTCRtpTransceiver
    this.awaitingAnswer = false;
    this.needsNegotiation = false;
    this.chain = Promise.resolve();
    // Server offers answered so far (the room waits for the first before it offers).
    this.negotiations = 0;
    this.closed = false;
    // ICE restarts this client asked for (a network change recovered without a rejoin).
    this.iceRestarts = 0;
    // Message types this server refused as unknown (it predates them): the UI hides them.
    this.unsupported = new Set();
    this._sentTypes = [];
    this.pc.ontrack = (e) => this._onTrack(e);
    this.pc.onconnectionstatechange = () => this._emit('connection', { state: this.pc.connectionState });
    this.pc.oniceconnectionstatechange = () => this._emit('ice', { state: this.pc.iceConnectionState });
    this.pc.onicegatheringstatechange = () => mark('gathering-' + this.pc.iceGatheringState);
    this.pc.onicecandidate = (e) => { if (e.candidate) mark('local-candidate'); };
    if (early && early.pc && early.offerIndex >= 0) {
      // The page answers (or answered) the server's first offer itself: the next SDP step
      // waits for that; had it failed, the offer is answered here.
      const offer = JSON.parse(early.offer).sdp;
      this.chain = early.negotiation.then(() => {
        if (!early.negotiated) return this._onOffer(offer);
        this.negotiations++;
        this._emit('negotiated', {});
      }).catch((e) => this.log('negotiation step failed', e));
    }
  }

  _emit(type, detail) { this.dispatchEvent(new CustomEvent(type, { detail })); }

  _send(msg) {
    if (this.ws && this.ws.readyState === WebSocket.OPEN) {
      this.ws.send(JSON.stringify(msg));
      // Remember the last few types: an `error` about an unknown variant names one of them.
      this._sentTypes.push(msg.type);
      if (this._sentTypes.length > 20) this._sentTypes.shift();
      return true;
    }
    return false;
  }

  // Sends a message that older servers do not know (reaction, spotlight). Returns false when
  // this server said it does not know the type: the caller must not pretend it was sent.
  sendOptional(msg) {
    if (this.unsupported.has(msg.type)) return false;
    return this._send(msg);
  }

  // Runs SDP steps strictly one after another.
  _serial(fn) {
    this.chain = this.chain.then(fn).catch((e) => this.log('negotiation step failed', e));
    return this.chain;
  }

  /** Resolves with the server's `joined` message (the socket opened when this was made). */
  connect() { return this.joined; }

  _open(early) {
    return new Promise((resolve, reject) => {
      const ws = early ? early.ws : new WebSocket(this.signalUrl);
      this.ws = ws;
      if (!early) ws.onopen = () => { mark('ws-open'); ws.send(JSON.stringify({ type: 'join', token: this.token })); };
      ws.onerror = () => reject(new Error('signaling connection failed'));
      ws.onclose = (e) => {
        if (!this.closed) {
          this.closed = true;
          this._emit('closed', { reason: this.closeReason || e.reason || 'disconnected', message: this.closeMessage || '' });
        }
      };
      ws.onmessage = (e) => {
        let m;
        try { m = JSON.parse(e.data); } catch { return; }
        if (m.type === 'joined') {
          this.participantId = m.participant_id;
          for (const p of m.participants) this.participants.set(p.participant_id, p);
          this._emit('joined', m);
          resolve(m);
        } else if (m.type === 'closed') {
          this.closeReason = m.reason;
          this.closeMessage = m.message;
          reject(new Error(`${m.reason}: ${m.message}`));
        }
        this._onMessage(m);
      };
      if (early) {
        // What came before, in order, once the caller has added its listeners (before any
        // later message: those are tasks, this is a microtask).
        const held = early.messages.splice(0);
        const first = early.pc && early.offerIndex >= 0 ? early.offerIndex : -1;
        queueMicrotask(() => {
          held.forEach((data, i) => { if (i !== first) ws.onmessage({ data }); });
          // Tracks of that offer (the `tracks` message came before it).
          for (const e of early.tracks || []) this._onTrack(e);
          if (early.failed) ws.onerror();
          if (early.closed) ws.onclose(early.closed);
        });
      }
      this.pingTimer = setInterval(() => this._send({ type: 'ping' }), 15000);
    });
  }

  _onMessage(m) {
    switch (m.type) {
      case 'offer': this._serial(() => this._onOffer(m.sdp)); break;
      case 'answer': this._serial(() => this._onAnswer(m.sdp)); break;
      case 'tracks':
        for (const t of m.tracks) this.trackInfo.set(t.mid, t);
        for (const [mid, r] of this.remote) {
          const t = this.trackInfo.get(mid);
          if (t) Object.assign(r, { participantId: t.participant_id, source: t.source });
        }
        break;
      case 'participant_joined': this.participants.set(m.participant.participant_id, m.participant); this._emit('participant_joined', m.participant); break;
      case 'participant_left':
        this.participants.delete(m.participant_id);
        for (const [mid, r] of this.remote) if (r.participantId === m.participant_id) this.remote.delete(mid);
        this._emit('participant_left', m);
        break;
      case 'closed': this.closed = true; this._emit('closed', m); this._teardown(); break;
      case 'role': {
        const p = this.participants.get(m.participant_id);
        if (p) { p.role = m.role; p.host = m.host; }
        this._emit('role', m);
        break;
      }
      case 'hand': {
        const p = this.participants.get(m.participant_id);
        if (p) { p.hand_raised = m.raised; p.hand_at = m.at || 0; }
        this._emit('hand', m);
        break;
      }
      case 'layers': this._setActiveLayers(m.mid, m.active); this._emit('layers', m); break;
      case 'error': {
        // serde's message for a type it does not know: "unknown variant `reaction`, expected …".
        const u = /unknown variant `([a-z_]+)`/.exec(m.message || '');
        if (m.code === 'bad_message' && u && this._sentTypes.includes(u[1])) {
          this.unsupported.add(u[1]);
          this._emit('unsupported', { type: u[1] });
        } else {
          // An offer the server does not allow (a host turned cameras or screens off): back
          // to the last agreed state, so the caller can unpublish and offer again.
          if (m.code === 'not_allowed' && this.awaitingAnswer) {
            this._serial(async () => {
              await this.pc.setLocalDescription({ type: 'rollback' }).catch((e) => this.log('rollback failed', e));
              this.awaitingAnswer = false;
            });
          }
          this._emit('error', m);
        }
        break;
      }
      default: this._emit(m.type, m);
    }
  }

  async _onOffer(sdp) {
    if (this.awaitingAnswer) { this.log('ignoring a crossing server offer (we are impolite)'); return; }
    mark('offer-in');
    await this.pc.setRemoteDescription({ type: 'offer', sdp: this.munge(sdp) });
    mark('offer-applied');
    const answer = await this.pc.createAnswer();
    mark('answer-made');
    await this.pc.setLocalDescription(answer);
    this._send({ type: 'answer', sdp: this.mungeLocal(this.pc.localDescription.sdp) });
    // Received tracks are current (currentDirection set) only now: the UI can show them and
    // ask for their layers at once.
    this.negotiations++;
    this._emit('negotiated', {});
    if (this.needsNegotiation) await this._offer();
  }

  async _onAnswer(sdp) {
    if (!this.awaitingAnswer) return;
    await this.pc.setRemoteDescription({ type: 'answer', sdp: this.munge(sdp) });
    this.awaitingAnswer = false;
    if (this.needsNegotiation) await this._offer();
  }

  async _offer(iceRestart = false) {
    if (this.awaitingAnswer || this.pc.signalingState !== 'stable') {
      this.needsNegotiation = true;
      if (iceRestart) this.pendingIceRestart = true;
      return;
    }
    this.needsNegotiation = false;
    iceRestart = iceRestart || !!this.pendingIceRestart;
    this.pendingIceRestart = false;
    if (iceRestart) this.iceRestarts++;
    const offer = await this.pc.createOffer({ iceRestart });
    await this.pc.setLocalDescription(offer);
    const sources = {};
    for (const [source, tr] of this.published) if (tr.mid !== null) sources[tr.mid] = source;
    this.awaitingAnswer = true;
    this._send({ type: 'offer', sdp: this.mungeLocal(this.pc.localDescription.sdp), sources });
  }

  negotiate() { return this._serial(() => this._offer()); }

  // A network change: new ICE credentials and candidates on the same session (no rejoin).
  restartIce() { return this._serial(() => this._offer(true)); }

  // The ICE username fragment in use (it changes with each restart).
  localUfrag() {
    const m = /a=ice-ufrag:(\S+)/.exec((this.pc.localDescription && this.pc.localDescription.sdp) || '');
    return m ? m[1] : null;
  }

  // Publishes a track as `source` (camera, microphone, screen, screen_audio).
  // `codec` (e.g. 'video/H264') restricts this track to that codec (plus its RTX).
  // `defer`: add the track without negotiating yet (call negotiate() once for several).
  publish(track, source, { simulcast = false, stream, codec, defer = false } = {}) {
    const init = { direction: 'sendonly', streams: stream ? [stream] : [] };
    if (simulcast && track.kind === 'video') init.sendEncodings = LAYERS.map((l) => ({ ...l }));
    const old = this.published.get(source);
    if (old) { old.sender.replaceTrack(track); return Promise.resolve(); }
    const tr = this.pc.addTransceiver(track, init);
    if (codec && tr.setCodecPreferences) {
      const all = RTCRtpSender.getCapabilities(track.kind).codecs;
      const first = all.filter((c) => c.mimeType.toLowerCase() === codec.toLowerCase());
      const rtx = all.filter((c) => c.mimeType.toLowerCase().endsWith('/rtx'));
      if (first.length) tr.setCodecPreferences([...first, ...rtx]);
    }
    this.published.set(source, tr);
    return defer ? Promise.resolve() : this.negotiate();
  }

  unpublish(source) {
    const tr = this.published.get(source);
    if (!tr) return Promise.resolve();
    this.published.delete(source);
    tr.sender.replaceTrack(null);
    tr.direction = 'inactive';
    return this.negotiate();
  }

  replaceTrack(source, track) {
    const tr = this.published.get(source);
    return tr ? tr.sender.replaceTrack(track) : Promise.resolve();
  }

  // Dynacast: the server says which simulcast layers of our track anyone watches.
  async _setActiveLayers(mid, active) {
    for (const tr of this.published.values()) {
      if (tr.mid !== mid) continue;
      const p = tr.sender.getParameters();
      if (!p.encodings || p.encodings.length < 2) return;
      // Keep the smallest layer on while nobody watches, so a new viewer starts at once.
      const want = active.length ? active : [p.encodings[0].rid];
      let changed = false;
      for (const e of p.encodings) {
        const on = want.includes(e.rid);
        if (e.active !== on) { e.active = on; changed = true; }
      }
      if (changed) await tr.sender.setParameters(p).catch((e) => this.log('setParameters failed', e));
    }
  }

  setLayer(mid, width, height) { this._send({ type: 'layer', mid, width, height }); }
  // `to`: a participant id (a private message), or 'hosts'; empty: everyone.
  chat(text, to) {
    if (to === 'hosts') this._send({ type: 'chat', text, to_hosts: true });
    else if (to) this._send({ type: 'chat', text, to });
    else this._send({ type: 'chat', text });
  }
  // A host action (src/proto/room.rs RoomAction): {action: 'mute_all'} …
  host(action) { return this._send({ type: 'host', action }); }
  // An invitee takes over as host when no host is left (if the meeting allows it).
  claimHost() { return this._send({ type: 'claim_host' }); }
  mute(kind, muted) {
    const tr = this.published.get(kind === 'audio' ? 'microphone' : 'camera');
    if (tr && tr.sender.track) tr.sender.track.enabled = !muted;
    this._send({ type: 'mute', kind, muted });
  }
  raiseHand(raised) { this._send({ type: 'hand', raised }); }
  // Newer signaling (see src/proto/signal.rs `ClientMsgNext`): false when this server lacks it.
  react(emoji) { return this.sendOptional({ type: 'reaction', emoji }); }
  spotlight(participantId) { return this.sendOptional({ type: 'spotlight', participant_id: participantId }); }

  _onTrack(e) {
    const mid = e.transceiver.mid;
    const t = this.trackInfo.get(mid) || {};
    const r = { mid, participantId: t.participant_id, kind: e.track.kind, source: t.source, track: e.track };
    this.remote.set(mid, r);
    this._emit('track', r);
  }

  // Inbound statistics per remote mid: frames decoded, size, packets, audio energy.
  async inboundStats() {
    const out = {};
    const stats = await this.pc.getStats();
    stats.forEach((s) => {
      if (s.type === 'inbound-rtp') {
        const r = this.remote.get(s.mid) || {};
        const codec = s.codecId && stats.get(s.codecId);
        out[s.mid] = {
          kind: s.kind, participantId: r.participantId, source: r.source, codec: codec && codec.mimeType,
          packetsReceived: s.packetsReceived, packetsLost: s.packetsLost, bytesReceived: s.bytesReceived,
          framesDecoded: s.framesDecoded, frameWidth: s.frameWidth, frameHeight: s.frameHeight,
          freezeCount: s.freezeCount, totalFreezesDuration: s.totalFreezesDuration,
          nackCount: s.nackCount, retransmittedPacketsReceived: s.retransmittedPacketsReceived, totalAudioEnergy: s.totalAudioEnergy, concealedSamples: s.concealedSamples,
          totalSamplesDuration: s.totalSamplesDuration, audioLevel: s.audioLevel, jitter: s.jitter, framesPerSecond: s.framesPerSecond,
          keyFramesDecoded: s.keyFramesDecoded, timestamp: s.timestamp,
        };
      }
    });
    return out;
  }

  async outboundStats() {
    const out = [];
    const stats = await this.pc.getStats();
    stats.forEach((s) => {
      if (s.type === 'outbound-rtp') {
        const codec = s.codecId && stats.get(s.codecId);
        out.push({ kind: s.kind, rid: s.rid, mid: s.mid, packetsSent: s.packetsSent, bytesSent: s.bytesSent, frameWidth: s.frameWidth, frameHeight: s.frameHeight,
          retransmittedPacketsSent: s.retransmittedPacketsSent, nackCount: s.nackCount, codec: codec && codec.mimeType, active: s.active, qualityLimitationReason: s.qualityLimitationReason, timestamp: s.timestamp });
      }
    });
    return out;
  }

  // The selected candidate pair: round-trip time and the send/receive totals.
  async transportStats() {
    const stats = await this.pc.getStats();
    let pair = null;
    stats.forEach((s) => {
      if (s.type === 'transport' && s.selectedCandidatePairId) pair = stats.get(s.selectedCandidatePairId) || pair;
    });
    if (!pair) stats.forEach((s) => { if (s.type === 'candidate-pair' && s.nominated && s.state === 'succeeded') pair = s; });
    if (!pair) return null;
    return { rtt: pair.currentRoundTripTime, bytesSent: pair.bytesSent, bytesReceived: pair.bytesReceived, outgoingBitrate: pair.availableOutgoingBitrate, timestamp: pair.timestamp };
  }

  _teardown() {
    clearInterval(this.pingTimer);
    try { this.pc.close(); } catch {}
  }

  leave() {
    this._send({ type: 'leave' });
    this.closed = true;
    this._teardown();
    try { this.ws.close(); } catch {}
  }
}
