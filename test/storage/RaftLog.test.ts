import { afterEach, describe, expect, it } from "@effect/vitest"
import Database from "better-sqlite3"
import { Cause, Effect, Exit, Fiber, Logger } from "effect"
import * as fs from "node:fs"
import type { Worker } from "node:worker_threads"
import { PersistenceError, StorageInvariantViolation } from "../../src/storage/PersistenceError.js"
import { openRaftLog, type PersistMode, persistModeFromEnv, type RaftLog } from "../../src/storage/RaftLog.js"
import { pageCacheKiB } from "../../src/storage/sqliteSettings.js"
import { openRaftStorage, type PersistInput } from "../../src/storage/RaftStorage.js"
import { command, commands, config, CRASH_BATCH, fresh, makeTempDirs, nothing, writeUntilKilled } from "./fixtures.js"

const temp = makeTempDirs()
const opened: Array<RaftLog> = []
afterEach(async () => {
  for (const log of opened.splice(0)) await Effect.runPromise(log.close)
  temp.cleanup()
})

const open = (mode: PersistMode, file = temp.dbPath(), options: { busyTimeoutMs?: number } = {}) => {
  const log = openRaftLog(file, { ...options, persist: mode })
  opened.push(log)
  return log
}

/** Loads what a fresh synchronous connection finds in `file`. */
const loadFile = (file: string) => {
  const storage = openRaftStorage(file)
  try {
    return storage.load()
  } finally {
    storage.close()
  }
}

/** Every kind of step of a Ready, in an order the core could produce. */
const readies: ReadonlyArray<PersistInput> = [
  { ...nothing, hardState: { term: 1, vote: "n1:1", commit: 0 } },
  { ...nothing, entries: commands(1, 6, 1), hardState: { term: 1, vote: "n1:1", commit: 2 } },
  { ...nothing, truncateFrom: 5, entries: commands(5, 8, 2), hardState: { term: 2, vote: "n2:1", commit: 4 } },
  { ...nothing, snapshot: { meta: { index: 4, term: 2, config }, data: "image@4" }, compactTo: 3 },
  { ...nothing, entries: [{ index: 9, term: 2, payload: { _tag: "Config", config } }, { index: 10, term: 2, payload: { _tag: "Noop" } }] },
  { ...nothing, hardState: { term: 2, vote: "n2:1", commit: 10 } }
]

/** What the synchronous store loads after `readies`: the reference a RaftLog must match. */
const reference = () => {
  const storage = openRaftStorage(temp.dbPath())
  storage.bootstrap(fresh)
  for (const ready of readies) storage.persist(ready)
  const expected = storage.load()
  storage.close()
  return expected
}

describe.each(["sync", "worker"] as const)("RaftLog (%s)", (mode) => {
  it.live("persists every step of each Ready; a reopened file loads what was acknowledged", () =>
    Effect.gen(function* () {
      const file = temp.dbPath()
      const log = open(mode, file)
      expect(log.mode).toBe(mode)
      expect(log.load()).toBeUndefined()
      log.bootstrap(fresh)
      yield* log.startWriter
      for (const ready of readies) yield* log.persist(ready)
      yield* log.close
      const expected = reference()
      expect(loadFile(file)).toEqual(expected)
      expect(expected?.entries.map((e) => e.index)).toEqual([5, 6, 7, 8, 9, 10])
    })
  )

  it.live("an empty Ready writes nothing", () =>
    Effect.gen(function* () {
      const log = open(mode)
      log.bootstrap(fresh)
      yield* log.persist(nothing)
      expect(Exit.isSuccess(yield* Effect.exit(log.persist(nothing)))).toBe(true)
    })
  )

  it.live("a write that breaks the log is a defect (StorageInvariantViolation), and none of it lands", () =>
    Effect.gen(function* () {
      const file = temp.dbPath()
      const log = open(mode, file)
      log.bootstrap(fresh)
      const before = { term: 1, vote: null, commit: 1 }
      yield* log.persist({ ...nothing, entries: commands(1, 3, 1), hardState: before })
      const broken = { ...nothing, truncateFrom: 2, entries: [command(2, 2), command(4, 2)], hardState: { term: 2, vote: null, commit: 2 } }
      const exit = yield* Effect.exit(log.persist(broken))
      expect(Exit.isFailure(exit) && Cause.isDie(exit.cause)).toBe(true)
      if (Exit.isFailure(exit)) expect(Cause.squash(exit.cause)).toBeInstanceOf(StorageInvariantViolation)
      yield* log.close
      expect(loadFile(file)).toMatchObject({ hardState: before, entries: commands(1, 3, 1) })
    })
  )

  it.live("persisting before bootstrap is a typed PersistenceError", () =>
    Effect.gen(function* () {
      const log = open(mode)
      const error = yield* Effect.flip(log.persist({ ...nothing, entries: [command(1, 1)] }))
      expect(error).toBeInstanceOf(PersistenceError)
      expect(error.reason).toMatch(/not bootstrapped/)
    })
  )

  it.live("a SQLite failure (the write lock held elsewhere past the busy timeout) is a typed PersistenceError", () =>
    Effect.gen(function* () {
      const file = temp.dbPath()
      const log = open(mode, file, { busyTimeoutMs: 50 })
      log.bootstrap(fresh)
      yield* log.persist({ ...nothing, entries: commands(1, 2, 1) })
      const other = new Database(file)
      other.exec("BEGIN IMMEDIATE")
      const error = yield* Effect.flip(log.persist({ ...nothing, entries: commands(3, 4, 1) }))
      other.exec("ROLLBACK")
      other.close()
      expect(error).toBeInstanceOf(PersistenceError)
      expect(error.operation).toBe("persist")
      expect(error.message).toMatch(/locked|busy/i)
    })
  )

  it.live("the connection that writes runs WAL with synchronous=FULL", () =>
    Effect.gen(function* () {
      const log = open(mode, temp.dbPath(), { busyTimeoutMs: 1234 })
      log.bootstrap(fresh)
      yield* log.persist({ ...nothing, entries: commands(1, 1, 1) })
      expect(yield* log.pragmas).toEqual({ journalMode: "wal", synchronous: 2, foreignKeys: true, busyTimeoutMs: 1234, cacheKiB: pageCacheKiB, walAutocheckpoint: 1000 })
    })
  )
})

