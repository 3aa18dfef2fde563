import { describe, expect, it } from 'vitest';
import { ago, bytes, duration, labels, ms, percent, shape, shortDigest } from './format';

describe('format', () => {
  it('sizes in binary units', () => {
    expect(bytes(512)).toBe('512 B');
    expect(bytes(1536)).toBe('1.5 KiB');
    expect(bytes(35 * 1024 * 1024)).toBe('35 MiB');
    expect(bytes(null)).toBe('—');
  });

  it('durations and relative times', () => {
    expect(duration(42)).toBe('42 s');
    expect(duration(180)).toBe('3 min');
    expect(duration(7200)).toBe('2 h');
    const now = Date.parse('2026-11-26T12:00:00Z');
    expect(ago('2026-11-26T11:59:58Z', now)).toBe('just now');
    expect(ago('2026-11-26T11:57:00Z', now)).toBe('3 min ago');
    expect(ago(null, now)).toBe('never');
  });

  it('ratios, latencies, digests, labels and shapes', () => {
    expect(percent(0.0512)).toBe('5.1%');
    expect(percent(undefined)).toBe('—');
    expect(ms(1.234)).toBe('1.23 ms');
    expect(ms(41.26)).toBe('41.3 ms');
    expect(shortDigest('a'.repeat(64))).toBe('aaaaaaaaaaaa');
    expect(labels({ site: 'plant-7', class: 'pi' })).toEqual(['site=plant-7', 'class=pi']);
    expect(shape([-1, 8])).toBe('? × 8');
    expect(shape([])).toBe('scalar');
  });
});
