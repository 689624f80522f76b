// Pre-join: camera preview (with the background effect on or off), microphone level meter,
// a speaker test sound, device choice, noise suppression, name, join muted / camera off.
// The deep link `/m/{code}?name=…&autojoin=1` skips the screen and joins at once, with the
// devices starting while the join is under way (see Room.connectOnce).
import { h, mount } from './dom';
import { t } from './i18n';
import { LocalMedia, audioContext, type Background } from './effects';
import { Level } from './levels';

export interface JoinChoice {
  name: string;
  /** The camera and microphone, once they are open (null: none available). */
  media: Promise<LocalMedia | null>;
  audioMuted: boolean;
  videoOff: boolean;
  signedIn?: boolean;
  /** Called by the room once the join's first picture is in (Room.settled): the deep link's
   *  effects (noise suppression, background) start then (true), not while the join is set
   *  up; or when the room ended before that (false: they never start). */
  onSettled?: (start: boolean) => void;
}

/** A short two-note chime on the chosen output, so people hear whether their speakers
 *  work. Resolves true once the audio was rendered (the last note ended), false if the
 *  page may not play sound (the context stayed suspended). */
export async function playTestSound(sinkId?: string): Promise<boolean> {
  const ctx = audioContext();
  if (sinkId && 'setSinkId' in ctx) await (ctx as any).setSinkId(sinkId).catch(() => {});
  await ctx.resume().catch(() => {});
  const now = ctx.currentTime;
  let last: OscillatorNode | null = null;
  [[660, 0], [880, 0.35]].forEach(([f, at]) => {
    const o = ctx.createOscillator();
    const g = ctx.createGain();
    o.frequency.value = f;
    g.gain.setValueAtTime(0.0001, now + at);
    g.gain.exponentialRampToValueAtTime(0.3, now + at + 0.03);
    g.gain.exponentialRampToValueAtTime(0.0001, now + at + 0.5);
    o.connect(g).connect(ctx.destination);
    o.start(now + at);
    o.stop(now + at + 0.55);
    last = o;
  });
  return new Promise((resolve) => {
    const timer = setTimeout(() => resolve(false), 3000);
    last!.onended = () => { clearTimeout(timer); resolve(true); };
  });
}

