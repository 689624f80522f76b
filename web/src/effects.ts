// The local camera and microphone, and what is done to them before they are sent:
// noise suppression (RNNoise compiled to WebAssembly, from @sapphi-red/web-noise-suppressor,
// as an AudioWorklet) and background blur / replace (MediaPipe's selfie segmentation model
// from @mediapipe/selfie_segmentation, run by @mediapipe/tasks-vision in a worker, see
// seg-worker.ts). Everything is served from /assets (embedded in the binary): no CDN.
//
// `raw` is what getUserMedia gave; `audio` / `video` are the tracks to send and show (the
// processed ones while an effect is on); `monitor` is a clone of the raw microphone that is
// never disabled, so the level meter and the "you are talking while muted" hint keep hearing.
import { RnnoiseWorkletNode, loadRnnoise } from '@sapphi-red/web-noise-suppressor';
import rnnoiseWorklet from '@sapphi-red/web-noise-suppressor/rnnoiseWorklet.js?url';
import rnnoiseWasm from '@sapphi-red/web-noise-suppressor/rnnoise.wasm?url';
import rnnoiseSimdWasm from '@sapphi-red/web-noise-suppressor/rnnoise_simd.wasm?url';

export type Background = 'none' | 'blur' | 'replace';
export interface Effects { noise: boolean; background: Background }

const KEY = 'effects';

/** The effects this browser used last (noise suppression on by default). */
export function loadEffects(): Effects {
  try {
    const v = JSON.parse(localStorage.getItem(KEY) || 'null');
    if (v && typeof v.noise === 'boolean' && ['none', 'blur', 'replace'].includes(v.background)) return { noise: v.noise, background: v.background };
  } catch { /* unreadable: defaults */ }
  return { noise: true, background: 'none' };
}

export function saveEffects(e: Effects): void {
  localStorage.setItem(KEY, JSON.stringify(e));
}

let shared: AudioContext | null = null;
/** One 48 kHz audio context for the page (RNNoise works on 48 kHz frames). */
export function audioContext(): AudioContext {
  if (!shared || shared.state === 'closed') shared = new AudioContext({ sampleRate: 48000, latencyHint: 'interactive' });
  if (shared.state === 'suspended') shared.resume().catch(() => {});
  return shared;
}
// A page without autoplay permission starts the context suspended: any click resumes it.
addEventListener('pointerdown', () => { if (shared?.state === 'suspended') shared.resume().catch(() => {}); }, true);

let rnnoiseBinary: Promise<ArrayBuffer> | null = null;
let workletAdded: Promise<void> | null = null;

interface NoisePipe { src: MediaStreamAudioSourceNode; node: RnnoiseWorkletNode; dest: MediaStreamAudioDestinationNode }
interface BgPipe { worker: Worker; track: MediaStreamTrack; stop: () => void }

/** Microphone constraints: the browser's own noise suppression stays off (ours replaces it,
 *  and "off" means the microphone as it is). */
function audioConstraints(deviceId?: string): MediaTrackConstraints {
  const c: MediaTrackConstraints = { noiseSuppression: false, echoCancellation: true, autoGainControl: true };
  if (deviceId) c.deviceId = { exact: deviceId };
  return c;
}

function videoConstraints(deviceId?: string): MediaTrackConstraints {
  const c: MediaTrackConstraints = { width: { ideal: 1280 }, height: { ideal: 720 }, frameRate: { ideal: 24 } };
  if (deviceId) c.deviceId = { exact: deviceId };
  return c;
}

export class LocalMedia extends EventTarget {
  raw: MediaStream;
  audio: MediaStreamTrack | null = null;
  video: MediaStreamTrack | null = null;
  monitor: MediaStreamTrack | null = null;
  effects: Effects;
  /** Why an effect could not start (shown to the person), if it failed. */
  failure: string | null = null;
  private noise: NoisePipe | null = null;
  private bg: BgPipe | null = null;
  private applying: Promise<void> = Promise.resolve();

  private constructor(raw: MediaStream, effects: Effects) {
    super();
    this.raw = raw;
    this.effects = effects;
    this.reset();
  }

  /** Camera and microphone (or only the microphone, or nothing: null), with the effects
   *  applied once `effectsFrom` resolves true (the deep link holds them until the join's
   *  first picture: their WebAssembly, audio worklet and worker would compete with it for
   *  the CPU; false: the room ended first, and they are not started at all). */
  static async open(audioId?: string, videoId?: string, effects = loadEffects(), effectsFrom: Promise<boolean> = Promise.resolve(true)): Promise<LocalMedia | null> {
    let raw: MediaStream | null = null;
    try { raw = await navigator.mediaDevices.getUserMedia({ audio: audioConstraints(audioId), video: videoConstraints(videoId) }); } catch {
      try { raw = await navigator.mediaDevices.getUserMedia({ audio: audioConstraints(audioId) }); } catch { return null; }
    }
    performance.mark('devices-open');
    const m = new LocalMedia(raw, effects);
    if (!(await effectsFrom)) return m;
    await m.apply(effects);
    performance.mark('effects-on');
    return m;
  }

  get rawAudio(): MediaStreamTrack | null { return this.raw.getAudioTracks()[0] || null; }
  get rawVideo(): MediaStreamTrack | null { return this.raw.getVideoTracks()[0] || null; }

  private reset(): void {
    this.audio = this.rawAudio;
    this.video = this.rawVideo;
    this.monitor?.stop();
    this.monitor = this.rawAudio ? this.rawAudio.clone() : null;
    if (this.monitor) this.monitor.enabled = true;
  }

