// The dashboard in headless Chromium against a real flotilla-server with simulated agents:
// sign-in, every page with real data, roles deciding the buttons, live updates, and a
// screenshot of each page for the README.

import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Page } from 'playwright-core';
import { generate } from '../scripts/openapi-types.mjs';
import { startServer, type RunningServer } from '../scripts/server.mjs';
import { openBrowser, screenshot, type Session } from './browser';
import { api, enrollFleet, publish, repo, type SimAgent } from './fleet';

let server: RunningServer;
let agents: SimAgent[];
let browser: Session;
let page: Page;

/** Latency and errors per version, as the simulated devices measure them. */
const HEALTH: Record<string, { inferences: number; errors: number; p95: number }> = {
  '1.0.0': { inferences: 120, errors: 0, p95: 4.2 },
  '1.1.0': { inferences: 120, errors: 0, p95: 3.6 },
};

async function round(list: SimAgent[] = agents) {
  for (const a of list) await a.cycle((v) => HEALTH[v] ?? { inferences: 100, errors: 0, p95: 5 });
}

async function signIn(p: Page, token: string) {
  await p.goto('/');
  await p.getByLabel('API token').fill(token);
  await p.getByRole('button', { name: 'Sign in' }).click();
  await p.getByTestId('whoami').waitFor();
}

beforeAll(async () => {
  server = await startServer({ FLOTILLA_ROLLOUT_TICK_MS: '200' });
  await publish(server.url, server.adminToken, [
    { file: 'fraud-1.0.0.onnx', version: '1.0.0', release: 1 },
    { file: 'fraud-1.1.0.onnx', version: '1.1.0', release: 2 },
  ]);
  agents = await enrollFleet(server.url, server.adminToken, 6);
  await api(server.url, server.adminToken, 'PUT', '/api/v1/deployments', {
    model: 'fraud',
    version: '1.0.0',
    selector: 'site=plant-7',
  });
  await round();
  // Half an hour of history, one window a minute, so the device charts have a shape.
  const now = Math.floor(Date.now() / 1000);
  for (const [k, agent] of agents.entries()) {
    for (let i = 30; i >= 1; i--) {
      const wave = 1 + 0.2 * Math.sin(i / 4 + k);
      await agent.report(
        (v) => ({
          inferences: Math.round(100 + 40 * wave),
          errors: i % 11 === k % 11 ? 2 : 0,
          p95: (HEALTH[v]?.p95 ?? 5) * wave,
        }),
        now - i * 60,
      );
    }
  }
  await round();
  // The server answers the same model itself, for the placement comparison.
  for (let i = 0; i < 20; i++) {
    await api(server.url, server.adminToken, 'POST', '/v2/models/fraud/versions/1.1.0/infer', {
      inputs: [
        {
          name: 'features',
          datatype: 'FP32',
          shape: [1, 8],
          data: [
            1.06640625, 1.33984375, -1.50390625, 0.3828125, -1.6796875, -0.84765625, -0.2265625,
            -1.83203125,
          ],
        },
      ],
    });
  }
  browser = await openBrowser(server.url);
  page = browser.page;
});

afterAll(async () => {
  await browser?.close();
  await server?.stop();
});