export async function prejoinScreen(opts: {
  root: HTMLElement; header: () => HTMLElement; name: string; signedIn: boolean;
  setRerender: (f: () => void) => void; setLeave: (f: () => void) => void;
  onJoin: (c: JoinChoice) => void;
}): Promise<void> {
  let media = await LocalMedia.open();
  let meterTimer = 0;
  let level: Level | null = null;
  const cleanup = () => { clearInterval(meterTimer); level?.close(); level = null; };
  opts.setLeave(() => { cleanup(); });
  let typedName = opts.name;
  let muted = false, camOff = false;
  const draw = async () => {
    cleanup();
    const video = h('video', { class: 'preview mirror', id: 'preview', autoplay: true, muted: true, playsInline: true, 'aria-label': t('camera_preview') });
    if (media?.video) video.srcObject = new MediaStream([media.video]);
    const devices = media ? await navigator.mediaDevices.enumerateDevices() : [];
    const select = (kind: MediaDeviceKind, id: string, label: string) => {
      const cur = kind === 'audioinput' ? media?.rawAudio?.getSettings().deviceId : media?.rawVideo?.getSettings().deviceId;
      const list = devices.filter((d) => d.kind === kind);
      if (!list.length) return [];
      const s = h('select', { id },
        ...list.map((d, i) => h('option', { value: d.deviceId, selected: d.deviceId === cur }, d.label || `${label} ${i + 1}`)));
      s.addEventListener('change', async () => {
        if (!media) return;
        await media.switchDevice(kind === 'audioinput' ? 'audio' : 'video', s.value).catch(() => {});
        draw();
      });
      return [h('label', { for: id }, label), s];
    };
    const meter = h('meter', { id: 'mic-meter', min: -70, max: 0, low: -45, high: -12, optimum: -20, value: -70, 'aria-label': t('mic_level') });
    if (media?.monitor) {
      level = new Level(media.monitor);
      meterTimer = window.setInterval(() => { const v = level ? level.db() : -70; (meter as HTMLMeterElement).value = Math.max(-70, v); meter.dataset.db = v.toFixed(1); }, 100);
    }
    const speaker = h('button', { type: 'button', id: 'speaker-test', class: 'secondary small' }, t('speaker_test'));
    speaker.addEventListener('click', async () => {
      const out = (document.getElementById('dev-output') as HTMLSelectElement | null)?.value;
      speaker.textContent = t('speaker_test_playing');
      const ok = await playTestSound(out);
      speaker.dataset.played = String(ok);
      speaker.textContent = t('speaker_test');
    });
    const noise = h('input', { type: 'checkbox', id: 'fx-noise', checked: media?.effects.noise ?? true });
    noise.addEventListener('change', async () => { if (media) { await media.apply({ ...media.effects, noise: (noise as HTMLInputElement).checked }); } });
    const bgSel = h('select', { id: 'fx-bg' },
      ...(['none', 'blur', 'replace'] as Background[]).map((b) => h('option', { value: b, selected: media?.effects.background === b }, t(`bg_${b}`))));
    bgSel.addEventListener('change', async () => {
      if (!media) return;
      await media.apply({ ...media.effects, background: (bgSel as HTMLSelectElement).value as Background });
      if (media.failure) status.textContent = t('effect_failed', { msg: media.failure });
      video.srcObject = media.video ? new MediaStream([media.video]) : null;
    });
    const status = h('p', { class: 'muted', id: 'fx-status', role: 'status' });
    const name = h('input', { id: 'name', name: 'name', required: true, maxlength: 64, value: typedName, autocomplete: 'name' });
    name.addEventListener('input', () => { typedName = (name as HTMLInputElement).value; });
    const mutedBox = h('input', { type: 'checkbox', id: 'join-muted', checked: muted });
    mutedBox.addEventListener('change', () => { muted = (mutedBox as HTMLInputElement).checked; });
    const camBox = h('input', { type: 'checkbox', id: 'join-camoff', checked: camOff });
    camBox.addEventListener('change', () => { camOff = (camBox as HTMLInputElement).checked; });
    const form = h('form', { class: 'card prejoin', 'aria-labelledby': 'prejoin-h' },
      h('h1', { id: 'prejoin-h' }, t('prejoin_title')),
      h('div', { class: 'pj-cols' },
        h('div', { class: 'pj-media' },
          video,
          media ? null : h('p', { class: 'muted' }, t('no_media')),
          media?.rawVideo ? h('div', {}, h('label', { for: 'fx-bg' }, t('background')), bgSel) : null,
          media?.monitor ? h('div', { class: 'meter-row' }, h('span', { class: 'muted', 'aria-hidden': 'true' }, t('mic_level')), meter) : null,
          media?.monitor ? h('div', { class: 'check' }, noise, h('label', { for: 'fx-noise' }, t('noise_suppression'))) : null,
          h('div', { class: 'row' }, speaker),
          status),
        h('div', { class: 'pj-form' },
          ...(media ? [...select('videoinput', 'dev-video', t('camera')), ...select('audioinput', 'dev-audio', t('microphone'))] : []),
          ...select('audiooutput', 'dev-output', t('speaker')),
      h('label', { for: 'name' }, t('your_name')), name,
      h('div', { class: 'check' }, mutedBox, h('label', { for: 'join-muted' }, t('join_muted'))),
      h('div', { class: 'check' }, camBox, h('label', { for: 'join-camoff' }, t('join_no_camera'))),
      h('button', { type: 'submit', id: 'join-now', class: 'big' }, t('join_now')))));
    form.addEventListener('submit', (e) => {
      e.preventDefault();
      cleanup();
      opts.setLeave(() => {});
      opts.onJoin({ name: (name as HTMLInputElement).value.trim(), media: Promise.resolve(media), audioMuted: muted, videoOff: camOff, signedIn: opts.signedIn });
    });
    opts.setRerender(() => { draw(); });
    mount(opts.root, opts.header(), h('main', { class: 'center' }, form));
    if (!typedName) name.focus();
  };
  await draw();
  // The media is handed over to the room on join; if the person leaves, stop it.
  opts.setLeave(() => { cleanup(); media?.stop(); media = null; });
}
