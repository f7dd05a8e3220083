import { Effect } from "effect"
import * as fs from "node:fs"
import { createRequire } from "node:module"
import { fileURLToPath, pathToFileURL } from "node:url"
import { Worker } from "node:worker_threads"
import { labelled, metrics } from "../actors/metrics.js"
import type { Persisted } from "../domain/raft/ready.js"
import { attempt, PersistenceError, StorageInvariantViolation, toPersistenceError } from "./PersistenceError.js"
import { MetaKey } from "./raftSchema.js"
import {
  openRaftStorage,
  type PersistInput,
  type RaftStorage,
  type RaftStorageOptions,
  type StoragePragmas,
  toPersistRequest
} from "./RaftStorage.js"
import { type FromWriter, isNothingToPersist, type ToWriter, type WriterData, type WriterFailure } from "./raftLogWriter.js"

/**
 * How a node writes raft.db:
 * - "worker": each Ready's transaction (and its fsync) runs on a writer thread while the event
 *   loop goes on serving HTTP and peers; the actor waits for the commit before it goes on. The
 *   default of a cluster_mgr process (node.ts): 1.2-3x the accepted jobs/s of "sync" at
 *   concurrency 16-64 in bench/emit.ts, for about 10 MB more RSS (the thread's V8 isolate) on
 *   a node that has led: the thread starts with a leader's first write (WorkerRaftLog).
 * - "sync": inline on the actor's thread, blocking the event loop for the fsync. The default
 *   of in-process groups (inProcess.ts), whose members share one event loop: there the thread
 *   did not pay (bench/raft.ts: even at 16 proposers, slower at 256, and more elections with
 *   their 100 ms election timeout on a loaded machine). The simulator and the storage tests use
 *   RaftStorage this way.
 * The ordering is the same either way (ready.ts): nothing after persisting happens before the
 * transaction committed. The environment variable CLUSTER_MGR_PERSIST=sync|worker overrides
 * the default of both (not an explicit `persist` option).
 */
export type PersistMode = "sync" | "worker"

/** The default of a cluster_mgr process. */
export const defaultPersistMode: PersistMode = "worker"

/** The mode CLUSTER_MGR_PERSIST names, else `fallback`. */
export const persistModeFromEnv = (
  fallback: PersistMode = defaultPersistMode,
  value: string | undefined = process.env.CLUSTER_MGR_PERSIST
): PersistMode => {
  if (value === undefined || value === "") return fallback
  if (value === "sync" || value === "worker") return value
  throw new PersistenceError({ operation: "open", reason: `CLUSTER_MGR_PERSIST=${value}: expected sync or worker` })
}

/**
 * The Raft log as the RaftNode actor uses it: synchronous start-up reads, then one `persist`
 * per Ready. `persist` succeeds once everything is durable (committed, fsynced); it fails with
 * the store's PersistenceError and dies on a StorageInvariantViolation (a bug in the caller).
 */
export interface RaftLog {
  readonly path: string
  readonly mode: PersistMode
  /** Set when the mode asked for could not be used (said at start by the node's log). */
  readonly note: string | undefined
  /**
   * Starts the writer thread now, rather than with the first write that asks for it (a leader's),
   * and succeeds once it has opened raft.db; fails if it cannot (writes then stay inline).
   * Nothing to do in "sync" mode.
   */
  readonly startWriter: Effect.Effect<void, PersistenceError>
  /** What a restarted node resumes from (start-up only: before the first persist). */
  load(): Persisted | undefined
  /** Initialises an empty store (start-up only: before the first persist). */
  bootstrap(persisted: Persisted): void
  /**
   * Writes one Ready's worth in one transaction; succeeds once it is fsynced. `inline` asks for
   * the write on the calling thread even in "worker" mode: a follower's (RaftNode.persist).
   */
  persist(ready: PersistInput, inline?: boolean): Effect.Effect<void, PersistenceError>
  /**
   * `persist` for a caller that runs synchronously (the node's actor): a write that runs inline
   * is done (fsynced) when this returns undefined, and throws PersistenceError if it failed; a
   * write that must wait (for the writer thread, or to say something in the log first) comes
   * back as the Effect to run, exactly `persist`'s.
   */
  persistNow(ready: PersistInput, inline?: boolean): Effect.Effect<void, PersistenceError> | undefined
  /** The durability settings of the connection that writes. */
  readonly pragmas: Effect.Effect<StoragePragmas, PersistenceError>
  /** Waits for a write in flight, then closes. Idempotent. */
  readonly close: Effect.Effect<void>
}

export interface RaftLogOptions extends RaftStorageOptions {
  /** Default: CLUSTER_MGR_PERSIST, else defaultPersistMode. ":memory:" is always "sync". */
  readonly persist?: PersistMode
}