describe('dashboard', () => {
  it('is built on API types that match what the server publishes', async () => {
    const doc = await (await fetch(`${server.url}/api/openapi.json`)).json();
    const committed = await readFile(join(repo, 'web/src/api/schema.d.ts'), 'utf8');
    // On a mismatch: `npm run gen:api` in web/, then commit src/api/schema.d.ts.
    expect(
      committed === (await generate(doc)),
      'web/src/api/schema.d.ts is stale: run npm run gen:api',
    ).toBe(true);
  });

  it('refuses a wrong token and says why, then signs in with a good one', async () => {
    await page.goto('/');
    await screenshot(page, 'sign-in');
    await page.getByLabel('API token').fill('flt_not_a_real_token');
    await page.getByRole('button', { name: 'Sign in' }).click();
    await page.getByRole('alert').filter({ hasText: 'does not accept this token' }).waitFor();
    // Chromium logs the refused whoami (401) as a console error; that one was asked for.
    browser.problems.length = 0;
    await signIn(page, server.adminToken);
    expect(await page.getByTestId('whoami').innerText()).toContain('admin');
  });

  it('shows the fleet on the overview', async () => {
    await page.goto('/#/overview');
    const byStatus = page.getByTestId('devices-by-status');
    await byStatus.getByText('Active, reporting 6').waitFor();
    const byVersion = page.getByTestId('devices-by-version');
    await byVersion.locator('tr', { hasText: '1.0.0' }).getByText('6').waitFor();
    await page.getByTestId('recent-events').getByText('deployed fraud@1.0.0').waitFor();
    await screenshot(page, 'overview');
  });

  it('lists models and their signed versions, with yank for admins', async () => {
    await page.goto('/#/models');
    await page.getByTestId('models-table').getByRole('link', { name: 'fraud' }).click();
    const v110 = page.getByTestId('version-1.1.0');
    await v110.getByText('ml-team-ci').waitFor();
    await v110.getByText('features').first().waitFor();
    expect(await v110.getByRole('button', { name: 'Yank' }).count()).toBe(1);
    await screenshot(page, 'models');
  });

  it('filters devices by labels and charts one device and its cohort', async () => {
    await page.goto('/#/devices');
    await expect.poll(() => page.getByTestId('device-row').count()).toBe(6);
    await page.getByLabel('Labels').fill('class=jetson');
    await page.getByRole('button', { name: 'Filter' }).click();
    await expect.poll(() => page.getByTestId('device-row').count()).toBe(2);
    await page.getByTestId('cohort-latency-chart').locator('canvas').waitFor();
    await screenshot(page, 'devices');
    await page.getByTestId('device-row').first().getByRole('link').click();
    await page.getByTestId('device-latency-chart').locator('canvas').waitFor();
    await page.getByTestId('device-error-chart').locator('canvas').waitFor();
    await screenshot(page, 'device');
  });

  it('updates live while devices report, without a reload', async () => {
    await page.goto('/#/devices');
    const row = page.getByTestId('device-row').filter({ hasText: 'gw-01' });
    await row.getByText('fraud@1.0.0').waitFor();
    // A newer deployment for gw-01's class: it appears on the page by polling alone.
    await api(server.url, server.adminToken, 'PUT', '/api/v1/deployments', {
      model: 'fraud',
      version: '1.1.0',
      selector: 'site=plant-7,class=pi',
    });
    await round();
    await row.getByText('fraud@1.1.0').waitFor();
  });

  it('compares edge and server on the placement page', async () => {
    await page.goto('/#/placement?model=fraud&group_by=class');
    const edge = page.getByTestId('placement-edge');
    await edge.locator('tr', { hasText: 'jetson' }).first().waitFor();
    await edge.locator('tr', { hasText: 'pi' }).first().waitFor();
    await page.getByTestId('placement-server').locator('tr', { hasText: '1.1.0' }).waitFor();
    await screenshot(page, 'placement');
  });

  it('hides the buttons a viewer may not use', async () => {
    const viewer = await api<{ token: string }>(
      server.url,
      server.adminToken,
      'POST',
      '/api/v1/tokens',
      {
        name: 'dashboard-viewer',
        role: 'viewer',
      },
    );
    await page.getByRole('button', { name: 'Sign out' }).click();
    await signIn(page, viewer.token);
    await page.goto('/#/models/fraud');
    await page.getByTestId('version-1.1.0').waitFor();
    expect(await page.getByRole('button', { name: 'Yank' }).count()).toBe(0);
    await page.goto('/#/overview');
    await page.getByTestId('recent-events').getByText('The audit log is for admins.').waitFor();
    await page.getByRole('button', { name: 'Sign out' }).click();
    await signIn(page, server.adminToken);
  });

  it('loads the page without console errors or blocked resources', () => {
    expect(browser.problems).toEqual([]);
  });
});
