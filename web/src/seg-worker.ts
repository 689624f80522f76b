// Background blur / replace, off the page's main thread. Reads camera frames from a stream
// the page transferred, finds the person with MediaPipe's selfie segmentation model
// (@mediapipe/selfie_segmentation's landscape model, 256×144, run by @mediapipe/tasks-vision
// on the CPU), and writes composed frames to the page's generator track.
//
// CPU budget: at most 15 frames a second are composed (others are dropped), at most
// 640×360: one inference on 256×144 plus a few 2D canvas draws per frame. The measured cost
// is in BENCHMARKS.md ("Meeting room"); `stats` messages report ms per frame.
import { ImageSegmenter } from '@mediapipe/tasks-vision';
import wasmLoader from '@mediapipe/tasks-vision/vision_wasm_internal.js?url';
import wasmBinary from '@mediapipe/tasks-vision/vision_wasm_internal.wasm?url';
import model from '@mediapipe/selfie_segmentation/selfie_segmentation_landscape.tflite?url';

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
  const seg = await ImageSegmenter.createFromOptions(
    { wasmLoaderPath: new URL(wasmLoader, self.location.href).href, wasmBinaryPath: new URL(wasmBinary, self.location.href).href },
    { baseOptions: { modelAssetPath: new URL(model, self.location.href).href, delegate: 'CPU' }, runningMode: 'VIDEO', outputConfidenceMasks: true, outputCategoryMask: false },
  );
  post({ type: 'ready' });
  const reader = readable.getReader();
  const writer = writable.getWriter();
  let out: OffscreenCanvas | null = null, ctx: OffscreenCanvasRenderingContext2D | null = null;
  let small: OffscreenCanvas | null = null, sctx: OffscreenCanvasRenderingContext2D | null = null;
  let maskC: OffscreenCanvas | null = null, mctx: OffscreenCanvasRenderingContext2D | null = null;
  let back: OffscreenCanvas | null = null;
  let maskData: ImageData | null = null;
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
    let conf: Float32Array | null = null, mw = 0, mh = 0;
    seg.segmentForVideo(frame, frame.timestamp / 1000, (r) => {
      const mask = r.confidenceMasks?.[0];
      if (mask) { conf = mask.getAsFloat32Array().slice(); mw = mask.width; mh = mask.height; }
      r.close();
    });
    const c = ctx!;
    if (conf) {
      if (!maskC || maskC.width !== mw || maskC.height !== mh) { maskC = new OffscreenCanvas(mw, mh); mctx = maskC.getContext('2d')!; maskData = new ImageData(mw, mh); }
      const px = maskData!.data, cf = conf as Float32Array;
      for (let i = 0; i < cf.length; i++) px[i * 4 + 3] = cf[i] * 255;
      mctx!.putImageData(maskData!, 0, 0);
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
    } else {
      c.globalCompositeOperation = 'copy';
      c.drawImage(frame, 0, 0, W, H);
    }
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
  seg.close();
}
