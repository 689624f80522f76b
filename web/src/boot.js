// meeting-appliance: the first script of the page, run while the main bundle loads. For a
// deep link that joins at once (/m/CODE?name=…&autojoin=1) it sends the join request now and,
// once answered, opens the signaling socket, sends the join and answers the server's first
// offer (the people already here) on a peer connection of its own, so that ICE and DTLS run
// while the main bundle builds the room. The room takes the socket, the peer connection and
// whatever arrived over (web/static/rtc.js, `early`). The build writes it into the page
// (vite.config.ts, inlineBoot), so it runs as the page is parsed, without a request of its
// own; the page's CSP allows it by its hash (src/roles/apiserver/web.rs).
(function () {
  'use strict';
  var path = /^\/m\/([^/]+)\/?$/.exec(location.pathname);
  var q = new URLSearchParams(location.search);
  // Without a name the room asks who is signed in first (a guest is "Guest"): not here.
  if (!path || q.get('autojoin') !== '1' || !q.get('name')) return;
  var code;
  try { code = decodeURIComponent(path[1]); } catch (e) { return; }
  var body = { display_name: q.get('name') };
  if (q.get('pwd')) body.passcode = q.get('pwd');
  function mark(name) { if (!performance.getEntriesByName(name).length) performance.mark(name); }
  // `ready` resolves once the first offer is answered, or there is nothing to answer yet
  // (no one here, the lobby, a failure), or after FIRST_OFFER_MS: the room is built then, so
  // that building it does not hold up the steps above.
  var FIRST_OFFER_MS = 1000;
  var readyNow;
  var boot = { code: code, body: JSON.stringify(body), socket: null };
  boot.ready = new Promise(function (resolve) { readyNow = resolve; });
  setTimeout(readyNow, FIRST_OFFER_MS);
  mark('join-request');
  var join = fetch('/api/v1/join/' + encodeURIComponent(code), {
    method: 'POST', credentials: 'same-origin',
    headers: { 'content-type': 'application/json' }, body: boot.body,
  });
  join.catch(readyNow);

  // The server's first offer, answered here; later ones wait for the room.
  function answerFirstOffer(s, sdp) {
    var pc = s.pc;
    mark('offer-in');
    s.negotiation = pc.setRemoteDescription({ type: 'offer', sdp: sdp }).then(function () {
      mark('offer-applied');
      return pc.createAnswer();
    }).then(function (answer) {
      mark('answer-made');
      return pc.setLocalDescription(answer);
    }).then(function () {
      s.ws.send(JSON.stringify({ type: 'answer', sdp: pc.localDescription.sdp }));
      s.negotiated = true;
      mark('boot-answered');
    }).catch(function (e) { s.negotiationError = String(e); }).then(readyNow);
  }

  // The response, once the socket for its answer (if it is one) is open: the room reads the
  // response itself (this reads a copy), so both always agree on which socket is whose.
  boot.join = join.then(function (r) {
    if (!r.ok) { readyNow(); return r; }
    return r.clone().json().then(function (a) {
      if (!a || !a.sfu || !a.token) { readyNow(); return r; }
      var s = {
        url: a.sfu.signal_url, token: a.token, ws: new WebSocket(a.sfu.signal_url), messages: [], closed: null, failed: false,
        // The same configuration as the room's own (rtc.js): a candidate pool of one gathers now.
        pc: new RTCPeerConnection({ iceServers: a.ice_servers || [], iceTransportPolicy: 'all', bundlePolicy: 'max-bundle', iceCandidatePoolSize: 1 }),
        tracks: [], offerIndex: -1, offer: null, negotiation: null, negotiated: false,
      };
      s.pc.ontrack = function (e) { s.tracks.push(e); };
      s.pc.onicegatheringstatechange = function () { mark('gathering-' + s.pc.iceGatheringState); };
      s.pc.onicecandidate = function (e) { if (e.candidate) mark('local-candidate'); };
      s.pc.oniceconnectionstatechange = function () { mark('ice-' + s.pc.iceConnectionState); };
      s.pc.onconnectionstatechange = function () { if (s.pc.connectionState === 'connected') mark('media-connected'); };
      s.ws.onopen = function () { mark('ws-open'); s.ws.send(JSON.stringify({ type: 'join', token: a.token })); };
      s.ws.onmessage = function (e) {
        s.messages.push(e.data);
        if (s.offerIndex >= 0) return;
        var m;
        try { m = JSON.parse(e.data); } catch (x) { return; }
        if (m.type === 'offer') { s.offerIndex = s.messages.length - 1; s.offer = e.data; answerFirstOffer(s, m.sdp); }
        // No one to see yet, or the lobby: nothing to answer before the room is built.
        else if ((m.type === 'joined' && !(m.participants && m.participants.length)) || m.type === 'waiting' || m.type === 'closed') readyNow();
      };
      s.ws.onerror = function () { s.failed = true; readyNow(); };
      s.ws.onclose = function (e) { s.closed = e; readyNow(); };
      boot.socket = s;
      return r;
    }, function () { readyNow(); return r; });
  });
  window.__boot = boot;
})();
