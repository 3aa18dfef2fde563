import { defineConfig } from 'vitest/config';

// The server's build script sets FLOTILLA_WEB_OUT_DIR to a folder under Cargo's OUT_DIR and
// embeds what lands there; `npm run build` alone writes dist/.
const outDir = process.env.FLOTILLA_WEB_OUT_DIR ?? 'dist';

export default defineConfig({
  oxc: {
    jsx: { runtime: 'automatic', importSource: 'preact' },
  },
  build: {
    outDir,
    emptyOutDir: true,
    // The page is served by flotilla-server under /assets/{file}: keep the folder flat.
    assetsDir: 'assets',
    // Inline nothing: the server's Content-Security-Policy allows only files from itself.
    assetsInlineLimit: 0,
    sourcemap: false,
  },
  server: {
    // `npm run dev` against a server on the default port.
    proxy: { '/api': 'http://127.0.0.1:8080' },
  },
  test: {
    projects: [
      {
        extends: true,
        test: { name: 'unit', include: ['src/**/*.test.ts'], environment: 'node' },
      },
      {
        extends: true,
        test: {
          name: 'browser',
          include: ['e2e/**/*.test.ts'],
          environment: 'node',
          // One server and one Chromium at a time: the CI machine has two cores.
          fileParallelism: false,
          testTimeout: 120_000,
          hookTimeout: 180_000,
        },
      },
    ],
  },
});
