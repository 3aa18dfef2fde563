import { describe, expect, it } from 'vitest';
import { href, parseHash } from './router';

describe('router', () => {
  it('parses sections, items and filters', () => {
    expect(parseHash('').section).toBe('overview');
    expect(parseHash('#/nowhere').section).toBe('overview');
    const r = parseHash('#/devices/abc-1?selector=site%3Dplant-7&status=active');
    expect(r.section).toBe('devices');
    expect(r.item).toBe('abc-1');
    expect(r.params.get('selector')).toBe('site=plant-7');
    expect(r.params.get('status')).toBe('active');
  });

  it('round-trips what it builds', () => {
    const h = href('models', 'fraud.v2', { q: 'x', empty: '' });
    expect(h).toBe('#/models/fraud.v2?q=x');
    expect(parseHash(h).item).toBe('fraud.v2');
  });
});
