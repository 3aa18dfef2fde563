import { describe, expect, it } from 'vitest';
import { compareVersions, running, seenWithin, versionCounts, type Device } from './fleet';

function device(status: string, slots: unknown[], lastSeen: string | null = null): Device {
  return {
    id: 'x',
    name: 'x',
    status,
    labels: {},
    hardware: {},
    agent_version: '',
    enrolled_at: '2026-11-26T12:00:00Z',
    last_seen_at: lastSeen,
    desired_sequence: 1,
    applied_sequence: 1,
    desired: {},
    slots: slots as never,
    health: null,
  };
}

describe('fleet', () => {
  it('counts serving versions, ignoring revoked devices and updates in flight', () => {
    const devices = [
      device('active', [{ model: 'fraud', version: '1.1.0', state: 'active' }]),
      device('active', [
        { model: 'fraud', version: '1.1.0', state: 'downloading', active_version: '1.0.0' },
      ]),
      device('active', [
        { model: 'fraud', version: '1.0.0', state: 'active', active_version: '1.0.0' },
      ]),
      device('revoked', [{ model: 'fraud', version: '1.0.0', state: 'active' }]),
      device('active', [
        { model: 'fraud', version: '1.2.0', state: 'failed', reason: 'smoke_test' },
      ]),
    ];
    expect(versionCounts(devices)).toEqual([
      { model: 'fraud', version: '1.0.0', devices: 2 },
      { model: 'fraud', version: '1.1.0', devices: 1 },
    ]);
    expect(running(devices[4]!)[0]).toMatchObject({
      active: null,
      state: 'failed',
      reason: 'smoke_test',
    });
  });

  it('orders versions numerically', () => {
    expect(['1.10.0', '1.2.0', '1.9.1'].sort(compareVersions)).toEqual([
      '1.2.0',
      '1.9.1',
      '1.10.0',
    ]);
  });

  it('knows who was seen lately', () => {
    const now = Date.parse('2026-11-26T12:10:00Z');
    expect(seenWithin(device('active', [], '2026-11-26T12:08:00Z'), 300, now)).toBe(true);
    expect(seenWithin(device('active', [], '2026-11-26T12:00:00Z'), 300, now)).toBe(false);
    expect(seenWithin(device('active', [], null), 300, now)).toBe(false);
  });
});
