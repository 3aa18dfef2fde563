// The dashboard in headless Chromium against a real flotilla-server with simulated agents:
// sign-in, every page with real data, a rollout advancing stage by stage while the agents
// report (paused and resumed from the page), a rolled-back rollout's reason, roles deciding
// the buttons, live updates, and a screenshot of each page for the README.

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
  // The faulty candidate: three answers in ten fail.
  '1.2.0': { inferences: 100, errors: 30, p95: 9.5 },
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
    { file: 'fraud-1.2.0-faulty.onnx', version: '1.2.0', release: 3 },
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

  it('lists models and their signed versions, with yank for admins', async () => {
    await page.goto('/#/models');
    await page.getByTestId('models-table').getByRole('link', { name: 'fraud' }).click();
    const v110 = page.getByTestId('version-1.1.0');
    await v110.getByText('ml-team-ci').waitFor();
    await v110.getByText('features').first().waitFor();
    expect(await v110.getByRole('button', { name: 'Yank' }).count()).toBe(1);
    await screenshot(page, 'models');
  });

  it('compares edge and server on the placement page', async () => {
    await page.goto('/#/placement?model=fraud&group_by=class');
    const edge = page.getByTestId('placement-edge');
    await edge.locator('tr', { hasText: 'jetson' }).first().waitFor();
    await edge.locator('tr', { hasText: 'pi' }).first().waitFor();
    await page.getByTestId('placement-server').locator('tr', { hasText: '1.1.0' }).waitFor();
    await screenshot(page, 'placement');
  });

  it('follows changes to the fleet without a reload', async () => {
    await page.goto('/#/devices');
    const row = page.getByTestId('device-row').filter({ hasText: 'gw-01' });
    await row.getByText('fraud@1.0.0').waitFor();
    const gw01 = agents[0]!;
    await api(server.url, server.adminToken, 'PUT', `/api/v1/devices/${gw01.id}/labels`, {
      labels: { ...gw01.labels, site: 'plant-7', zone: 'north' },
    });
    await row.getByText('zone=north').waitFor();
  });

  it('watches a rollout advance stage by stage, paused and resumed from the page', async () => {
    const stage = (devices: number, gates: object, manual_approval = false) => ({
      devices,
      bake_secs: 0,
      gates,
      manual_approval,
    });
    const rollout = await api<{ id: string }>(
      server.url,
      server.adminToken,
      'POST',
      '/api/v1/rollouts',
      {
        model: 'fraud',
        version: '1.1.0',
        selector: 'site=plant-7',
        policy: {
          stages: [
            stage(2, { min_devices_reporting: 2, max_error_rate: 0.05, max_failed_ratio: 0 }),
            // This one waits for an operator once its gates hold.
            stage(
              4,
              { min_devices_reporting: 4, max_error_rate: 0.05, max_p95_latency_ratio: 1.5 },
              true,
            ),
            stage(6, { max_error_rate: 0.05 }),
          ],
          on_failure: 'rollback',
        },
      },
    );
    // From the overview's list of rollouts in progress to the rollout's page.
    await page.goto('/#/overview');
    await page.getByTestId('active-rollouts').getByRole('link', { name: 'fraud@1.1.0' }).click();
    await page.waitForURL(`**/#/rollouts/${rollout.id}`);
    const stageText = page.getByTestId('rollout-stage');
    const state = page.getByTestId('rollout-state');
    await stageText.getByText('stage 1 of 3').waitFor();

    // Paused before the first cohort reports: their reports arrive, the stage stays.
    await page.getByRole('button', { name: 'Pause' }).click();
    await page
      .getByLabel('Reason (recorded in the history)')
      .fill('checking the night shift first');
    await page.getByRole('dialog').getByRole('button', { name: 'Pause' }).click();
    await state.getByText('paused').waitFor();
    await page.getByTestId('rollout-reason').getByText('checking the night shift first').waitFor();
    await round();
    await page.getByTestId('stage-devices').getByText('Running the candidate 2').waitFor();
    expect(await stageText.innerText()).toBe('stage 1 of 3');
    expect(await page.getByRole('button', { name: 'Pause' }).count()).toBe(0);

    // Resumed: the gates hold, the next cohort gets the candidate, reports, and so on.
    await page.getByRole('button', { name: 'Resume' }).click();
    await page.getByRole('dialog').getByRole('button', { name: 'Resume' }).click();
    await stageText.getByText('stage 2 of 3').waitFor();
    await state.getByText('running').waitFor();
    await round();
    await state.getByText('waiting approval').waitFor();
    await page.getByTestId('gate-min_devices_reporting').getByText('pass').waitFor();
    await page.getByTestId('gate-max_p95_latency_ratio').getByText('pass').waitFor();
    await page.getByTestId('stage-2').and(page.locator('[data-status="current"]')).waitFor();
    await screenshot(page, 'rollout');
    await page.goto('/#/overview');
    await page.getByTestId('active-rollouts').getByText('stage 2 of 3').waitFor();
    await page.getByTestId('devices-by-status').getByText('Active, reporting 6').waitFor();
    const events = page.getByTestId('recent-events');
    await events.getByText('started a rollout of fraud@1.1.0').waitFor();
    await events.getByText('paused a rollout').waitFor();
    await screenshot(page, 'overview');
    await page.goBack();
    await page.getByRole('button', { name: 'Approve stage' }).click();
    await page.getByRole('dialog').getByRole('button', { name: 'Approve stage' }).click();
    await stageText.getByText('stage 3 of 3').waitFor();
    await round();
    await state.getByText('completed').waitFor();
    await stageText.getByText('all 3 stages').waitFor();

    // The history tells the whole story, with who did what and why.
    const history = page.getByTestId('history');
    await history.getByText('checking the night shift first').waitFor();
    const oldestFirst = (await history.getByTestId('history-row').allInnerTexts()).reverse();
    const story = [
      'created',
      'paused',
      'resumed',
      'stage 2 of 3 opened',
      'approved',
      'stage 3 of 3 opened',
      'every stage passed',
    ].map((e) => oldestFirst.findIndex((row) => row.includes(e)));
    expect(
      story.every((at) => at >= 0),
      oldestFirst.join(' | '),
    ).toBe(true);
    expect(
      [...story].sort((a, b) => a - b),
      oldestFirst.join(' | '),
    ).toEqual(story);
    // Every device now runs 1.1.0.
    await page.goto('/#/overview');
    await page
      .getByTestId('devices-by-version')
      .locator('tr', { hasText: '1.1.0' })
      .getByText('6')
      .waitFor();
  });

  it('shows why a rollout was rolled back', async () => {
    const rollout = await api<{ id: string }>(
      server.url,
      server.adminToken,
      'POST',
      '/api/v1/rollouts',
      {
        model: 'fraud',
        version: '1.2.0',
        selector: 'site=plant-7',
        policy: {
          stages: [
            { devices: 2, bake_secs: 0, gates: { max_error_rate: 0.01 } },
            { devices: 6, bake_secs: 0, gates: { max_error_rate: 0.01 } },
          ],
          on_failure: 'rollback',
        },
      },
    );
    await page.goto(`/#/rollouts/${rollout.id}`);
    await page.getByTestId('rollout-stage').getByText('stage 1 of 2').waitFor();
    await round();
    await page.getByTestId('rollout-state').getByText('rolled back').waitFor();
    const reason = page.getByTestId('rollout-reason');
    await reason.getByText('gate max_error_rate breached').waitFor();
    expect(await reason.innerText()).toContain('every device returns to its previous version');
    await page.getByTestId('gate-max_error_rate').getByText('fail').waitFor();
    await page.getByTestId('stage-1').and(page.locator('[data-status="stopped"]')).waitFor();
    await screenshot(page, 'rollout-rolled-back');
    // The devices that tried it go back to 1.1.0.
    await round();
    await page.goto('/#/rollouts');
    await expect.poll(() => page.getByTestId('rollout-row').count()).toBe(2);
    await page
      .getByTestId('rollout-row')
      .filter({ hasText: 'fraud@1.2.0' })
      .getByText('rolled back')
      .waitFor();
    await screenshot(page, 'rollouts');
  });

  it('filters devices by labels and charts one device and its cohort', async () => {
    await page.goto('/#/devices');
    await expect.poll(() => page.getByTestId('device-row').count()).toBe(6);
    await page.getByLabel('Labels').fill('class=pi');
    await page.getByRole('button', { name: 'Filter' }).click();
    await expect.poll(() => page.getByTestId('device-row').count()).toBe(4);
    await page.getByTestId('cohort-latency-chart').locator('canvas').waitFor();
    await screenshot(page, 'devices');
    await page.getByTestId('device-row').filter({ hasText: 'gw-02' }).getByRole('link').click();
    await page.getByTestId('device-latency-chart').locator('canvas').waitFor();
    await page.getByTestId('device-error-chart').locator('canvas').waitFor();
    await screenshot(page, 'device');
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
    await page.goto('/#/rollouts');
    await page.getByTestId('rollout-row').first().getByRole('link').click();
    await page.getByTestId('history').waitFor();
    for (const action of ['Pause', 'Resume', 'Abort', 'Promote', 'Approve stage']) {
      expect(await page.getByRole('button', { name: action }).count(), action).toBe(0);
    }
    await page.getByRole('button', { name: 'Sign out' }).click();
    await signIn(page, server.adminToken);
  });

  it('loads the page without console errors or blocked resources', () => {
    expect(browser.problems).toEqual([]);
  });
});
