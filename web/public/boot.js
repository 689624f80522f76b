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
  boot.join = fetch('/api/v1/join/' + encodeURIComponent(code), {
    method: 'POST', credentials: 'same-origin',
    headers: { 'content-type': 'application/json' }, body: boot.body,
  });
  boot.join.then(function (r) { return r.ok ? r.clone().json() : null; }).then(function (a) {
    if (!a || !a.sfu || !a.token || boot.taken) return;
    var s = { url: a.sfu.signal_url, token: a.token, ws: new WebSocket(a.sfu.signal_url), messages: [], closed: null, failed: false };
    s.ws.onopen = function () { performance.mark('ws-open'); s.ws.send(JSON.stringify({ type: 'join', token: a.token })); };
    s.ws.onmessage = function (e) { s.messages.push(e.data); };
    s.ws.onerror = function () { s.failed = true; };
    s.ws.onclose = function (e) { s.closed = e; };
    boot.socket = s;
  }).catch(function () {});
  window.__boot = boot;
})();
