// Reading devices: the slot statuses and health windows they reported (the API passes these
// through as JSON objects), and fleet-wide counts.

import type { Schemas } from '../api/client';

export type Device = Schemas['DeviceInfo'];
export type SlotStatus = Schemas['SlotStatus'];
export type HealthWindow = Schemas['HealthWindow'];

export function slotsOf(device: Device): SlotStatus[] {
  return Array.isArray(device.slots) ? (device.slots as unknown as SlotStatus[]) : [];
}

export function healthOf(device: Device): HealthWindow | null {
  const h = device.health as unknown as HealthWindow | null | undefined;
  return h && Array.isArray(h.models) ? h : null;
}

/** A device's models as it reported them: what serves, and what it is moving to. */
export interface Running {
  model: string;
  /** The version serving, if any. */
  active: string | null;
  /** The version the slot status is about (the target while updating). */
  target: string;
  state: SlotStatus['state'];
  reason: string | null;
}

export function running(device: Device): Running[] {
  return slotsOf(device).map((s) => ({
    model: s.model,
    active: s.active_version ?? (s.state === 'active' ? s.version : null),
    target: s.version,
    state: s.state,
    reason: s.reason ?? null,
  }));
}

/** Devices per model and serving version, sorted by model then version. */
export function versionCounts(
  devices: Device[],
): { model: string; version: string; devices: number }[] {
  const counts = new Map<string, number>();
  for (const d of devices) {
    if (d.status === 'revoked') continue;
    for (const r of running(d)) {
      if (!r.active) continue;
      const key = `${r.model}\u0000${r.active}`;
      counts.set(key, (counts.get(key) ?? 0) + 1);
    }
  }
  return [...counts.entries()]
    .map(([key, n]) => {
      const [model = '', version = ''] = key.split('\u0000');
      return { model, version, devices: n };
    })
    .sort((a, b) => a.model.localeCompare(b.model) || compareVersions(a.version, b.version));
}

/** Semantic-version order (pre-release and build ignored beyond a string compare). */
export function compareVersions(a: string, b: string): number {
  const pa = a.split(/[.+-]/).map((p) => Number(p));
  const pb = b.split(/[.+-]/).map((p) => Number(p));
  for (let i = 0; i < 3; i++) {
    const x = pa[i] ?? 0;
    const y = pb[i] ?? 0;
    if (Number.isFinite(x) && Number.isFinite(y) && x !== y) return x - y;
  }
  return a.localeCompare(b);
}

/** Whether a device has been heard from within `secs`. */
export function seenWithin(device: Device, secs: number, now = Date.now()): boolean {
  if (!device.last_seen_at) return false;
  return now - Date.parse(device.last_seen_at) <= secs * 1000;
}
