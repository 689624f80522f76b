import { defineConfig } from 'vite';

// `npm run dev` serves the client on :5173 and forwards the API to an appliance started with
// `cargo run` (http://127.0.0.1:8080). `npm run build` writes dist/, which the binary embeds.
const appliance = process.env.APPLIANCE_URL || 'http://127.0.0.1:8080';

export default defineConfig({
  base: '/',
  build: {
    outDir: 'dist',
    assetsDir: 'assets',
    emptyOutDir: true,
    target: 'es2022',
    // No inline scripts or data: URLs: the appliance sends `script-src 'self'`.
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
