// Starts a real flotilla-server for the browser tests and the type generator: a free port on
// 127.0.0.1, a temporary data folder (the embedded SQLite default), a known admin token.
// Plain JavaScript so `node scripts/gen-api.mjs` runs it without a TypeScript step.

import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const repo = resolve(dirname(fileURLToPath(import.meta.url)), '../..');

/**
 * The Cargo target folder's binary named `name` (debug profile unless FLOTILLA_PROFILE).
 * @param {string} name
 */
export function binary(name) {
  const target = process.env.CARGO_TARGET_DIR
    ? resolve(process.env.CARGO_TARGET_DIR)
    : join(repo, 'target');
  return join(target, process.env.FLOTILLA_PROFILE ?? 'debug', name);
}

function serverBinary() {
  const path = process.env.FLOTILLA_SERVER_BIN ?? binary('flotilla-server');
  if (!existsSync(path)) {
    throw new Error(
      `no flotilla-server at ${path}: build it first (cargo build --workspace --bins), ` +
        'or set FLOTILLA_SERVER_BIN',
    );
  }
  return path;
}

async function freePort() {
  return new Promise((ok, fail) => {
    const s = createServer();
    s.once('error', fail);
    s.listen(0, '127.0.0.1', () => {
      const address = s.address();
      s.close(() =>
        typeof address === 'object' && address ? ok(address.port) : fail(new Error('no port')),
      );
    });
  });
}

/** @param {number} ms */
const sleep = (ms) => new Promise((ok) => setTimeout(ok, ms));

/**
 * @typedef {object} RunningServer
 * @property {string} url          base URL, `http://127.0.0.1:PORT`
 * @property {string} adminToken   the bootstrap admin token
 * @property {string} dataDir      its temporary data folder
 * @property {() => string} log    what the server printed so far
 * @property {() => Promise<void>} stop  stops it and removes the data folder
 */

/**
 * Starts flotilla-server and waits until /readyz answers.
 * @param {Record<string, string>} [env] extra FLOTILLA_* settings
 * @returns {Promise<RunningServer>}
 */
export async function startServer(env = {}) {
  const bin = serverBinary();
  const dataDir = await mkdtemp(join(tmpdir(), 'flotilla-web-'));
  const adminToken = 'flt_dashboardTestAdminToken0000000000000000000';
  let lastError;
  for (let attempt = 0; attempt < 3; attempt++) {
    const port = await freePort();
    const childEnv = { ...process.env };
    for (const key of Object.keys(childEnv)) {
      if (key.startsWith('FLOTILLA_')) delete childEnv[key];
    }
    const child = spawn(bin, [], {
      env: {
        ...childEnv,
        FLOTILLA_LISTEN: `127.0.0.1:${port}`,
        FLOTILLA_DATA_DIR: dataDir,
        FLOTILLA_BOOTSTRAP_TOKEN: adminToken,
        RUST_LOG: process.env.RUST_LOG ?? 'warn',
        ...env,
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let output = '';
    child.stdout.on('data', (d) => (output += d));
    child.stderr.on('data', (d) => (output += d));
    let exited = false;
    child.on('exit', () => (exited = true));
    const url = `http://127.0.0.1:${port}`;
    const deadline = Date.now() + 60_000;
    while (!exited && Date.now() < deadline) {
      try {
        const res = await fetch(`${url}/readyz`);
        if (res.ok) {
          return {
            url,
            adminToken,
            dataDir,
            log: () => output,
            stop: async () => {
              if (!exited) {
                const gone = new Promise((ok) => child.once('exit', ok));
                child.kill('SIGTERM');
                await Promise.race([gone, sleep(10_000)]);
                if (!exited) child.kill('SIGKILL');
              }
              await rm(dataDir, { recursive: true, force: true });
            },
          };
        }
      } catch {
        // Not listening yet.
      }
      await sleep(100);
    }
    child.kill('SIGKILL');
    lastError = new Error(`flotilla-server did not become ready on ${url}:\n${output}`);
    // A port taken between choosing and binding: try another.
    if (!/address already in use/i.test(output)) break;
  }
  await rm(dataDir, { recursive: true, force: true });
  throw lastError;
}
