// The browser tests' world: models published with the real `flotilla` CLI, and simulated
// agents that speak the agent protocol over plain HTTP (enroll, fetch the signed desired state,
// report slot states and health), against a real flotilla-server.

import { execFile } from 'node:child_process';
import { generateKeyPairSync } from 'node:crypto';
import { existsSync } from 'node:fs';
import { copyFile, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { binary } from '../scripts/server.mjs';

const run = promisify(execFile);
export const repo = resolve(dirname(fileURLToPath(import.meta.url)), '../..');

/** Calls the management API with a token; throws with the server's message on failure. */
export async function api<T = unknown>(
  base: string,
  token: string,
  method: string,
  path: string,
  body?: unknown,
): Promise<T> {
  const res = await fetch(base + path, {
    method,
    headers: {
      authorization: `Bearer ${token}`,
      ...(body === undefined ? {} : { 'content-type': 'application/json' }),
    },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await res.text();
  if (!res.ok) throw new Error(`${method} ${path}: ${res.status} ${text}`);
  return (text ? JSON.parse(text) : null) as T;
}

/** Publishes sample models with the real CLI: a key, registered, then `flotilla push`. */
export async function publish(
  base: string,
  adminToken: string,
  versions: { file: string; version: string; release: number }[],
) {
  const cli = process.env.FLOTILLA_CLI_BIN ?? binary('flotilla');
  if (!existsSync(cli)) {
    throw new Error(`no flotilla CLI at ${cli}: build it first (cargo build --workspace --bins)`);
  }
  const dir = await mkdtemp(join(tmpdir(), 'flotilla-web-keys-'));
  const env = { ...process.env, FLOTILLA_URL: base, FLOTILLA_TOKEN: adminToken };
  const flotilla = (...args: string[]) => run(cli, ['--quiet', ...args], { env, cwd: dir });
  try {
    await flotilla('keygen', '--out', join(dir, 'ci'));
    await flotilla('keys', 'add', join(dir, 'ci.pub'), '--name', 'ml-team-ci');
    for (const v of versions) {
      // push writes the signature beside the model: sign a copy, not the repository's file.
      const model = join(dir, v.file);
      await copyFile(join(repo, 'models', v.file), model);
      await flotilla(
        'push',
        model,
        '--name',
        'fraud',
        '--version',
        v.version,
        '--key',
        join(dir, 'ci.key'),
        '--release',
        String(v.release),
      );
    }
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

export interface Health {
  inferences: number;
  errors: number;
  p95: number;
}

/** One simulated device. */
export class SimAgent {
  private reportSeq = 0;
  private applied = 0;
  /** model → version serving. */
  readonly active = new Map<string, string>();
  id = '';
  private credential = '';

  constructor(
    private readonly base: string,
    readonly name: string,
    readonly labels: Record<string, string>,
    private readonly hardware: { arch: string; cpu_cores: number; memory_mib: number },
  ) {}

  async enroll(enrollmentToken: string) {
    const { publicKey } = generateKeyPairSync('ed25519');
    const der = publicKey.export({ format: 'der', type: 'spki' });
    const raw = der.subarray(der.length - 32);
    const res = await fetch(`${this.base}/api/v1/enroll`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({
        enrollment_token: enrollmentToken,
        device_public_key: raw.toString('base64'),
        name: this.name,
        labels: this.labels,
        hardware: { ...this.hardware, os: 'linux', accelerators: [] },
        agent_version: 'sim-1',
      }),
    });
    if (!res.ok) throw new Error(`enroll ${this.name}: ${res.status} ${await res.text()}`);
    const body = (await res.json()) as { device_id: string; credential: string };
    this.id = body.device_id;
    this.credential = body.credential;
  }

  /** The desired state's sequence and model → version (the signature is the real agent's job). */
  async desired(): Promise<{ sequence: number; slots: Map<string, string> }> {
    const res = await fetch(`${this.base}/api/v1/agent/desired-state`, {
      headers: { authorization: `Bearer ${this.credential}` },
    });
    if (!res.ok) throw new Error(`desired state ${this.name}: ${res.status} ${await res.text()}`);
    const env = (await res.json()) as { payload: string };
    const state = JSON.parse(Buffer.from(env.payload, 'base64').toString('utf8')) as {
      sequence: number;
      slots: { model: string; version: string }[];
    };
    return {
      sequence: state.sequence,
      slots: new Map(state.slots.map((s) => [s.model, s.version])),
    };
  }

  /**
   * One agent cycle: fetch the desired state, "install" it at once, and report every slot
   * active with a health window computed by `health` for the version now serving.
   */
  async cycle(health: (version: string) => Health) {
    const desired = await this.desired();
    for (const [model, version] of desired.slots) this.active.set(model, version);
    for (const model of [...this.active.keys()]) {
      if (!desired.slots.has(model)) this.active.delete(model);
    }
    this.applied = desired.sequence;
    await this.report(health);
  }

  /** Reports the slots and a health window; `end` backdates the window (history). */
  async report(health: (version: string) => Health, end = Math.floor(Date.now() / 1000)) {
    const now = end;
    this.reportSeq += 1;
    const models = [...this.active].map(([model, version]) => {
      const h = health(version);
      return {
        model,
        version,
        inference_count: h.inferences,
        error_count: h.errors,
        latency_ms: { p50: h.p95 * 0.45, p95: h.p95, p99: h.p95 * 1.6 },
      };
    });
    const res = await fetch(`${this.base}/api/v1/agent/report`, {
      method: 'POST',
      headers: { authorization: `Bearer ${this.credential}`, 'content-type': 'application/json' },
      body: JSON.stringify({
        report_seq: this.reportSeq,
        created_at: now,
        applied_sequence: this.applied,
        slots: [...this.active].map(([model, version]) => ({
          model,
          version,
          state: 'active',
          active_version: version,
        })),
        health: {
          start: now - 60,
          end: now,
          models,
          memory_rss_bytes: 28_000_000 + this.hardware.cpu_cores * 1_000_000,
          cpu_percent: 12.5,
        },
      }),
    });
    if (!res.ok) throw new Error(`report ${this.name}: ${res.status} ${await res.text()}`);
  }
}

/** Enrolls `n` simulated devices of two hardware classes at one site. */
export async function enrollFleet(
  base: string,
  adminToken: string,
  n: number,
): Promise<SimAgent[]> {
  const token = await api<{ token: string }>(
    base,
    adminToken,
    'POST',
    '/api/v1/enrollment-tokens',
    {
      name: 'plant-7 gateways',
      labels: { site: 'plant-7' },
      // Each simulated gateway says which class of hardware it is.
      allowed_device_labels: ['class'],
      max_uses: n,
    },
  );
  const agents: SimAgent[] = [];
  for (let i = 0; i < n; i++) {
    const pi = i % 3 !== 2;
    const agent = new SimAgent(
      base,
      `gw-${String(i + 1).padStart(2, '0')}`,
      { class: pi ? 'pi' : 'jetson' },
      pi
        ? { arch: 'aarch64', cpu_cores: 4, memory_mib: 4096 }
        : { arch: 'aarch64', cpu_cores: 8, memory_mib: 16384 },
    );
    await agent.enroll(token.token);
    agents.push(agent);
  }
  return agents;
}

export const sleep = (ms: number) => new Promise((ok) => setTimeout(ok, ms));

/** Polls `check` until it returns a value, failing after `ms`. */
export async function eventually<T>(
  what: string,
  check: () => Promise<T | undefined | false>,
  ms = 30_000,
): Promise<T> {
  const deadline = Date.now() + ms;
  let last: unknown;
  while (Date.now() < deadline) {
    try {
      const v = await check();
      if (v !== undefined && v !== false) return v;
    } catch (e) {
      last = e;
    }
    await sleep(200);
  }
  throw new Error(`timed out waiting for ${what}${last ? `: ${String(last)}` : ''}`);
}
