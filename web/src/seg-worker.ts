// Background blur / replace, off the page's main thread. Reads camera frames from a stream
// the page transferred, finds the person with MediaPipe's selfie segmentation model (the
// landscape one, 256×144 in, a person-confidence mask out) run by TensorFlow Lite compiled
// to WebAssembly (SIMD), both shipped in the npm package @twilio/video-processors (BSD-3;
// only its model and wasm are used), and writes composed frames to the page's generator.
// Pure CPU: no WebGL needed.
//
// CPU budget: at most 15 frames a second are composed (others are dropped), at most
// 640×360: one inference on 256×144 plus a few 2D canvas draws per frame. The measured cost
// is in BENCHMARKS.md ("Meeting room"); `stats` messages report ms per frame.
import tfliteLoader from '@twilio/video-processors/dist/build/tflite-simd-1-0-0.js?url';
import tfliteWasm from '@twilio/video-processors/dist/build/tflite-simd-1-0-0.wasm?url';
import model from '@twilio/video-processors/dist/build/selfie_segmentation_landscape.tflite?url';

interface TFLite {
  HEAPU8: Uint8Array; HEAPF32: Float32Array;
  _getModelBufferMemoryOffset(): number; _loadModel(size: number): number;
  _getInputMemoryOffset(): number; _getInputWidth(): number; _getInputHeight(): number;
  _getOutputMemoryOffset(): number; _runInference(): void;
}

/** Loads the TFLite runtime and the model; returns a function that segments an image. */
async function segmenter(): Promise<{ w: number; h: number; run: (rgba: Uint8ClampedArray, mask: Uint8ClampedArray) => void }> {
  const abs = (u: string) => new URL(u, self.location.href).href;
  (self as any).importScripts(abs(tfliteLoader));
  const tf: TFLite = await (self as any).createTwilioTFLiteSIMDModule({ locateFile: () => abs(tfliteWasm) });
  const bytes = new Uint8Array(await (await fetch(abs(model))).arrayBuffer());
  tf.HEAPU8.set(bytes, tf._getModelBufferMemoryOffset());
  tf._loadModel(bytes.byteLength);
  const w = tf._getInputWidth(), h = tf._getInputHeight();
  const n = w * h;
  return {
    w, h,
    run(rgba, mask) {
      const inp = tf._getInputMemoryOffset() / 4;
      const f = tf.HEAPF32;
      for (let i = 0; i < n; i++) { f[inp + i * 3] = rgba[i * 4] / 255; f[inp + i * 3 + 1] = rgba[i * 4 + 1] / 255; f[inp + i * 3 + 2] = rgba[i * 4 + 2] / 255; }
      tf._runInference();
      const out = tf._getOutputMemoryOffset() / 4;
      const g = tf.HEAPF32;
      for (let i = 0; i < n; i++) mask[i * 4 + 3] = g[out + i] * 255;
    },
  };
}

type Mode = 'blur' | 'replace';
const MAX_FPS = 15;
const MAX_W = 640;

let mode: Mode = 'blur';
let stopped = false;

function post(m: unknown): void { (self as unknown as Worker).postMessage(m); }

self.onmessage = async (e: MessageEvent) => {
  const m = e.data;
  if (m.type === 'mode') mode = m.mode;
  else if (m.type === 'stop') stopped = true;
  else if (m.type === 'start') {
    mode = m.mode;
    try {
      await run(m.readable as ReadableStream<VideoFrame>, m.writable as WritableStream<VideoFrame>);
    } catch (err) {
      post({ type: 'error', message: String((err as Error)?.message || err) });
    }
  }
};

/** A calm generated backdrop for "replace" (no image file to ship). */
function backdrop(w: number, h: number): OffscreenCanvas {
  const c = new OffscreenCanvas(w, h);
  const g = c.getContext('2d')!;
  const grad = g.createLinearGradient(0, 0, w, h);
  grad.addColorStop(0, '#1d3b5a');
  grad.addColorStop(1, '#3f6f7a');
  g.fillStyle = grad;
  g.fillRect(0, 0, w, h);
  g.fillStyle = '#ffffff14';
  for (let i = 0; i < 6; i++) { g.beginPath(); g.arc(w * (0.1 + i * 0.17), h * (0.3 + (i % 2) * 0.4), h * 0.25, 0, Math.PI * 2); g.fill(); }
  return c;
}

async function run(readable: ReadableStream<VideoFrame>, writable: WritableStream<VideoFrame>): Promise<void> {
  const seg = await segmenter();
  post({ type: 'ready', model: [seg.w, seg.h] });
  const reader = readable.getReader();
  const writer = writable.getWriter();
  let out: OffscreenCanvas | null = null, ctx: OffscreenCanvasRenderingContext2D | null = null;
  let small: OffscreenCanvas | null = null, sctx: OffscreenCanvasRenderingContext2D | null = null;
  const inC = new OffscreenCanvas(seg.w, seg.h);
  const ictx = inC.getContext('2d', { willReadFrequently: true })!;
  const maskC = new OffscreenCanvas(seg.w, seg.h);
  const mctx = maskC.getContext('2d')!;
  const maskData = new ImageData(seg.w, seg.h);
  let back: OffscreenCanvas | null = null;
  let last = -1e9, busy = 0, n = 0, since = performance.now();
  while (!stopped) {
    const { value: frame, done } = await reader.read();
    if (done || !frame) break;
    const now = performance.now();
    if (now - last < 1000 / MAX_FPS - 2) { frame.close(); continue; }
    last = now;
    const scale = Math.min(1, MAX_W / frame.displayWidth);
    const W = Math.round(frame.displayWidth * scale), H = Math.round(frame.displayHeight * scale);
    if (!out || out.width !== W || out.height !== H) {
      out = new OffscreenCanvas(W, H); ctx = out.getContext('2d')!;
      small = new OffscreenCanvas(Math.max(1, W >> 3), Math.max(1, H >> 3)); sctx = small.getContext('2d')!;
      back = backdrop(W, H);
    }
    const t0 = performance.now();
    ictx.drawImage(frame, 0, 0, seg.w, seg.h);
    seg.run(ictx.getImageData(0, 0, seg.w, seg.h).data, maskData.data);
    mctx.putImageData(maskData, 0, 0);
    const c = ctx!;
    // 1. the person: the mask (softened), then the frame drawn only where the mask is.
    c.globalCompositeOperation = 'copy';
    c.filter = 'blur(2px)';
    c.drawImage(maskC, 0, 0, W, H);
    c.filter = 'none';
    c.globalCompositeOperation = 'source-in';
    c.drawImage(frame, 0, 0, W, H);
    // 2. behind the person: the frame shrunk 8× and blown up blurred, or the backdrop.
    c.globalCompositeOperation = 'destination-over';
    if (mode === 'blur') {
      sctx!.drawImage(frame, 0, 0, small!.width, small!.height);
      c.filter = 'blur(4px)';
      c.drawImage(small!, 0, 0, W, H);
      c.filter = 'none';
    } else c.drawImage(back!, 0, 0);
    c.globalCompositeOperation = 'source-over';
    const made = new VideoFrame(out!, { timestamp: frame.timestamp });
    frame.close();
    busy += performance.now() - t0;
    n++;
    await writer.write(made);
    if (performance.now() - since > 2000) {
      post({ type: 'stats', fps: (n * 1000) / (performance.now() - since), msPerFrame: busy / Math.max(1, n), width: W, height: H });
      n = 0; busy = 0; since = performance.now();
    }
  }
  reader.cancel().catch(() => {});
  writer.close().catch(() => {});
}
