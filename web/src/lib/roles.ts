// What each role may do, mirroring the server's permissions (server/src/auth.rs). The server
// enforces them; the dashboard only hides the buttons a role cannot use.

export type Role = 'admin' | 'publisher' | 'operator' | 'viewer' | 'inference';

export type Ability =
  /** Read devices, deployments, rollouts, placement. */
  | 'read'
  /** Read the audit log. */
  | 'audit'
  /** Yank model versions. */
  | 'publish'
  /** Pause, resume, approve, abort and promote rollouts. */
  | 'operate';

export function can(role: Role, ability: Ability): boolean {
  switch (ability) {
    case 'read':
      return role !== 'inference';
    case 'audit':
      return role === 'admin';
    case 'publish':
      return role === 'admin' || role === 'publisher';
    case 'operate':
      return role === 'admin' || role === 'operator';
  }
}
