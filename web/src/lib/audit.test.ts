import { describe as group, expect, it } from 'vitest';
import { actor, describe } from './audit';

group('audit phrases', () => {
  it('names what changed', () => {
    expect(
      describe({
        method: 'POST',
        route: '/api/v1/models/{name}/versions/{version}/yank',
        path: '/api/v1/models/fraud/versions/1.1.0/yank',
        actor: 'ci',
        detail: { model: 'fraud', version: '1.1.0', reason: 'bad' },
      }),
    ).toBe('yanked fraud@1.1.0');
    const enroll = {
      method: 'POST',
      route: '/api/v1/enroll',
      path: '/api/v1/enroll',
      actor: 'anonymous',
      detail: { name: 'gw-1' },
    };
    expect(`${actor(enroll)} ${describe(enroll)}`).toBe('device gw-1 enrolled');
    expect(describe({ method: 'PATCH', route: '/api/v1/x', path: '/api/v1/x', actor: 'a' })).toBe(
      'PATCH /api/v1/x',
    );
  });
});
