// A real OpenID Provider for the tests: panva's certified `oidc-provider` (npm), on loopback,
// with its development login and consent pages (any password; the login is the account id).
// Started by tests/support/oidc.rs; prints `LISTENING <issuer>` when ready.
//
// Environment:
//   PORT            where to listen (127.0.0.1)
//   APP_BASE        the appliance's base URL (its callback and post-logout URLs are registered)
//   CLIENT_SECRET   the appliance's client secret (client id `meeting`)
//   ACCOUNTS        JSON {login: {email, email_verified?, name, groups}}
//   NODE_PREFIX     where npm installed oidc-provider (scripts/test-deps.sh)
//   TLS_CERT, TLS_KEY  PEM files: serve HTTPS (the issuer is then https://127.0.0.1:PORT)
//
// Test controls (loopback only, like the provider itself):
//   POST /test/disable/<login>   the account no longer exists for the provider: sign-in and
//                                refresh of its grants fail (`findAccount` finds nothing)
//   POST /test/enable/<login>
//   GET  /other/login            a second client, `other`, signs in (its own PKCE), as a
//                                relying party would; /other/callback keeps its ID token
//   POST /test/swap-next         the next token response to `meeting` carries the ID token
//                                issued to `other` instead of its own (a token from another
//                                client reaching the appliance)
//   GET  /test/state             {disabled, other_token: bool, swapped: n, refreshes: n}
import fs from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import crypto from 'node:crypto';
import path from 'node:path';
import { pathToFileURL } from 'node:url';

const PORT = Number(process.env.PORT);
const TLS = process.env.TLS_CERT && process.env.TLS_KEY
  ? { cert: fs.readFileSync(process.env.TLS_CERT), key: fs.readFileSync(process.env.TLS_KEY) } : null;
const ISSUER = `${TLS ? 'https' : 'http'}://127.0.0.1:${PORT}`;
const APP_BASE = process.env.APP_BASE;
const CLIENT_SECRET = process.env.CLIENT_SECRET;
const ACCOUNTS = JSON.parse(process.env.ACCOUNTS || '{}');
const PREFIX = process.env.NODE_PREFIX || '/var/tmp/meeting-appliance-node';
const { default: Provider } = await import(pathToFileURL(path.join(PREFIX, 'node_modules/oidc-provider/lib/index.js')).href);

const disabled = new Set();
let otherIdToken = null;
let swapArmed = false;
let swapped = 0;
let refreshes = 0;
const otherLogins = new Map();

const provider = new Provider(ISSUER, {
  clients: [
    {
      client_id: 'meeting',
      client_secret: CLIENT_SECRET,
      redirect_uris: [`${APP_BASE}/api/v1/auth/oidc/callback`],
      post_logout_redirect_uris: [`${APP_BASE}/`],
      grant_types: ['authorization_code', 'refresh_token'],
      response_types: ['code'],
      token_endpoint_auth_method: 'client_secret_basic',
    },
    {
      client_id: 'other',
      client_secret: 'other-secret',
      redirect_uris: [`${ISSUER}/other/callback`],
      grant_types: ['authorization_code'],
      response_types: ['code'],
      token_endpoint_auth_method: 'client_secret_basic',
    },
  ],
  // Every client must use PKCE here: the appliance's authorization requests prove it does.
  pkce: { required: () => true },
  // Refresh tokens for clients allowed the refresh grant, as Keycloak or Entra ID issue them to
  // confidential web clients (the default wants offline_access with prompt=consent).
  issueRefreshToken: async (ctx, client) => client.grantTypeAllowed('refresh_token'),
  cookies: { keys: [crypto.randomBytes(16).toString('hex')] },
  claims: {
    openid: ['sub'],
    email: ['email', 'email_verified'],
    profile: ['name'],
    groups: ['groups'],
  },
  scopes: ['openid', 'offline_access', 'email', 'profile', 'groups'],
  features: { devInteractions: { enabled: true }, rpInitiatedLogout: { enabled: true } },
  async findAccount(ctx, sub) {
    const a = ACCOUNTS[sub];
    if (!a || disabled.has(sub)) return undefined;
    return {
      accountId: sub,
      async claims() {
        return { sub, email: a.email, email_verified: a.email_verified !== false, name: a.name, groups: a.groups || [] };
      },
    };
  },
});

