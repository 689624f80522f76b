import { readFileSync } from 'node:fs';
import { defineConfig, minifySync, type Plugin } from 'vite';

// The page's first script (src/boot.js: a deep link's join, sent before the main bundle
// loads) is written into the page itself, so it runs as the page is parsed instead of after
// one more request. The appliance allows exactly this script by its hash in the page's CSP
// (src/roles/apiserver/web.rs); every other script is a file of its own.
function inlineBoot(): Plugin {
  return {
    name: 'inline-boot',
    transformIndexHtml(html) {
      const source = readFileSync(new URL('./src/boot.js', import.meta.url), 'utf8');
      const { code, errors } = minifySync('boot.js', source, {});
      if (errors.length) throw new Error(`src/boot.js: ${errors.map((e) => e.message).join('; ')}`);
      if (/<\/script/i.test(code)) throw new Error('src/boot.js must not contain "</script"');
      const tag = '<script src="/boot.js"></script>';
      if (!html.includes(tag)) throw new Error(`index.html has no ${tag}`);
      return html.replace(tag, `<script>${code.trim()}</script>`);
    },
  };
}

// `npm run dev` serves the client on :5173 and forwards the API to an appliance started with
// `cargo run` (http://127.0.0.1:8080). `npm run build` writes dist/, which the binary embeds.
const appliance = process.env.APPLIANCE_URL || 'http://127.0.0.1:8080';

export default defineConfig({
  base: '/',
  plugins: [inlineBoot()],
  build: {
    outDir: 'dist',
    assetsDir: 'assets',
    emptyOutDir: true,
    target: 'es2022',
    // No data: URLs and no inline scripts but boot.js: the appliance sends `script-src 'self'`
    // and boot.js's hash.
    assetsInlineLimit: 0,
    modulePreload: { polyfill: false },
    // The notes editor (CodeMirror, Yjs binding, preview) is one lazily loaded chunk of
    // ~500 kB (sizes in the README); it is never part of the first load.
    chunkSizeWarningLimit: 700,
  },
  server: {
    proxy: {
      '/api': appliance,
      '/static': appliance,
      '/sfu': { target: appliance, ws: true },
    },
  },
});