describe("RaftLog on a writer thread", () => {
  it.live("start-up reads come before the first persist, inline or not; after it only writes", () =>
    Effect.gen(function* () {
      const log = open("worker")
      log.bootstrap(fresh)
      yield* log.persist({ ...nothing, entries: commands(1, 1, 1) }, true)
      expect(() => log.load()).toThrow(PersistenceError)
      expect(() => log.bootstrap(fresh)).toThrow(PersistenceError)
    })
  )

  it.live("a follower's writes inline and a leader's on the thread interleave; a reopened file loads every one", () =>
    Effect.gen(function* () {
      const file = temp.dbPath()
      const log = open("worker", file)
      log.bootstrap(fresh)
      yield* log.startWriter
      const worker = (log as unknown as { worker: Worker }).worker
      const post = worker.postMessage.bind(worker)
      let posted = 0
      worker.postMessage = (message: unknown) => {
        posted++
        post(message)
      }
      // Each step of the reference sequence alternately inline and on the thread.
      for (const [i, ready] of readies.entries()) yield* log.persist(ready, i % 2 === 0)
      expect(posted).toBe(Math.floor(readies.length / 2))
      yield* log.close
      expect(loadFile(file)).toEqual(reference())
    })
  )

  it.live("an inline write that breaks the log is a defect too, and the thread's next write sees none of it", () =>
    Effect.gen(function* () {
      const file = temp.dbPath()
      const log = open("worker", file)
      log.bootstrap(fresh)
      yield* log.persist({ ...nothing, entries: commands(1, 3, 1) })
      const exit = yield* Effect.exit(log.persist({ ...nothing, entries: [command(5, 1)] }, true))
      expect(Exit.isFailure(exit) && Cause.isDie(exit.cause)).toBe(true)
      yield* log.persist({ ...nothing, entries: [command(4, 1)] })
      yield* log.close
      expect(loadFile(file)?.entries.map((e) => e.index)).toEqual([1, 2, 3, 4])
    })
  )

  it.live("close waits for the write in flight: a reopened file has it", () =>
    Effect.gen(function* () {
      const file = temp.dbPath()
      const log = open("worker", file)
      log.bootstrap(fresh)
      yield* log.startWriter
      const inFlight = yield* Effect.fork(log.persist({ ...nothing, entries: commands(1, 500, 1), hardState: { term: 1, vote: null, commit: 500 } }))
      yield* Effect.yieldNow()
      yield* log.close
      expect(Exit.isSuccess(yield* Fiber.await(inFlight))).toBe(true)
      expect(loadFile(file)?.entries.length).toBe(500)
      // Closed: later writes fail, typed.
      expect(yield* Effect.flip(log.persist({ ...nothing, entries: [command(501, 1)] }))).toBeInstanceOf(PersistenceError)
    })
  )

  it.live("when the thread fails, the write in flight and every later one fail with PersistenceError", () =>
    Effect.gen(function* () {
      const file = temp.dbPath()
      const log = open("worker", file, { busyTimeoutMs: 1000 })
      log.bootstrap(fresh)
      yield* log.startWriter
      yield* log.persist({ ...nothing, entries: commands(1, 1, 1) })
      // The write in flight waits for a lock held here; meanwhile the thread reports an error
      // (as an uncaught exception or running out of memory would).
      const other = new Database(file)
      other.exec("BEGIN IMMEDIATE")
      const inFlight = yield* Effect.fork(log.persist({ ...nothing, entries: commands(2, 3, 1) }))
      yield* Effect.sleep("50 millis")
      const worker = (log as unknown as { worker: Worker }).worker
      worker.emit("error", new Error("simulated"))
      other.exec("ROLLBACK")
      other.close()
      const first = yield* Effect.flip(Fiber.join(inFlight))
      expect(first).toBeInstanceOf(PersistenceError)
      expect(first.reason).toMatch(/writer thread failed: simulated/)
      // Its late answer changes nothing: a writer that failed once is not trusted again.
      yield* Effect.sleep("50 millis")
      const later = yield* Effect.flip(log.persist({ ...nothing, entries: [command(2, 1)] }))
      expect(later.reason).toMatch(/writer thread failed: simulated/)
      // Nor is the node: inline writes are refused alike.
      const inline = yield* Effect.flip(log.persist({ ...nothing, entries: [command(2, 1)] }, true))
      expect(inline.reason).toMatch(/writer thread failed: simulated/)
    })
  )

  it.live("when the thread is gone after it took a write, every write fails with PersistenceError", () =>
    Effect.gen(function* () {
      const log = open("worker")
      log.bootstrap(fresh)
      yield* log.startWriter
      yield* log.persist({ ...nothing, entries: commands(1, 1, 1) })
      // Idle: ending it now is safe (see RaftLog.close).
      yield* Effect.promise(() => (log as unknown as { worker: Worker }).worker.terminate())
      const error = yield* Effect.flip(log.persist({ ...nothing, entries: [command(2, 1)] }))
      expect(error.reason).toMatch(/writer thread exited/)
    })
  )

  it.live("the thread starts with the first write that asks for it (a leader's); until it has opened raft.db those writes run inline", () =>
    Effect.gen(function* () {
      const file = temp.dbPath()
      const log = open("worker", file)
      log.bootstrap(fresh)
      const thread = () => (log as unknown as { worker: Worker | undefined }).worker
      // A follower's writes never start it.
      yield* log.persist({ ...nothing, entries: commands(1, 2, 1) }, true)
      expect(thread()).toBeUndefined()
      // A leader's first write starts it and lands at once, inline, while the thread boots.
      yield* log.persist({ ...nothing, entries: commands(3, 4, 1) })
      const worker = thread()
      expect(worker).toBeDefined()
      expect(loadFile(file)?.entries.map((e) => e.index)).toEqual([1, 2, 3, 4])
      yield* log.startWriter
      const post = worker!.postMessage.bind(worker)
      let posted = 0
      worker!.postMessage = (message: unknown) => {
        posted++
        post(message)
      }
      yield* log.persist({ ...nothing, entries: commands(5, 6, 1) })
      expect(posted).toBe(1)
      expect(thread()).toBe(worker)
      yield* log.close
      expect(loadFile(file)?.entries.map((e) => e.index)).toEqual([1, 2, 3, 4, 5, 6])
    })
  )

  it.live("a thread that cannot open raft.db took no write: `startWriter` fails, and every write stays inline, said once in the log", () =>
    Effect.gen(function* () {
      const file = temp.dbPath()
      const log = open("worker", file)
      log.bootstrap(fresh)
      yield* log.persist({ ...nothing, entries: commands(1, 1, 1) }, true)
      // The thread opens the path given to it: make that a directory.
      const directory = temp.dbPath()
      fs.mkdirSync(directory)
      ;(log as unknown as { data: { path: string } }).data.path = directory
      const error = yield* Effect.flip(log.startWriter)
      expect(error).toBeInstanceOf(PersistenceError)
      expect(error.reason).toMatch(/could not open/)
      const logged: Array<string> = []
      const logger = Logger.make(({ message }) => logged.push(String(message)))
      for (let i = 2; i <= 4; i++) {
        yield* log.persist({ ...nothing, entries: [command(i, 1)] }).pipe(Effect.provide(Logger.replace(Logger.defaultLogger, logger)))
      }
      expect(logged).toHaveLength(1)
      expect(logged[0]).toMatch(/could not open .*: persisting on the main thread/)
      yield* log.close
      expect(loadFile(file)?.entries.map((e) => e.index)).toEqual([1, 2, 3, 4])
    })
  )

  it("CLUSTER_MGR_PERSIST picks the mode; anything else is refused", () => {
    expect(persistModeFromEnv("worker", "sync")).toBe("sync")
    expect(persistModeFromEnv("sync", "worker")).toBe("worker")
    expect(persistModeFromEnv("sync", "")).toBe("sync")
    expect(persistModeFromEnv("worker", undefined)).toBe("worker")
    expect(() => persistModeFromEnv("worker", "async")).toThrow(PersistenceError)
  })

  it(":memory: is always synchronous (a second connection would see another database)", () => {
    const log = openRaftLog(":memory:", { persist: "worker" })
    opened.push(log)
    expect(log.mode).toBe("sync")
  })
})

describe("crash, through the writer thread", () => {
  it("everything acknowledged before a SIGKILL is there after reopening, whole batches only", async () => {
    const file = temp.dbPath()
    const acked = await writeUntilKilled("crashWriterWorker.ts", file, 200)
    const loaded = loadFile(file)
    const last = loaded?.entries.at(-1)?.index ?? 0
    expect(last).toBeGreaterThanOrEqual(acked)
    expect(last % CRASH_BATCH).toBe(0)
    expect(loaded?.entries).toEqual(commands(1, last, 1))
    expect(loaded?.hardState).toEqual({ term: 1, vote: "n1:1", commit: last })
  })
})
