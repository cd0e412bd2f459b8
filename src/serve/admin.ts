// AdminService: erasure of users (right to be forgotten). Validation here; the erasure itself is
// src/index/erase.ts (store + indexes), the same code as `aetn store forget`. After it, the backend
// re-reads the tombstones and reloads the indexes at once, so the next call already sees the change.
import { AdminService } from '../gen/aetn/v1/admin_pb.js';
import { eraseUsers, unforgetUsers } from '../index/erase.js';
import type { ServingBackend } from './backend.js';
import type { ServiceImpl } from './rpc.js';
import { checkUserIds, LIMITS } from './validate.js';

export function adminHandlers(backend: ServingBackend): ServiceImpl<typeof AdminService> {
  return {
    async forgetUsers(req, ctx) {
      checkUserIds(req.userIds, 'user_ids', LIMITS.forgetUsers);
      const users = new Set(req.userIds).size;
      if (req.unforget) {
        const changed = await unforgetUsers(backend.store, req.userIds);
        backend.syncForgotten();
        ctx.log.info({ users, changed, keyId: ctx.principal.keyId }, 'users unforgotten');
        return { users, changed };
      }
      const r = await eraseUsers(backend.store, req.userIds);
      backend.syncForgotten();
      await backend.poll();
      ctx.log.info({ users, changed: r.newlyForgotten, vectors: r.vectorsRemoved, indexPoints: r.indexPointsRemoved, keyId: ctx.principal.keyId }, 'users forgotten');
      return {
        users,
        changed: r.newlyForgotten,
        vectorsRemoved: r.vectorsRemoved,
        indexPointsRemoved: r.indexPointsRemoved,
        installerEntriesRemoved: r.installerEntriesRemoved,
        keptAppListsRemoved: r.keptAppListsRemoved,
        realtimeStatesRemoved: r.realtimeStatesRemoved,
      };
    },
  };
}
