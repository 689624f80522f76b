// meeting-appliance: the first script of the page, run while the main bundle loads. For a
// deep link that joins at once (/m/CODE?name=…&autojoin=1) it sends the join request now and,
// once answered, opens the signaling socket and sends the join; what the server says waits
// here until the room takes the socket over (web/static/rtc.js, `early`). Everything else
// is the main bundle's. No inline script: the page's CSP allows only files from the server.
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
  var boot = { code: code, body: JSON.stringify(body), socket: null };
  performance.mark('join-request');
  var join = fetch('/api/v1/join/' + encodeURIComponent(code), {
    method: 'POST', credentials: 'same-origin',
    headers: { 'content-type': 'application/json' }, body: boot.body,
  });
  // The response, once the socket for its answer (if it is one) is open: the room reads the
  // response itself (this reads a copy), so both always agree on which socket is whose.
  boot.join = join.then(function (r) {
    if (!r.ok) return r;
    return r.clone().json().then(function (a) {
      if (a && a.sfu && a.token) {
        var s = { url: a.sfu.signal_url, token: a.token, ws: new WebSocket(a.sfu.signal_url), messages: [], closed: null, failed: false };
        s.ws.onopen = function () { performance.mark('ws-open'); s.ws.send(JSON.stringify({ type: 'join', token: a.token })); };
        s.ws.onmessage = function (e) { s.messages.push(e.data); };
        s.ws.onerror = function () { s.failed = true; };
        s.ws.onclose = function (e) { s.closed = e; };
        boot.socket = s;
      }
      return r;
    }, function () { return r; });
  });
  window.__boot = boot;
})();
