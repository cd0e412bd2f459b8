// AdminService: erasure of users (right to be forgotten). Validation here; the erasure itself is
// src/index/erase.ts (store + indexes), the same code as `aetn store forget`. After it, the backend
// re-reads the tombstones and reloads the indexes at once, so the next call already sees the change.
import { AdminService } from '../gen/aetn/v1/admin_pb.js';
import { eraseUsers, unforgetUsers } from '../index/erase.js';
import type { ServingBackend } from './backend.js';
import type { ServiceImpl } from './rpc.js';
import { checkUserIds, LIMITS } from './validate.js';
import { EmbeddingStore } from '../store/store.js';
import { RpcError } from './errors.js';
import { status } from '@grpc/grpc-js';

function lmdbStore(backend: ServingBackend): EmbeddingStore {
  if (backend.store instanceof EmbeddingStore) return backend.store;
  // The shared store reads tombstones (replicas filter forgotten users) but erasure writes every
  // table and each replica's index: not built for the Cassandra backend yet.
  throw new RpcError(status.FAILED_PRECONDITION, `ForgetUsers is not available on the shared store (${backend.store.location}) yet: erase users on the LMDB store`);
}

export function adminHandlers(backend: ServingBackend): ServiceImpl<typeof AdminService> {
  return {
    async forgetUsers(req, ctx) {
      checkUserIds(req.userIds, 'user_ids', LIMITS.forgetUsers);
      const users = new Set(req.userIds).size;
      if (req.unforget) {
        const changed = await unforgetUsers(lmdbStore(backend), req.userIds);
        backend.syncForgotten();
        ctx.log.info({ users, changed, keyId: ctx.principal.keyId }, 'users unforgotten');
        return { users, changed };
      }
      const r = await eraseUsers(lmdbStore(backend), req.userIds);
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