const countMainWrite = labelled(metrics.raftWrites, { thread: "main" })
const countWriterWrite = labelled(metrics.raftWrites, { thread: "writer" })

/** `persist` from `persistNow`: what it throws fails the Effect (PersistenceError) or is a defect. */
const persistFrom = (persistNow: RaftLog["persistNow"]): RaftLog["persist"] => (ready, inline) =>
  Effect.suspend(() => {
    try {
      return persistNow(ready, inline) ?? Effect.void
    } catch (error) {
      return error instanceof PersistenceError ? Effect.fail(error) : Effect.die(error)
    }
  })

/** A RaftStorage used inline: every persist blocks the calling thread until its fsync is done. */
export const syncRaftLog = (storage: RaftStorage, note?: string): RaftLog => {
  const persistNow: RaftLog["persistNow"] = (ready) => {
    if (isNothingToPersist(ready)) return undefined
    countMainWrite(1)
    storage.persist(ready)
    return undefined
  }
  return {
    path: storage.path,
    mode: "sync",
    note,
    startWriter: Effect.void,
    load: () => storage.load(),
    bootstrap: (persisted) => storage.bootstrap(persisted),
    persist: persistFrom(persistNow),
    persistNow,
    pragmas: attempt(() => storage.pragmas()),
    close: Effect.sync(() => storage.close())
  }
}

/**
 * Opens raft.db at `path` (migrating it and claiming its identity, synchronously, on this
 * thread), then, in "worker" mode, starts the writer thread. Throws PersistenceError.
 */
export const openRaftLog = (path: string | ":memory:", options: RaftLogOptions = {}): RaftLog => {
  const mode = path === ":memory:" ? "sync" : (options.persist ?? persistModeFromEnv())
  const storage = openRaftStorage(path, options)
  if (mode === "sync") return syncRaftLog(storage)
  const entry = writerEntry()
  if (!fs.existsSync(fileURLToPath(entry))) {
    return syncRaftLog(storage, `raft.db writer thread ${fileURLToPath(entry)} is missing (incomplete build?): persisting on the main thread`)
  }
  try {
    return new WorkerRaftLog(storage, entry, { path, busyTimeoutMs: options.busyTimeoutMs ?? 5000 })
  } catch (error) {
    storage.close()
    throw toPersistenceError("open", error)
  }
}

// ------------------------------------------------------------------ the writer thread

/**
 * raftLogWorker beside this module, with this module's extension: src/storage/*.ts (tsx,
 * vitest), dist/storage/*.js (tsc), or the bundle's dist/bin/raftLogWorker.mjs.
 */
const writerEntry = (): URL => {
  const here = import.meta.url
  const ext = here.endsWith(".ts") ? ".ts" : here.endsWith(".mjs") ? ".mjs" : ".js"
  return new URL(`./raftLogWorker${ext}`, here)
}

/** tsx's ESM API (the thread must load TypeScript too when this module runs from source). */
const tsxApiUrl = (): string => {
  const cjs = createRequire(import.meta.url).resolve("tsx/esm/api")
  const mjs = cjs.replace(/\.cjs$/, ".mjs")
  return pathToFileURL(fs.existsSync(mjs) ? mjs : cjs).href
}

const spawnWriter = (entry: URL, data: WriterData): Worker => {
  if (!entry.pathname.endsWith(".ts")) return new Worker(entry, { workerData: data })
  const boot = `import(${JSON.stringify(tsxApiUrl())}).then((tsx) => { tsx.register(); return import(${JSON.stringify(entry.href)}) })`
  return new Worker(boot, { eval: true, workerData: data })
}

const fromFailure = (operation: string, f: WriterFailure): unknown =>
  f.invariant
    ? new StorageInvariantViolation(f.message)
    : new PersistenceError({ operation, reason: f.code === undefined ? f.message : `${f.message} (${f.code})` })

type Reply = Extract<FromWriter, { _tag: "Done" }>

/**
 * The main thread's side of the writer thread. Start-up reads and the bootstrap go through
 * `local`, this thread's connection, before the first persist; after it only writes do.
 * Requests go one at a time (the actor awaits each), so there is at most one in flight, on the
 * thread or inline on `local` (`persist(ready, true)`): the two connections never write at once,
 * and each sees what the other committed (WAL).
 *
 * Why a follower writes inline: the thread pays off where the event loop has work during the
 * fsync, which is the leader's (its appends leave and HTTP requests are read meanwhile). A
 * follower has nothing to do until its write is durable, and each hop to the thread and back
 * costs a wake-up of each thread (about 40 us of CPU each on the 2-core VM). Measured with
 * bench/emit.ts's load (3 processes, interleaved runs): CPU per accepted job at concurrency 16
 * 0.634-0.650 -> 0.556-0.569 ms, at 64 0.417-0.461 -> 0.392-0.405 ms.
 *
 * So the thread starts with the first write that asks for it, a leader's (or `startWriter`): a
 * node that never leads, or whose writes as leader are all lone (RaftNode's placeWrite), never
 * pays its isolate (about 9 MB of RSS). Until it has opened raft.db those writes too run
 * inline, so a new leader's first writes do not wait for it to boot. A
 * thread that fails before it took any write (it could not open the file, its module did not
 * load) leaves every write inline, said once in the node's log; one that fails after is not
 * trusted again, nor is anything else written (see fail).
 */
