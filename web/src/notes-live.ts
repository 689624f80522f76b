// The live notes document: a Yjs document kept in sync with the server's copy over the notes
// WebSocket (src/roles/apiserver/notes/live.rs: the y-sync protocol, plus JSON acks), and
// the awareness states (who is here, where their cursor is). Loaded when the notes start,
// as its own chunk; the editor (notes-editor.ts) is another, loaded when the notes are shown.
//
// Durability as the user sees it: every change we send is acknowledged by the server once it
// is stored; "saved" means every change made here was acknowledged. While disconnected,
// changes stay in this document; on reconnect the sync sends the server whatever it lacks
// (and brings what we lack), so offline edits merge.
import * as Y from 'yjs';
import * as awarenessProtocol from 'y-protocols/awareness';
import * as encoding from 'lib0/encoding';
import * as decoding from 'lib0/decoding';

const MSG_SYNC = 0, MSG_AWARENESS = 1, MSG_QUERY_AWARENESS = 3;
const STEP1 = 0, STEP2 = 1, UPDATE = 2;
/** Local changes are sent at most this often (a burst of keystrokes is one message). */
const BATCH_MS = 40;

export type LiveState = 'connecting' | 'saving' | 'saved' | 'offline' | 'error';

export interface LiveOpts {
  meetingId: number;
  joinToken?: string | null;
}

/** Colours for other people's cursors (readable on white and on the dark theme). */
const COLOURS = ['#1f77b4', '#d62728', '#2ca02c', '#9467bd', '#e377c2', '#8c564b', '#17becf', '#bcbd22'];

export class NotesLive extends EventTarget {
  readonly doc = new Y.Doc();
  readonly text = this.doc.getText('notes');
  readonly awareness = new awarenessProtocol.Awareness(this.doc);
  /** The server's version (number of stored changes) as of the last ack or hello. */
  version = 0;
  name = '';
  state: LiveState = 'connecting';
  /** Why the server closed the connection the last time (when it said). */
  closedReason = '';
  closedMessage = '';
  private ws: WebSocket | null = null;
  private sent = 0;
  private acked = 0;
  private synced = false;
  private queued: Uint8Array[] = [];
  private batchTimer = 0;
  private retryTimer = 0;
  private attempt = 0;
  private pingTimer = 0;
  private closed = false;
  private fatal = false;
  /** Changes from the server kept back while an input method composes (see hold()). */
  private held: Uint8Array[] | null = null;
  private holdTimer = 0;

  constructor(private o: LiveOpts) {
    super();
    this.doc.on('update', (u: Uint8Array, origin: unknown) => {
      if (origin === this) return; // from the server
      this.queued.push(u);
      if (!this.batchTimer) this.batchTimer = window.setTimeout(() => this.flush(), BATCH_MS);
      this.setState();
      this.dispatchEvent(new Event('local'));
    });
    this.awareness.on('update', ({ added, updated, removed }: { added: number[]; updated: number[]; removed: number[] }, origin: unknown) => {
      if (origin !== 'local') return;
      const changed = added.concat(updated, removed);
      this.sendMessage((e) => {
        encoding.writeVarUint(e, MSG_AWARENESS);
        encoding.writeVarUint8Array(e, awarenessProtocol.encodeAwarenessUpdate(this.awareness, changed));
      });
    });
    this.text.observe((_ev, tr) => { if (tr.origin === this) this.dispatchEvent(new Event('remote')); });
  }

  /** A guest rejoined: from now on, its new token. */
  setJoinToken(token: string | null): void {
    if (token === this.o.joinToken) return;
    this.o.joinToken = token;
    this.fatal = false;
    this.reconnectNow();
  }

  /** While `on`, changes from the server are kept back and applied when released: the
   *  editor asks for this during an input method's composition, so that the shared text
   *  and the editor stay equal except for the composing text (others' cursors, computed
   *  from the shared text, then always fall inside the editor's text). Released after 20 s
   *  at the latest; the editor copes with changes arriving anyway. */
  hold(on: boolean): void {
    clearTimeout(this.holdTimer);
    if (on) {
      this.held ??= [];
      this.holdTimer = window.setTimeout(() => this.hold(false), 20_000);
      return;
    }
    const held = this.held;
    this.held = null;
    if (held?.length) Y.applyUpdate(this.doc, held.length === 1 ? held[0] : Y.mergeUpdates(held), this);
  }

  /** Every change made here is stored on the server. */
  get saved(): boolean { return this.synced && this.acked === this.sent && this.queued.length === 0; }

  start(): void { this.connect(); }

  close(): void {
    this.closed = true;
    clearTimeout(this.retryTimer);
    clearInterval(this.pingTimer);
    this.flush();
    awarenessProtocol.removeAwarenessStates(this.awareness, [this.doc.clientID], 'local');
    if (this.ws) { this.ws.onclose = null; this.ws.close(); this.ws = null; }
  }

  /** Drops the connection and connects again at once (tests and token changes). */
  reconnectNow(): void {
    clearTimeout(this.retryTimer);
    if (this.ws) { const ws = this.ws; this.ws = null; ws.onclose = null; ws.close(); this.onDisconnect(); }
    this.attempt = 0;
    this.connect();
  }

  /** Sets who we are in the awareness (name from the server's hello, colour from our id). */
  private announce(): void {
    const colour = COLOURS[this.doc.clientID % COLOURS.length];
    this.awareness.setLocalStateField('user', { name: this.name, color: colour, colorLight: colour + '33' });
  }

  private setState(next?: LiveState): void {
    const before = this.state;
    if (next) this.state = next;
    else if (this.state !== 'error' && this.state !== 'offline' && this.state !== 'connecting') this.state = this.saved ? 'saved' : 'saving';
    if (before !== this.state || !next) this.dispatchEvent(new Event('state'));
  }

