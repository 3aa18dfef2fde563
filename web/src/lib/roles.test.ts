import { describe, expect, it } from 'vitest';
import { can, type Role } from './roles';

describe('roles', () => {
  it('match the server permissions', () => {
    const table: Record<Role, string[]> = {
      admin: ['read', 'audit', 'publish', 'operate'],
      publisher: ['read', 'publish'],
      operator: ['read', 'operate'],
      viewer: ['read'],
      inference: [],
    };
    for (const [role, abilities] of Object.entries(table)) {
      for (const ability of ['read', 'audit', 'publish', 'operate'] as const) {
        expect(can(role as Role, ability), `${role} ${ability}`).toBe(abilities.includes(ability));
      }
    }
  });
});
