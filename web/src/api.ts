// The appliance's HTTP API (ARCHITECTURE.md section 4). The session is an HttpOnly cookie;
// a guest in a meeting adds its join token (header X-Join-Token) for notes and files.

export class ApiError extends Error {
  constructor(public status: number, public code: string, message: string, public retryAfter = 0,
    /** The whole JSON body of the error (a 409 on notes carries the current text). */
    public body: any = null) {
    super(message);
  }
}

export async function api<T = any>(method: string, path: string, body?: unknown, headers: Record<string, string> = {}): Promise<T> {
  const r = await fetch('/api/v1' + path, {
    method,
    credentials: 'same-origin',
    headers: body === undefined ? headers : { ...headers, 'content-type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  return answerOf<T>(r);
}

/** An API response's JSON, or its error as an ApiError. */
export async function answerOf<T = any>(r: Response): Promise<T> {
  if (r.status === 204) return undefined as T;
  let j: any = null;
  try { j = await r.json(); } catch { /* not JSON */ }
  if (!r.ok) {
    throw new ApiError(r.status, j?.error || 'http_' + r.status, j?.message || r.statusText, Number(r.headers.get('retry-after') || 0), j);
  }
  return j as T;
}

export interface User { id: number; email: string; display_name: string; can_create: boolean; admin?: boolean }
export interface Meeting {
  id: number; code: string; join_url: string; kind: 'instant' | 'scheduled'; title: string;
  begin_at: number; end_at: number; is_owner: boolean; invitees: string[];
  is_host?: boolean; cohosts?: string[]; lobby?: 'off' | 'guests' | 'everyone'; has_passcode?: boolean;
  passcode?: string; screen_share?: 'everyone' | 'hosts'; chat_in_notes?: boolean; guests_allowed?: boolean;
}
export interface JoinAnswer {
  participant_id: string; token: string; display_name: string; host: boolean;
  role?: 'owner' | 'cohost' | 'participant' | 'guest'; lobby?: boolean; screens_hosts_only?: boolean;
  may_claim_host?: boolean;
  meeting: { id: number; code: string; title: string; kind: string };
  sfu: { signal_url: string }; ice_servers: RTCIceServer[];
}

export async function me(): Promise<User | null> {
  try { return await api<User>('GET', '/me'); } catch (e) {
    if (e instanceof ApiError && e.status === 401) return null;
    throw e;
  }
}