  /** Switches the effects on or off; `tracks` fires when `audio` or `video` changed. */
  apply(effects: Effects): Promise<void> {
    this.applying = this.applying.then(() => this.applyNow(effects)).catch((e) => { this.failure = String(e?.message || e); });
    return this.applying;
  }

  private async applyNow(effects: Effects): Promise<void> {
    this.effects = { ...effects };
    saveEffects(this.effects);
    this.failure = null;
    const before = { audio: this.audio, video: this.video };
    // Audio.
    if (effects.noise && this.rawAudio && !this.noise) {
      try { this.noise = await startNoise(this.rawAudio); } catch (e) { this.failure = `noise suppression: ${(e as Error).message}`; }
    } else if (!effects.noise && this.noise) {
      stopNoise(this.noise);
      this.noise = null;
    }
    const audio = this.noise ? this.noise.dest.stream.getAudioTracks()[0] : this.rawAudio;
    if (audio && this.audio && audio !== this.audio) audio.enabled = this.audio.enabled;
    this.audio = audio;
    // Video.
    if (effects.background !== 'none' && this.rawVideo) {
      if (!this.bg) {
        try { this.bg = await startBackground(this.rawVideo, effects.background); } catch (e) { this.failure = `background: ${(e as Error).message}`; }
      } else this.bg.worker.postMessage({ type: 'mode', mode: effects.background });
    } else if (this.bg) {
      this.bg.stop();
      this.bg = null;
    }
    const video = this.bg ? this.bg.track : this.rawVideo;
    if (video && this.video && video !== this.video) video.enabled = this.video.enabled;
    this.video = video;
    if (before.audio !== this.audio || before.video !== this.video) this.dispatchEvent(new Event('tracks'));
  }

  /** Another camera or microphone: the effects go on with the new device. */
  async switchDevice(kind: 'audio' | 'video', deviceId: string): Promise<void> {
    const got = await navigator.mediaDevices.getUserMedia(kind === 'audio' ? { audio: audioConstraints(deviceId) } : { video: videoConstraints(deviceId) });
    const track = got.getTracks()[0];
    const old = kind === 'audio' ? this.rawAudio : this.rawVideo;
    const enabled = kind === 'audio' ? this.audio?.enabled ?? true : this.video?.enabled ?? true;
    if (kind === 'audio' && this.noise) { stopNoise(this.noise); this.noise = null; }
    if (kind === 'video' && this.bg) { this.bg.stop(); this.bg = null; }
    if (old) { this.raw.removeTrack(old); old.stop(); }
    this.raw.addTrack(track);
    if (kind === 'audio') { this.monitor?.stop(); this.monitor = track.clone(); this.audio = track; } else this.video = track;
    track.enabled = enabled;
    await this.apply(this.effects);
    this.dispatchEvent(new Event('tracks'));
  }

  stop(): void {
    if (this.noise) stopNoise(this.noise);
    this.bg?.stop();
    this.noise = null;
    this.bg = null;
    this.monitor?.stop();
    this.raw.getTracks().forEach((t) => t.stop());
  }
}

async function startNoise(track: MediaStreamTrack): Promise<NoisePipe> {
  const ctx = audioContext();
  rnnoiseBinary ??= loadRnnoise({ url: rnnoiseWasm, simdUrl: rnnoiseSimdWasm });
  workletAdded ??= ctx.audioWorklet.addModule(rnnoiseWorklet);
  const [wasmBinary] = await Promise.all([rnnoiseBinary, workletAdded]);
  const src = ctx.createMediaStreamSource(new MediaStream([track]));
  const node = new RnnoiseWorkletNode(ctx, { wasmBinary, maxChannels: 1 });
  const dest = ctx.createMediaStreamDestination();
  dest.channelCount = 1;
  src.connect(node).connect(dest);
  return { src, node, dest };
}

function stopNoise(p: NoisePipe): void {
  p.src.disconnect();
  p.node.disconnect();
  p.node.destroy();
  p.dest.stream.getTracks().forEach((t) => t.stop());
}

/** Frames go from the camera to the worker and back as a new track, all as streams
 *  (MediaStreamTrackProcessor / MediaStreamTrackGenerator, transferred to the worker). */
async function startBackground(track: MediaStreamTrack, mode: Background): Promise<BgPipe> {
  const W = window as any;
  if (typeof W.MediaStreamTrackProcessor !== 'function' || typeof W.MediaStreamTrackGenerator !== 'function') {
    throw new Error('this browser cannot process video frames');
  }
  const processor = new W.MediaStreamTrackProcessor({ track: track.clone(), maxBufferSize: 1 });
  const generator = new W.MediaStreamTrackGenerator({ kind: 'video' });
  const worker = new Worker(new URL('./seg-worker.ts', import.meta.url), { name: 'background' });
  const ready = new Promise<void>((resolve, reject) => {
    worker.onmessage = (e) => {
      if (e.data.type === 'ready') resolve();
      else if (e.data.type === 'error') reject(new Error(e.data.message));
      else if (e.data.type === 'stats') (window as any).backgroundStats = e.data;
    };
    worker.onerror = (e) => reject(new Error(e.message || 'the background worker failed'));
  });
  worker.postMessage({ type: 'start', readable: processor.readable, writable: generator.writable, mode }, [processor.readable, generator.writable]);
  try { await ready; } catch (e) { worker.terminate(); generator.stop(); throw e; }
  const out = generator as MediaStreamTrack;
  return {
    worker, track: out,
    stop: () => { worker.postMessage({ type: 'stop' }); setTimeout(() => worker.terminate(), 500); out.stop(); },
  };
}