class WorkerRaftLog implements RaftLog {
  readonly mode = "worker" as const
  readonly note = undefined
  readonly path: string
  private readonly local: RaftStorage
  /** Set by the first persist: start-up reads and the bootstrap are over. */
  private started = false
  private worker: Worker | undefined
  private readonly pending = new Map<number, (reply: Reply) => void>()
  private seq = 0
  /** Once set, every request fails with it: a writer that failed once is not trusted again. */
  private failure: PersistenceError | undefined
  /** Set when the thread failed before it took a write: every write stays inline. */
  private unusable: PersistenceError | undefined
  /** Whether the node's log was told about `unusable`. */
  private unusableSaid = false
  private closing = false
  private opened = false
  private readonly onOpen: Array<() => void> = []
  private exited = false
  private readonly onExit: Array<() => void> = []

  constructor(
    storage: RaftStorage,
    private readonly entry: URL,
    private readonly data: WriterData
  ) {
    this.path = storage.path
    this.local = storage
  }

  load(): Persisted | undefined {
    return this.startupStore("load").load()
  }

  bootstrap(persisted: Persisted): void {
    this.startupStore("bootstrap").bootstrap(persisted)
  }

  readonly persist = persistFrom((ready, inline) => this.persistNow(ready, inline))

  persistNow(ready: PersistInput, inline?: boolean): Effect.Effect<void, PersistenceError> | undefined {
    // An empty Ready must not cost an fsync.
    if (isNothingToPersist(ready)) return undefined
    if (!inline) this.startThread()
    const onThread = !inline && this.opened && this.unusable === undefined
    if (!onThread && this.failure === undefined && !this.closing && this.pending.size === 0) {
      const write = () => {
        this.endStartup()
        countMainWrite(1)
        this.local.persist(ready)
      }
      if (this.unusable === undefined || this.unusableSaid) {
        write()
        return undefined
      }
      this.unusableSaid = true
      return Effect.zipRight(Effect.logWarning(`${this.unusable.reason}: persisting on the main thread`), attempt(write))
    }
    let request
    try {
      this.endStartup()
      // Encoded here, once: the thread stores the strings as they are.
      request = toPersistRequest(ready)
    } catch (error) {
      const e = toPersistenceError("persist", error)
      return e instanceof PersistenceError ? Effect.fail(e) : Effect.die(e)
    }
    countWriterWrite(1)
    return Effect.asVoid(this.call("persist", (id) => ({ _tag: "Persist", id, request })))
  }

  readonly startWriter: Effect.Effect<void, PersistenceError> = Effect.async<void, PersistenceError>((resume) => {
    const settle = () => {
      const failure = this.failure ?? this.unusable
      resume(failure === undefined ? Effect.void : Effect.fail(failure))
    }
    this.startThread()
    const worker = this.worker
    if (worker === undefined || this.opened || this.failure !== undefined || this.unusable !== undefined) return settle()
    worker.ref()
    this.onOpen.push(() => {
      if (this.pending.size === 0 && !this.closing) worker.unref()
      settle()
    })
  })

  readonly pragmas: Effect.Effect<StoragePragmas, PersistenceError> = Effect.suspend(() =>
    // Before the thread opened raft.db the main thread's connection writes, configured alike.
    this.opened && this.unusable === undefined
      ? Effect.map(this.call("pragmas", (id) => ({ _tag: "Pragmas", id })), (r) => r.value as StoragePragmas)
      : attempt(() => this.local.pragmas())
  )

  readonly close: Effect.Effect<void> = Effect.suspend(() => {
    // Nothing is written inline meanwhile: the actor stopped before its log is closed.
    this.local.close()
    const worker = this.worker
    if (worker === undefined || this.exited) {
      this.closing = true
      return Effect.void
    }
    if (!this.closing) {
      this.closing = true
      // Queued after any request in flight: the thread finishes it, then closes.
      worker.ref()
      worker.postMessage({ _tag: "Close" } satisfies ToWriter)
    }
    return Effect.async<void>((resume) => {
      if (this.exited) return resume(Effect.void)
      // A write stuck that long (a hung disk): stop waiting, and leave the thread to the
      // process's exit. Not worker.terminate(): ending a thread inside a better-sqlite3 call
      // aborts the whole process (a fatal V8 error when the addon throws in a dying isolate).
      const stuck = setTimeout(() => {
        worker.unref()
        resume(Effect.void)
      }, 10_000)
      this.onExit.push(() => {
        clearTimeout(stuck)
        resume(Effect.void)
      })
    })
  })

