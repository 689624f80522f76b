// Audio levels in the page: the pre-join microphone meter, "you are talking while muted",
// and who is speaking on each tile (received audio). One AnalyserNode per track, read by
// the caller's timer; nothing here is sent anywhere.
import { audioContext } from './effects';

export class Level {
  private src: MediaStreamAudioSourceNode;
  private an: AnalyserNode;
  private buf: Float32Array<ArrayBuffer>;

  constructor(track: MediaStreamTrack) {
    const ctx = audioContext();
    this.src = ctx.createMediaStreamSource(new MediaStream([track]));
    this.an = ctx.createAnalyser();
    this.an.fftSize = 1024;
    this.buf = new Float32Array(this.an.fftSize);
    this.src.connect(this.an);
  }

  /** The level now, dBFS (RMS of the last ~21 ms); -100 for silence. */
  db(): number {
    this.an.getFloatTimeDomainData(this.buf);
    let s = 0;
    for (const x of this.buf) s += x * x;
    const rms = Math.sqrt(s / this.buf.length);
    return rms > 1e-5 ? 20 * Math.log10(rms) : -100;
  }

  close(): void { this.src.disconnect(); this.an.disconnect(); }
}

/** Speech-ish activity: above `threshold` dBFS in at least `need` of the last `window`
 *  samples (taken every 50 ms): a cough does not count, a sentence does within ~0.5 s. */
export class Talk {
  private hist: boolean[] = [];
  constructor(private threshold = -50, private need = 5, private window = 10) {}
  push(db: number): boolean {
    this.hist.push(db > this.threshold);
    if (this.hist.length > this.window) this.hist.shift();
    return this.hist.filter(Boolean).length >= this.need;
  }
  reset(): void { this.hist = []; }
}