// Post-processing of token responses: remember `other`'s ID token; swap it into the next
// authorization-code response to `meeting` when armed; count refreshes.
provider.use(async (ctx, next) => {
  await next();
  if (ctx.path !== '/token' || !ctx.body || typeof ctx.body !== 'object') return;
  const client = ctx.oidc && ctx.oidc.client && ctx.oidc.client.clientId;
  const grant = ctx.oidc && ctx.oidc.params && ctx.oidc.params.grant_type;
  if (grant === 'refresh_token' && ctx.body.access_token) refreshes += 1;
  if (!ctx.body.id_token) return;
  if (client === 'other') otherIdToken = ctx.body.id_token;
  if (client === 'meeting' && grant === 'authorization_code' && swapArmed && otherIdToken) {
    ctx.body = { ...ctx.body, id_token: otherIdToken };
    swapArmed = false;
    swapped += 1;
  }
});

const b64url = (b) => b.toString('base64url');

async function otherCallback(url, res) {
  const code = url.searchParams.get('code');
  const state = url.searchParams.get('state');
  const verifier = otherLogins.get(state);
  if (!code || !verifier) { res.writeHead(400); res.end('bad other callback'); return; }
  otherLogins.delete(state);
  const r = await fetch(`${ISSUER}/token`, {
    method: 'POST',
    headers: {
      'content-type': 'application/x-www-form-urlencoded',
      authorization: 'Basic ' + Buffer.from('other:other-secret').toString('base64'),
    },
    body: new URLSearchParams({ grant_type: 'authorization_code', code, redirect_uri: `${ISSUER}/other/callback`, code_verifier: verifier }),
  });
  const j = await r.json();
  if (!r.ok || !j.id_token) { res.writeHead(502); res.end('other token failed: ' + JSON.stringify(j)); return; }
  otherIdToken = j.id_token;
  res.writeHead(200, { 'content-type': 'text/html' });
  res.end('<!doctype html><title>other</title><p id="other-ok">The other client is signed in.</p>');
}

const handler = provider.callback();
const serve = (fn) => (TLS ? https.createServer(TLS, fn) : http.createServer(fn));
const server = serve((req, res) => {
  const url = new URL(req.url, ISSUER);
  const p = url.pathname;
  const json = (code, body) => {
    const text = JSON.stringify(body);
    res.writeHead(code, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
    res.end(text);
  };
  if (p.startsWith('/test/disable/') && req.method === 'POST') {
    disabled.add(decodeURIComponent(p.slice('/test/disable/'.length)));
    return json(200, { disabled: [...disabled] });
  }
  if (p.startsWith('/test/enable/') && req.method === 'POST') {
    disabled.delete(decodeURIComponent(p.slice('/test/enable/'.length)));
    return json(200, { disabled: [...disabled] });
  }
  if (p === '/test/swap-next' && req.method === 'POST') {
    if (!otherIdToken) return json(409, { error: 'no ID token of `other` yet: open /other/login first' });
    swapArmed = true;
    return json(200, { armed: true });
  }
  if (p === '/test/state') return json(200, { disabled: [...disabled], other_token: !!otherIdToken, swapped, refreshes });
  if (p === '/other/login') {
    const verifier = b64url(crypto.randomBytes(32));
    const challenge = b64url(crypto.createHash('sha256').update(verifier).digest());
    const state = b64url(crypto.randomBytes(16));
    otherLogins.set(state, verifier);
    const q = new URLSearchParams({
      client_id: 'other', response_type: 'code', scope: 'openid email', redirect_uri: `${ISSUER}/other/callback`,
      state, nonce: b64url(crypto.randomBytes(16)), code_challenge: challenge, code_challenge_method: 'S256',
    });
    res.writeHead(302, { location: `${ISSUER}/auth?${q}` });
    return res.end();
  }
  if (p === '/other/callback') {
    otherCallback(url, res).catch((e) => { res.writeHead(500); res.end(String(e)); });
    return;
  }
  handler(req, res);
});
server.listen(PORT, '127.0.0.1', () => console.log(`LISTENING ${ISSUER}`));
