import { describe, expect, it } from "@effect/vitest"
import { Cause, Context, Effect, Exit, Layer, Scope } from "effect"
import { RaftStore } from "../../src/storage/RaftStore.js"
import { commands, fresh, nothing } from "./fixtures.js"

describe("RaftStore", () => {
  it.scoped("persists and loads through Effects", () =>
    Effect.gen(function* () {
      const store = yield* RaftStore
      yield* store.bootstrap(fresh)
      const hardState = { term: 1, vote: null, commit: 2 }
      yield* store.persist({ ...nothing, entries: commands(1, 3, 1), hardState })
      const loaded = yield* store.load
      expect(loaded?.entries).toEqual(commands(1, 3, 1))
      expect(loaded?.hardState.commit).toBe(2)
      expect(yield* store.lastIndex).toBe(3)
    }).pipe(Effect.provide(RaftStore.layer(":memory:"))))

  it.scoped("a store failure is a typed PersistenceError", () =>
    Effect.gen(function* () {
      const store = yield* RaftStore
      yield* store.bootstrap(fresh)
      const error = yield* Effect.flip(store.bootstrap(fresh))
      expect(error._tag).toBe("PersistenceError")
      expect(error.operation).toBe("bootstrap")
    }).pipe(Effect.provide(RaftStore.layer(":memory:"))))

  it.scoped("a write that breaks the log is a defect, not a typed failure", () =>
    Effect.gen(function* () {
      const store = yield* RaftStore
      yield* store.bootstrap(fresh)
      const exit = yield* Effect.exit(store.persist({ ...nothing, entries: commands(5, 5, 1) }))
      expect(Exit.isFailure(exit) && Cause.isDie(exit.cause)).toBe(true)
    }).pipe(Effect.provide(RaftStore.layer(":memory:"))))

  it.effect("closing the layer's scope closes the database", () =>
    Effect.gen(function* () {
      const scope = yield* Scope.make()
      const context = yield* Layer.buildWithScope(RaftStore.layer(":memory:"), scope)
      const store = Context.get(context, RaftStore)
      expect(yield* store.lastIndex).toBe(0)
      yield* Scope.close(scope, Exit.void)
      const error = yield* Effect.flip(store.lastIndex)
      expect(error.reason).toMatch(/not open/)
    }))
})