  /** Starts the thread unless it was started, cannot be used, or the log is closing. */
  private startThread(): void {
    if (this.worker !== undefined || this.unusable !== undefined || this.closing) return
    let worker: Worker
    try {
      worker = spawnWriter(this.entry, this.data)
    } catch (error) {
      this.unusable = new PersistenceError({ operation: "persist", reason: `raft.db writer thread did not start: ${String(error)}`, cause: error })
      return
    }
    this.worker = worker
    // Idle, the thread does not keep the process alive; a request in flight does (see call).
    worker.unref()
    worker.on("message", (m: FromWriter) => this.received(m))
    worker.on("error", (e) => this.fail(`raft.db writer thread failed: ${e instanceof Error ? e.message : String(e)}`, e))
    worker.on("exit", (code) => {
      this.exited = true
      if (!this.closing) this.fail(`raft.db writer thread exited (code ${code})`)
      for (const k of this.onExit.splice(0)) k()
    })
  }

  private startupStore(operation: string): RaftStorage {
    if (this.started) {
      throw new PersistenceError({ operation, reason: "start-up reads and bootstrap come before the first persist" })
    }
    return this.local
  }

  /** The first write: check the store was bootstrapped; start-up is over. */
  private endStartup(): void {
    if (this.started) return
    if (this.local.meta(MetaKey.bootstrapped) !== "1") {
      throw new PersistenceError({ operation: "persist", reason: "store not bootstrapped" })
    }
    this.started = true
  }

  private call(operation: string, make: (id: number) => ToWriter): Effect.Effect<Reply, PersistenceError> {
    return Effect.async<Reply, PersistenceError>((resume) => {
      const worker = this.worker
      if (this.failure !== undefined) return resume(Effect.fail(this.failure))
      if (this.closing || worker === undefined) return resume(Effect.fail(new PersistenceError({ operation, reason: "raft.db is closed" })))
      const id = ++this.seq
      this.pending.set(id, (reply) => {
        if (reply.failure === undefined) return resume(Effect.succeed(reply))
        const error = fromFailure(operation, reply.failure)
        resume(error instanceof PersistenceError ? Effect.fail(error) : Effect.die(error))
      })
      if (this.pending.size === 1) worker.ref()
      worker.postMessage(make(id))
      // No canceller: a transaction cannot be called back. An interrupted caller (the node
      // stopping) leaves it to finish; close() waits for it.
    })
  }

  private received(message: FromWriter): void {
    switch (message._tag) {
      case "Opened":
        this.opened = true
        for (const k of this.onOpen.splice(0)) k()
        return
      case "OpenFailed":
        this.fail(`raft.db writer thread could not open ${this.path}: ${message.failure.message}`)
        // Safe here (see close): the thread holds no connection and runs no SQLite call.
        void this.worker?.terminate()
        return
      case "Done": {
        const k = this.pending.get(message.id)
        this.pending.delete(message.id)
        if (this.pending.size === 0 && !this.closing) this.worker?.unref()
        k?.(message)
        return
      }
    }
  }

  /**
   * The thread failed or ended. Before it took any write nothing is lost: writes stay inline
   * (`unusable`). After, the write in flight may or may not have landed: it and every later
   * request fail, inline ones too, and the node stops acknowledging anything.
   */
  private fail(reason: string, cause?: unknown): void {
    // Nothing was ever sent to it (requests go to the thread only once it has opened the file).
    if (this.seq === 0) {
      this.unusable ??= new PersistenceError({ operation: "persist", reason, cause })
    } else {
      this.failure ??= new PersistenceError({ operation: "persist", reason, cause })
    }
    const failure = this.failure ?? this.unusable!
    const failed: WriterFailure = { invariant: false, message: failure.reason, code: undefined }
    const waiting = [...this.pending.entries()]
    this.pending.clear()
    for (const [id, k] of waiting) k({ _tag: "Done", id, failure: failed })
    for (const k of this.onOpen.splice(0)) k()
  }
}

/** A RaftLog as it is, a RaftStorage used inline (tests and the simulator pass one). */
export const asRaftLog = (storage: RaftStorage | RaftLog): RaftLog => ("mode" in storage ? storage : syncRaftLog(storage))
