// Types for web/static/rtc.js (the plain-JS meeting library, also served at /static/rtc.js).
export interface RemoteTrack {
  mid: string;
  participantId?: string;
  kind: 'audio' | 'video';
  source?: 'camera' | 'microphone' | 'screen' | 'screen_audio';
  track: MediaStreamTrack;
}
export interface Participant {
  participant_id: string;
  name: string;
  host: boolean;
  audio_muted: boolean;
  video_muted: boolean;
  hand_raised: boolean;
  role?: 'owner' | 'cohost' | 'participant' | 'guest';
  /** When the hand went up (unix ms; 0: down). */
  hand_at?: number;
}
/** A join stage as a performance mark, the first time it happens. */
export function mark(name: string): void;

export class MeetingClient extends EventTarget {
  constructor(opts: {
    signalUrl: string;
    token: string;
    iceServers?: RTCIceServer[];
    iceTransportPolicy?: RTCIceTransportPolicy;
    log?: (...a: unknown[]) => void;
    /** A signaling socket opened (and joined on) before this client: taken over. */
    early?: {
      ws: WebSocket; messages: string[]; closed: CloseEvent | null; failed: boolean;
      pc?: RTCPeerConnection; tracks?: RTCTrackEvent[]; offerIndex?: number; offer?: string | null; negotiation?: Promise<void> | null; negotiated?: boolean;
    } | null;
  });
  pc: RTCPeerConnection;
  participantId?: string;
  remote: Map<string, RemoteTrack>;
  participants: Map<string, Participant>;
  published: Map<string, RTCRtpTransceiver>;
  closed: boolean;
  iceRestarts: number;
  /** Server offers answered so far (the first may have been answered by boot.js). */
  negotiations: number;
  /** Whether this client took over a socket opened before it (`early`). */
  adopted: boolean;
  unsupported: Set<string>;
  closeReason?: string;
  connect(): Promise<any>;
  negotiate(): Promise<void>;
  restartIce(): Promise<void>;
  localUfrag(): string | null;
  sendOptional(msg: { type: string; [k: string]: unknown }): boolean;
  react(emoji: string): boolean;
  spotlight(participantId: string | null): boolean;
  transportStats(): Promise<{ rtt?: number; bytesSent?: number; bytesReceived?: number; outgoingBitrate?: number; timestamp: number } | null>;
  publish(track: MediaStreamTrack, source: string, opts?: { simulcast?: boolean; stream?: MediaStream; codec?: string; defer?: boolean }): Promise<void>;
  unpublish(source: string): Promise<void>;
  replaceTrack(source: string, track: MediaStreamTrack | null): Promise<void>;
  setLayer(mid: string, width: number, height: number): void;
  chat(text: string, to?: string): void;
  host(action: { action: string; [k: string]: unknown }): boolean;
  claimHost(): boolean;
  mute(kind: 'audio' | 'video', muted: boolean): void;
  raiseHand(raised: boolean): void;
  inboundStats(): Promise<Record<string, any>>;
  outboundStats(): Promise<any[]>;
  leave(): void;
}
