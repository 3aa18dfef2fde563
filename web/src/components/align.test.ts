import { describe, expect, it } from 'vitest';
import { align } from './align';

describe('align', () => {
  it('puts every series on one sorted x axis with gaps as null', () => {
    const points = [
      { t: 20, v: '1.1.0', y: 5 },
      { t: 10, v: '1.0.0', y: 2 },
      { t: 20, v: '1.0.0', y: 3 },
    ];
    const a = align(
      points,
      (p) => p.t,
      (p) => p.v,
      (p) => p.y,
    );
    expect(a.x).toEqual([10, 20]);
    expect(a.keys).toEqual(['1.0.0', '1.1.0']);
    expect(a.values).toEqual([
      [2, 3],
      [null, 5],
    ]);
  });
});
