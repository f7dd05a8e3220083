import { Context, Effect, Layer } from "effect"
import type { Persisted } from "../domain/raft/ready.js"
import type { Entry } from "../domain/raft/types.js"
import { attempt, PersistenceError } from "./PersistenceError.js"
import {
  openRaftStorage,
  type PersistInput,
  type RaftStorage,
  type RaftStorageOptions
} from "./RaftStorage.js"

/**
 * The Raft storage as Effects. Store failures are typed PersistenceErrors; a write that breaks
 * the log (StorageInvariantViolation) is a bug in the caller and surfaces as a defect.
 */
export interface RaftStoreService {
  /** The synchronous store underneath, for drivers that persist inline (the simulator). */
  readonly storage: RaftStorage
  readonly load: Effect.Effect<Persisted | undefined, PersistenceError>
  readonly bootstrap: (persisted: Persisted) => Effect.Effect<void, PersistenceError>
  readonly persist: (ready: PersistInput) => Effect.Effect<void, PersistenceError>
  readonly lastIndex: Effect.Effect<number, PersistenceError>
  readonly entries: (lo: number, hi: number) => Effect.Effect<Array<Entry>, PersistenceError>
}

export class RaftStore extends Context.Tag("cluster_mgr/RaftStore")<RaftStore, RaftStoreService>() {
  /** Opens the database at `path` (or ":memory:") for the layer's lifetime. */
  static layer = (
    path: string | ":memory:",
    options?: RaftStorageOptions
  ): Layer.Layer<RaftStore, PersistenceError> => Layer.scoped(RaftStore, make(path, options))
}


export const fromStorage = (storage: RaftStorage): RaftStoreService => ({
  storage,
  load: attempt(() => storage.load()),
  bootstrap: (persisted) => attempt(() => storage.bootstrap(persisted)),
  persist: (ready) => attempt(() => storage.persist(ready)),
  lastIndex: attempt(() => storage.lastIndex()),
  entries: (lo, hi) => attempt(() => storage.entries(lo, hi))
})

const make = (path: string, options?: RaftStorageOptions) =>
  Effect.acquireRelease(
    attempt(() => openRaftStorage(path, options)),
    (storage) => Effect.sync(() => storage.close())
  ).pipe(Effect.map(fromStorage))