  private sendMessage(write: (e: encoding.Encoder) => void): boolean {
    const ws = this.ws;
    if (!ws || ws.readyState !== WebSocket.OPEN) return false;
    const e = encoding.createEncoder();
    write(e);
    ws.send(encoding.toUint8Array(e));
    return true;
  }

  /** Sends the changes made here since the last message (one update). */
  flush(): void {
    clearTimeout(this.batchTimer);
    this.batchTimer = 0;
    if (!this.queued.length || !this.synced) return;
    const update = this.queued.length === 1 ? this.queued[0] : Y.mergeUpdates(this.queued);
    if (this.sendMessage((e) => { encoding.writeVarUint(e, MSG_SYNC); encoding.writeVarUint(e, UPDATE); encoding.writeVarUint8Array(e, update); })) {
      this.queued = [];
      this.sent++;
    }
    this.setState();
  }

  private connect(): void {
    if (this.closed || this.fatal) return;
    const q = this.o.joinToken ? `?join_token=${encodeURIComponent(this.o.joinToken)}` : '';
    const ws = new WebSocket(`${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}/api/v1/meetings/${this.o.meetingId}/notes/live${q}`);
    ws.binaryType = 'arraybuffer';
    this.ws = ws;
    this.sent = 0;
    this.acked = 0;
    this.synced = false;
    this.setState(this.state === 'error' ? 'error' : 'connecting');
    ws.onopen = () => {
      this.attempt = 0;
      clearInterval(this.pingTimer);
      this.pingTimer = window.setInterval(() => { if (ws.readyState === WebSocket.OPEN) ws.send('{"type":"ping"}'); }, 25_000);
    };
    ws.onmessage = (ev) => {
      if (this.ws !== ws) return;
      if (typeof ev.data === 'string') this.onText(ev.data);
      else this.onBinary(new Uint8Array(ev.data as ArrayBuffer));
    };
    ws.onclose = () => {
      if (this.ws !== ws) return;
      this.ws = null;
      this.onDisconnect();
      if (this.closed || this.fatal) return;
      this.attempt++;
      const wait = this.closedReason === 'reload' && this.attempt < 3 ? 100
        : Math.min(10_000, 500 * 2 ** this.attempt) * (0.75 + Math.random() / 2);
      this.retryTimer = window.setTimeout(() => this.connect(), wait);
    };
  }

  private onDisconnect(): void {
    clearInterval(this.pingTimer);
    this.synced = false;
    // Others' cursors are stale without the connection.
    const others = [...this.awareness.getStates().keys()].filter((c) => c !== this.doc.clientID);
    awarenessProtocol.removeAwarenessStates(this.awareness, others, this);
    // What was sent but not acknowledged is sent again by the next sync (step 2).
    this.queued = [];
    this.sent = this.acked = 0;
    if (!this.closed && this.state !== 'error') this.setState('offline');
    else this.dispatchEvent(new Event('state'));
  }

  private onText(data: string): void {
    let m: any;
    try { m = JSON.parse(data); } catch { return; }
    if (m.type === 'hello') {
      this.version = m.version;
      this.name = m.name;
      this.closedReason = this.closedMessage = '';
      this.announce();
      // Our state vector: the server answers with what we lack.
      this.sendMessage((e) => {
        encoding.writeVarUint(e, MSG_SYNC);
        encoding.writeVarUint(e, STEP1);
        encoding.writeVarUint8Array(e, Y.encodeStateVector(this.doc));
      });
    } else if (m.type === 'ack') {
      this.acked = m.n;
      this.version = m.version;
      this.setState();
      this.dispatchEvent(new Event('ack'));
    } else if (m.type === 'closed') {
      this.closedReason = m.reason;
      this.closedMessage = m.message;
      // Not allowed (any more): retrying with the same credentials cannot help; a guest who
      // rejoins comes back through setJoinToken.
      this.fatal = ['not_allowed', 'bad_auth', 'left_meeting'].includes(m.reason);
      this.setState('error');
    }
  }

  private onBinary(buf: Uint8Array): void {
    const d = decoding.createDecoder(buf);
    while (decoding.hasContent(d)) {
      const type = decoding.readVarUint(d);
      if (type === MSG_SYNC) {
        const step = decoding.readVarUint(d);
        const payload = decoding.readVarUint8Array(d);
        if (step === STEP1) {
          // The server's state vector: send what it lacks (our offline edits, or nothing).
          const diff = Y.encodeStateAsUpdate(this.doc, payload);
          this.sendMessage((e) => { encoding.writeVarUint(e, MSG_SYNC); encoding.writeVarUint(e, STEP2); encoding.writeVarUint8Array(e, diff); });
          this.sent++;
          this.queued = []; // included in the diff
          this.synced = true;
          if (this.state !== 'error') this.state = 'saving';
          this.setState();
          this.awareness.setLocalState(this.awareness.getLocalState());
        } else if (this.held) {
          this.held.push(payload);
        } else {
          Y.applyUpdate(this.doc, payload, this);
        }
      } else if (type === MSG_AWARENESS) {
        awarenessProtocol.applyAwarenessUpdate(this.awareness, decoding.readVarUint8Array(d), this);
      } else if (type === MSG_QUERY_AWARENESS) {
        this.sendMessage((e) => {
          encoding.writeVarUint(e, MSG_AWARENESS);
          encoding.writeVarUint8Array(e, awarenessProtocol.encodeAwarenessUpdate(this.awareness, [...this.awareness.getStates().keys()]));
        });
      } else {
        return; // unknown: ignore the rest
      }
    }
  }
}
