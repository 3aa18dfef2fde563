// Audit records in words, for the Overview's recent events.

export interface AuditLike {
  method: string;
  route: string;
  path: string;
  actor: string;
  detail?: unknown;
}

const PHRASES: [method: string, route: string, phrase: string][] = [
  ['POST', '/api/v1/tokens', 'created API token'],
  ['DELETE', '/api/v1/tokens/{id}', 'revoked API token'],
  ['POST', '/api/v1/publisher-keys', 'registered publisher key'],
  ['DELETE', '/api/v1/publisher-keys/{key_id}', 'revoked publisher key'],
  ['PUT', '/api/v1/trust/threshold', 'set the signing threshold'],
  ['POST', '/api/v1/models', 'created model'],
  ['POST', '/api/v1/models/{name}/versions', 'published'],
  ['POST', '/api/v1/models/{name}/versions/{version}/yank', 'yanked'],
  ['PUT', '/api/v1/artifacts/sha256/{hex}', 'uploaded an artifact'],
  ['POST', '/api/v1/enrollment-tokens', 'created enrollment token'],
  ['DELETE', '/api/v1/enrollment-tokens/{id}', 'revoked enrollment token'],
  ['POST', '/api/v1/enroll', 'enrolled'],
  ['PUT', '/api/v1/devices/{id}/labels', 'relabelled device'],
  ['POST', '/api/v1/devices/{id}/approve', 'approved device'],
  ['POST', '/api/v1/devices/{id}/revoke', 'revoked device'],
  ['DELETE', '/api/v1/devices/{id}', 'deleted device'],
  ['PUT', '/api/v1/deployments', 'deployed'],
  ['DELETE', '/api/v1/deployments/{id}', 'removed a deployment'],
  ['POST', '/api/v1/rollouts', 'started a rollout of'],
  ['PUT', '/api/v1/rollout-policies/{name}', 'saved rollout policy'],
  ['DELETE', '/api/v1/rollout-policies/{name}', 'deleted a rollout policy'],
  ['POST', '/api/v1/webhooks', 'added a webhook'],
  ['DELETE', '/api/v1/webhooks/{id}', 'removed a webhook'],
];

/** One route serves every rollout action; the action is the path's last segment. */
const ROLLOUT_ACTIONS: Record<string, string> = {
  pause: 'paused a rollout',
  resume: 'resumed a rollout',
  approve: 'approved a rollout stage',
  abort: 'aborted a rollout',
  promote: 'promoted a rollout',
};

function field(detail: unknown, key: string): string | undefined {
  if (detail && typeof detail === 'object' && key in detail) {
    const v = (detail as Record<string, unknown>)[key];
    return typeof v === 'string' || typeof v === 'number' ? String(v) : undefined;
  }
  return undefined;
}

/** Who acted: enrollment is done by the device itself, with no API token. */
export function actor(entry: AuditLike): string {
  if (entry.route === '/api/v1/enroll' && entry.actor === 'anonymous') {
    const name = field(entry.detail, 'name');
    return name ? `device ${name}` : 'a device';
  }
  return entry.actor;
}

/** "published fraud@1.1.0", "paused a rollout", or the method and route when unknown. */
export function describe(entry: AuditLike): string {
  if (entry.method === 'POST' && entry.route === '/api/v1/rollouts/{id}/{action}') {
    const action = entry.path.split('/').pop() ?? '';
    return ROLLOUT_ACTIONS[action] ?? `${action} on a rollout`;
  }
  const known = PHRASES.find(([m, r]) => m === entry.method && r === entry.route);
  if (!known) return `${entry.method} ${entry.route}`;
  const phrase = known[2];
  if (entry.route === '/api/v1/enroll') return phrase;
  const model = field(entry.detail, 'model');
  const version = field(entry.detail, 'version');
  const name = field(entry.detail, 'name') ?? field(entry.detail, 'policy');
  if (model && version) return `${phrase} ${model}@${version}`;
  if (model) return `${phrase} ${model}`;
  if (name) return `${phrase} ${name}`;
  return phrase;
}
