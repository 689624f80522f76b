// Connection details (the room's "i" panel) and the network-quality grade of each tile.
// Figures come from the browser's own WebRTC statistics, differenced between two reads;
// the server's `quality` reports (when this server sends them) grade the tiles instead.
import type { MeetingClient } from '../static/rtc.js';

export interface Sample { at: number; inbound: Record<string, any>; outbound: any[]; transport: Awaited<ReturnType<MeetingClient['transportStats']>> }

export interface Details {
  rttMs: number | null;
  sendKbps: number;
  recvKbps: number;
  /** Percent of packets lost on what this browser receives, over the last interval. */
  lossPct: number;
  /** Per received video: who, codec, size, frames per second. */
  videos: { pid?: string; source?: string; codec?: string; w?: number; h?: number; fps?: number }[];
  /** The simulcast layers this browser sends (rid → size), the active ones. */
  layers: { rid?: string; w?: number; h?: number; codec?: string; limited?: string }[];
  audioCodec?: string;
  /** Per participant (by received media): loss percent over the interval, for tile grades. */
  lossBy: Record<string, number>;
}

export async function sample(c: MeetingClient): Promise<Sample> {
  const [inbound, outbound, transport] = await Promise.all([c.inboundStats(), c.outboundStats(), c.transportStats()]);
  return { at: performance.now(), inbound, outbound, transport };
}

export function diff(a: Sample | null, b: Sample): Details {
  const dt = a ? Math.max(0.001, (b.at - a.at) / 1000) : 1;
  const kbps = (x?: number, y?: number) => (a && x !== undefined && y !== undefined ? Math.max(0, ((y - x) * 8) / dt / 1000) : 0);
  let lost = 0, got = 0;
  const lossBy: Record<string, number> = {};
  const per: Record<string, [number, number]> = {};
  for (const [mid, s] of Object.entries(b.inbound)) {
    const o = a?.inbound[mid];
    const dl = Math.max(0, (s.packetsLost || 0) - (o?.packetsLost || 0));
    const dr = Math.max(0, (s.packetsReceived || 0) - (o?.packetsReceived || 0));
    lost += dl; got += dr;
    if (s.participantId) { const p = (per[s.participantId] ||= [0, 0]); p[0] += dl; p[1] += dr; }
  }
  for (const [pid, [l, r]] of Object.entries(per)) lossBy[pid] = l + r > 0 ? (100 * l) / (l + r) : 0;
  const videos = Object.values(b.inbound).filter((s: any) => s.kind === 'video' && s.framesDecoded > 0)
    .map((s: any) => ({ pid: s.participantId, source: s.source, codec: s.codec, w: s.frameWidth, h: s.frameHeight, fps: s.framesPerSecond }));
  const layers = b.outbound.filter((s) => s.kind === 'video' && s.active !== false && (s.frameWidth || 0) > 0)
    .map((s) => ({ rid: s.rid, w: s.frameWidth, h: s.frameHeight, codec: s.codec, limited: s.qualityLimitationReason }));
  const audioCodec = Object.values(b.inbound).find((s: any) => s.kind === 'audio' && s.codec)?.codec
    || b.outbound.find((s) => s.kind === 'audio')?.codec;
  return {
    rttMs: b.transport?.rtt !== undefined ? Math.round(b.transport.rtt * 1000) : null,
    sendKbps: kbps(a?.transport?.bytesSent, b.transport?.bytesSent),
    recvKbps: kbps(a?.transport?.bytesReceived, b.transport?.bytesReceived),
    lossPct: lost + got > 0 ? (100 * lost) / (lost + got) : 0,
    videos, layers, audioCodec, lossBy,
  };
}

/** 3 good, 2 fair, 1 poor, 0 nothing received (the server's QualityReport::level_for). */
export function grade(lossPct: number, rttMs: number | null, receiving = true): number {
  if (!receiving) return 0;
  const rtt = rttMs ?? 0;
  return lossPct < 2 && rtt < 200 ? 3 : lossPct < 8 && rtt < 500 ? 2 : 1;
}
