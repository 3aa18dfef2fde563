import { describe, expect, it } from 'vitest';
import { ApiError, buildUrl, Client } from './client';

describe('buildUrl', () => {
  it('fills path parameters and skips empty query values', () => {
    expect(
      buildUrl('/api/v1/devices/{id}/health', { id: 'a b' }, { limit: 5, x: '', y: undefined }),
    ).toBe('/api/v1/devices/a%20b/health?limit=5');
    expect(() => buildUrl('/api/v1/devices/{id}', {})).toThrow(/missing path parameter id/);
  });
});

describe('Client', () => {
  it('revalidates with the ETag and returns the same object when unchanged', async () => {
    const seen: (string | null)[] = [];
    const fake: typeof fetch = async (_url, init) => {
      const h = new Headers(init?.headers);
      seen.push(h.get('if-none-match'));
      expect(h.get('authorization')).toBe('Bearer flt_x');
      if (h.get('if-none-match') === 'W/"1"') return new Response(null, { status: 304 });
      return new Response(JSON.stringify({ models: [] }), {
        status: 200,
        headers: { etag: 'W/"1"', 'content-type': 'application/json' },
      });
    };
    const client = new Client('flt_x', '', fake);
    const first = await client.get('/api/v1/models');
    const second = await client.get('/api/v1/models');
    expect(second).toBe(first);
    expect(seen).toEqual([null, 'W/"1"']);
  });

  it('turns error bodies and network failures into ApiError', async () => {
    const refusing = new Client(
      't',
      '',
      async () =>
        new Response(JSON.stringify({ error: { code: 'forbidden', message: 'no' } }), {
          status: 403,
        }),
    );
    await expect(refusing.get('/api/v1/audit')).rejects.toMatchObject({
      status: 403,
      code: 'forbidden',
      message: 'no',
    });
    const down = new Client('t', '', async () => {
      throw new TypeError('fetch failed');
    });
    const err = await down.get('/api/v1/models').catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ApiError);
    expect((err as ApiError).unreachable).toBe(true);
  });
});
