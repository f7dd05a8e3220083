import { Cause, Clock, Context, Duration, Effect, Exit, FiberSet, Layer } from "effect"
import * as fs from "node:fs"
import * as path from "node:path"
import type { AgentConfig } from "./config.js"
import type { Engine, InstallOptions } from "./Engine.js"
import { errnoText, JobError, type StateWriteError } from "./errors.js"
import {
  dataDirOf,
  describeSlave,
  installMarker,
  instanceDir,
  parseVertical,
  promoteSql,
  replicating,
  restartBackoffMs,
  setReplicaSql,
  type SlaveState,
  slaveStateOf
} from "./layout.js"
import * as Mariadb from "./Mariadb.js"
import * as Postgres from "./Postgres.js"
import { isAlive, portIdle, signalPid, terminate, waitGone } from "./proc.js"
import type { DeleteInfo, Instance, InstanceStatus, Kind, PromoteInfo, ReplicaInfo, ReportEvent } from "./protocol.js"
import { addReport, findInstance, type InstanceRecord, putInstance, removeInstance, updateInstance } from "./state.js"
import { StateStore, type StateStoreApi } from "./StateStore.js"

/**
 * The instances of this machine: installing, deleting, starting and stopping them, replication,
 * and supervision (find the dead, restart them, report). Every operation on one port holds that
 * port's lock, so a job and the supervisor never act on the same instance at once; the
 * supervisor skips a port whose lock is taken instead of waiting.
 */

export type ControlAction = "start" | "stop" | "restart"

export interface InstancesApi {
  readonly list: Effect.Effect<ReadonlyArray<Instance>>
  readonly install: (kind: Kind, port: number, options: InstallOptions) => Effect.Effect<Instance, JobError>
  readonly remove: (kind: Kind, port: number) => Effect.Effect<DeleteInfo, JobError>
  readonly control: (port: number, action: ControlAction, kind: Kind | undefined) => Effect.Effect<Instance, JobError>
  readonly setReplica: (port: number, host: string, primaryPort: number) => Effect.Effect<ReplicaInfo, JobError>
  readonly promote: (port: number) => Effect.Effect<PromoteInfo, JobError>
  /** Free to bind on local_ip, and no instance of ours has it. */
  readonly portIdle: (port: number) => Effect.Effect<boolean>
  /** At agent start: take over the instances of the state file that still run; mark the others. */
  readonly adoptAll: Effect.Effect<void>
  /** One supervision round: each instance is checked in its own fiber (skipped if busy). */
  readonly superviseRound: Effect.Effect<void>
}

export class Instances extends Context.Tag("node_mgr/Instances")<Instances, InstancesApi>() {}

/** A new install's first start (fresh data directory) must answer within this. */
const installWaitMs = 120_000
/** An operator start, or a supervisor restart (crash recovery included), must answer within this. */
const startWaitMs = 60_000
/** A clean shutdown gets this long before SIGKILL. */
const stopGraceMs = 60_000
/** set_replica waits this long for both replication threads to run. */
const replicaWaitMs = 15_000
const probeEveryMs = 250

/** What the supervisor knows of an instance beyond the state file; rebuilt at agent start. */
interface Runtime {
  phase: InstanceStatus
  /** Answered select 1 since its current process was started or adopted. */
  answered: boolean
  /** First failed probe after it had answered (a hang is only declared after a while). */
  unansweredSinceMs: number | null
  /** Failed restarts in a row, and when the next attempt may run. */
  failures: number
  retryAtMs: number
}

const freshRuntime = (phase: InstanceStatus): Runtime => ({
  phase,
  answered: phase === "running",
  unansweredSinceMs: null,
  failures: 0,
  retryAtMs: 0
})

type StartOutcome = "answered" | "exited" | "timeout"

const writeError = (e: StateWriteError) => new JobError({ message: `the change could not be persisted: ${e.message}` })

export const make = (config: AgentConfig) =>
  Effect.gen(function* () {
    const store: StateStoreApi = yield* StateStore
    const engines: Record<Kind, Engine> = { storage: Mariadb.make(config), computer: Postgres.make(config) }
    const checks = yield* FiberSet.make<void, never>()
    const runtimes = new Map<number, Runtime>()
    const locks = new Map<number, Effect.Semaphore>()
    const intervalMs = Math.round(config.thread_work_interval * 1000)
    /** A process that answered before and has not for this long is declared hung and restarted. */
    const hungMs = config.instance_hang_timeout_ms

    const lockOf = (port: number): Effect.Semaphore => {
      let lock = locks.get(port)
      if (lock === undefined) {
        lock = Effect.unsafeMakeSemaphore(1)
        locks.set(port, lock)
      }
      return lock
    }
    const runtimeOf = (port: number): Runtime => {
      let rt = runtimes.get(port)
      if (rt === undefined) {
        rt = freshRuntime("starting")
        runtimes.set(port, rt)
      }
      return rt
    }

    const fail = (message: string) => Effect.fail(new JobError({ message }))
    const find = (port: number) => Effect.map(store.get, (s) => findInstance(s, port))
    const update = (port: number, f: (r: InstanceRecord) => InstanceRecord) =>
      store.update((s) => updateInstance(s, port, f)).pipe(Effect.mapError(writeError))
    const setPid = (port: number, pid: number | null) => update(port, (r) => (r.pid === pid ? r : { ...r, pid }))

    const report = (record: InstanceRecord, event: ReportEvent, detail: string) =>
      Effect.gen(function* () {
        const at = yield* Clock.currentTimeMillis
        yield* Effect.logInfo(`${record.kind} ${record.port}: ${event}: ${detail}`)
        yield* store
          .update((s) => addReport(s, { at, kind: record.kind, port: record.port, event, detail }))
          .pipe(Effect.catchAll((e) => Effect.logError(`report lost: ${e.message}`)))
      })

    const view = (record: InstanceRecord): Instance => {
      const status = runtimes.get(record.port)?.phase ?? (record.stopped_on_purpose ? "stopped" : "dead")
      return {
        kind: record.kind,
        port: record.port,
        status,
        stopped_on_purpose: record.stopped_on_purpose,
        pid: status === "running" || status === "starting" ? record.pid : null,
        restarts: record.restarts,
        datadir: dataDirOf(record.kind, record.dir)
      }
    }

    const viewOf = (port: number) =>
      Effect.flatMap(find(port), (r) => (r === undefined ? fail(`instance ${port} vanished`) : Effect.succeed(view(r))))

    const checkRange = (port: number) =>
      port >= config.portRange.low && port <= config.portRange.high
        ? Effect.void
        : fail(`port ${port} is outside instance_port_range ${config.portRange.low}-${config.portRange.high}`)

    // -------------------------------------------------------------------------- processes

    /** Polls until the server answers, its process exits, or the time is up. */
    const waitAnswer = (engine: Engine, record: InstanceRecord, pid: number, timeoutMs: number) =>
      Effect.gen(function* () {
        const deadline = (yield* Clock.currentTimeMillis) + timeoutMs
        for (;;) {
          if (!isAlive(pid)) return "exited" as StartOutcome
          if (yield* engine.probe(record)) return "answered" as StartOutcome
          if ((yield* Clock.currentTimeMillis) >= deadline) return "timeout" as StartOutcome
          yield* Effect.sleep(Duration.millis(probeEveryMs))
        }
      })

    /** Starts the server (recording its pid at once, so a crash of the agent leaves it adoptable). */
    const startServer = (engine: Engine, record: InstanceRecord, timeoutMs: number) =>
      Effect.gen(function* () {
        yield* engine.reapOrphans(record)
        const pid = yield* engine.spawn(record)
        yield* setPid(record.port, pid)
        const rt = runtimeOf(record.port)
        Object.assign(rt, { phase: "starting", answered: false, unansweredSinceMs: null })
        const started = yield* Clock.currentTimeMillis
        const outcome = yield* waitAnswer(engine, { ...record, pid }, pid, timeoutMs)
        if (outcome === "answered") Object.assign(rt, { phase: "running", answered: true })
        if (outcome === "exited") rt.phase = "dead"
        return { pid, outcome, tookMs: (yield* Clock.currentTimeMillis) - started }
      })

    const startFailure = (engine: Engine, record: InstanceRecord, outcome: StartOutcome, timeoutMs: number): string => {
      const log = engine.logTail(record.dir)
      const what =
        outcome === "exited" ? "exited during start-up" : `did not answer select 1 within ${Math.round(timeoutMs / 1000)} s`
      return `${record.kind} instance ${record.port} ${what}${log ? `; end of its log:\n${log}` : ""}`
    }

    const stopProcess = (engine: Engine, record: InstanceRecord) =>
      Effect.gen(function* () {
        const pid = engine.findPid(record)
        if (pid !== null) yield* terminate(pid, engine.stopSignal, stopGraceMs)
        yield* engine.reapOrphans(record)
        yield* setPid(record.port, null)
      })

    // ----------------------------------------------------------------------------- install

    const removeDir = (dir: string) =>
      Effect.try({
        try: () => fs.rmSync(dir, { recursive: true, force: true }),
        catch: (e) => new JobError({ message: `cannot remove ${dir}: ${errnoText(e)}` })
      })

    const blankRecord = (kind: Kind, port: number, dir: string, at: number): InstanceRecord => ({
      kind,
      port,
      dir,
      pid: null,
      stopped_on_purpose: false,
      restarts: 0,
      replica_of: null,
      created_at: at
    })

    /** A directory left by an install that never finished: its server (if any) killed, the directory removed. */
    const clearLeftover = (engine: Engine, dir: string, port: number) =>
      Effect.gen(function* () {
        let entries: Array<string>
        try {
          entries = fs.readdirSync(dir)
        } catch {
          return
        }
        if (entries.length > 0 && !entries.includes(installMarker)) {
          return yield* fail(`${dir} exists and was not made by a node_mgr install; remove it or use another port`)
        }
        const leftover = engine.findPid(blankRecord(engine.kind, port, dir, 0))
        if (leftover !== null) yield* terminate(leftover, "SIGKILL", 10_000)
        yield* engine.reapOrphans(blankRecord(engine.kind, port, dir, 0))
        yield* Effect.logInfo(`${engine.kind} ${port}: removing the leftover of an unfinished install in ${dir}`)
        yield* removeDir(dir)
      })

    const abandonInstall = (engine: Engine, record: InstanceRecord, pid: number | null) =>
      Effect.gen(function* () {
        const found = engine.findPid({ ...record, pid })
        if (found !== null) yield* terminate(found, "SIGKILL", 10_000)
        yield* engine.reapOrphans(record)
        yield* removeDir(record.dir).pipe(Effect.ignore)
        runtimes.delete(record.port)
      })

    const install: InstancesApi["install"] = (kind, port, options) =>
      lockOf(port).withPermits(1)(
        Effect.gen(function* () {
          yield* checkRange(port)
          const engine = engines[kind]
          const existing = yield* find(port)
          if (existing !== undefined) {
            return existing.kind === kind ? view(existing) : yield* fail(`port ${port} is already used by a ${existing.kind} instance`)
          }
          const dir = instanceDir(engine.root, port)
          yield* clearLeftover(engine, dir, port)
          if (!(yield* portIdle(config.local_ip, port))) return yield* fail(`port ${port} is in use on ${config.local_ip}`)
          yield* engine.prepareDir(dir)
          yield* Effect.try({
            try: () => fs.writeFileSync(path.join(dir, installMarker), ""),
            catch: (e) => new JobError({ message: `cannot write in ${dir}: ${errnoText(e)}` })
          })
          const record = blankRecord(kind, port, dir, yield* Clock.currentTimeMillis)
          let spawned: number | null = null
          const steps = Effect.gen(function* () {
            yield* Effect.logInfo(`${kind} ${port}: installing in ${dir}`)
            yield* engine.initialize(dir, port, options)
            const started = yield* startServer(engine, record, installWaitMs)
            spawned = started.pid
            if (started.outcome !== "answered") return yield* fail(startFailure(engine, record, started.outcome, installWaitMs))
            const running = { ...record, pid: started.pid }
            yield* engine.setup(running)
            yield* store.update((s) => putInstance(s, running)).pipe(Effect.mapError(writeError))
            fs.rmSync(path.join(dir, installMarker), { force: true })
            Object.assign(runtimeOf(port), freshRuntime("running"))
            yield* Effect.logInfo(`${kind} ${port}: installed, pid ${started.pid}`)
            return view(running)
          })
          return yield* steps.pipe(
            Effect.onExit((exit) => (Exit.isSuccess(exit) ? Effect.void : abandonInstall(engine, record, spawned)))
          )
        })
      )

    // ------------------------------------------------------------------------------ delete

    const remove: InstancesApi["remove"] = (kind, port) =>
      lockOf(port).withPermits(1)(
        Effect.gen(function* () {
          yield* checkRange(port)
          const record = yield* find(port)
          if (record === undefined) {
            return { kind, port, deleted: false, detail: `no ${kind} instance on port ${port}; nothing to delete` }
          }
          if (record.kind !== kind) return yield* fail(`port ${port} is a ${record.kind} instance, not a ${kind} instance`)
          // Stopped on purpose first: if the agent dies half-way, the supervisor does not revive it.
          yield* update(port, (r) => ({ ...r, stopped_on_purpose: true }))
          yield* stopProcess(engines[kind], record)
          yield* removeDir(record.dir)
          yield* store.update((s) => removeInstance(s, port)).pipe(Effect.mapError(writeError))
          runtimes.delete(port)
          yield* Effect.logInfo(`${kind} ${port}: deleted`)
          return { kind, port, deleted: true, detail: `stopped and removed ${record.dir}` }
        })
      )

    // ----------------------------------------------------------------------------- control

    const stopOnPurpose = (engine: Engine, record: InstanceRecord) =>
      Effect.gen(function* () {
        yield* update(record.port, (r) => ({ ...r, stopped_on_purpose: true }))
        yield* stopProcess(engine, record)
        Object.assign(runtimeOf(record.port), freshRuntime("stopped"))
        yield* Effect.logInfo(`${record.kind} ${record.port}: stopped on purpose`)
      })

    const startOnPurpose = (engine: Engine, port: number) =>
      Effect.gen(function* () {
        yield* update(port, (r) => ({ ...r, stopped_on_purpose: false }))
        const record = yield* find(port)
        if (record === undefined) return yield* fail(`instance ${port} vanished`)
        const rt = runtimeOf(port)
        Object.assign(rt, { failures: 0, retryAtMs: 0 })
        const pid = engine.findPid(record)
        const outcome =
          pid !== null
            ? yield* waitAnswer(engine, record, pid, startWaitMs)
            : (yield* startServer(engine, { ...record, pid: null }, startWaitMs)).outcome
        if (outcome === "answered") Object.assign(rt, { phase: "running", answered: true })
        if (outcome !== "answered") return yield* fail(startFailure(engine, record, outcome, startWaitMs))
        yield* Effect.logInfo(`${record.kind} ${port}: started on request`)
      })

    const control: InstancesApi["control"] = (port, action, kind) =>
      lockOf(port).withPermits(1)(
        Effect.gen(function* () {
          yield* checkRange(port)
          const record = yield* find(port)
          if (record === undefined) return yield* fail(`no instance on port ${port}`)
          if (kind !== undefined && kind !== record.kind) {
            return yield* fail(`port ${port} is a ${record.kind} instance, not a ${kind} instance`)
          }
          const engine = engines[record.kind]
          if (action !== "start") yield* stopOnPurpose(engine, record)
          if (action !== "stop") yield* startOnPurpose(engine, port)
          return yield* viewOf(port)
        })
      )

    // ------------------------------------------------------------------------- replication

    const runningStorage = (port: number, job: string) =>
      Effect.gen(function* () {
        yield* checkRange(port)
        const record = yield* find(port)
        if (record === undefined) return yield* fail(`no instance on port ${port}`)
        if (record.kind !== "storage") return yield* fail(`${job} applies to storage instances; port ${port} is a computer instance`)
        if (engines.storage.findPid(record) === null || !(yield* engines.storage.probe(record))) {
          return yield* fail(`storage instance ${port} is not running`)
        }
        return record
      })

    const slaveState = (record: InstanceRecord) =>
      Effect.map(Mariadb.runSql(config, record, "SHOW SLAVE STATUS", { vertical: true }), (out) =>
        slaveStateOf(parseVertical(out))
      )

    const waitReplicating = (record: InstanceRecord) =>
      Effect.gen(function* () {
        const deadline = (yield* Clock.currentTimeMillis) + replicaWaitMs
        let state: SlaveState = yield* slaveState(record)
        while (!replicating(state) && (yield* Clock.currentTimeMillis) < deadline) {
          yield* Effect.sleep(Duration.millis(300))
          state = yield* slaveState(record)
        }
        return state
      })

    const setReplica: InstancesApi["setReplica"] = (port, host, primaryPort) =>
      lockOf(port).withPermits(1)(
        Effect.gen(function* () {
          if (host === config.local_ip && primaryPort === port) return yield* fail("an instance cannot replicate from itself")
          const record = yield* runningStorage(port, "set_replica")
          yield* Mariadb.runSql(config, record, setReplicaSql(host, primaryPort, config.replication_password))
          yield* update(port, (r) => ({ ...r, replica_of: { primary_host: host, primary_port: primaryPort } }))
          const state = yield* waitReplicating(record)
          if (!replicating(state)) {
            return yield* fail(
              `storage instance ${port} does not replicate from ${host}:${primaryPort} within ${replicaWaitMs / 1000} s: ${describeSlave(state)}`
            )
          }
          const pos = yield* Mariadb.runSql(config, record, "SELECT @@GLOBAL.gtid_slave_pos")
          yield* Effect.logInfo(`storage ${port}: replicates from ${host}:${primaryPort}`)
          return { port, primary_host: host, primary_port: primaryPort, read_only: true, gtid_slave_pos: pos.trim() }
        })
      )

    const promote: InstancesApi["promote"] = (port) =>
      lockOf(port).withPermits(1)(
        Effect.gen(function* () {
          const record = yield* runningStorage(port, "promote_replica")
          yield* Mariadb.runSql(config, record, promoteSql)
          yield* update(port, (r) => ({ ...r, replica_of: null }))
          const pos = yield* Mariadb.runSql(config, record, "SELECT @@GLOBAL.gtid_binlog_pos")
          yield* Effect.logInfo(`storage ${port}: promoted (writable, replicates from nobody)`)
          return { port, read_only: false, gtid_binlog_pos: pos.trim() }
        })
      )

    // ------------------------------------------------------------------------- supervision

    const restartDead = (engine: Engine, record: InstanceRecord, rt: Runtime) =>
      Effect.gen(function* () {
        const attempt = yield* startServer(engine, { ...record, pid: null }, startWaitMs).pipe(Effect.either)
        const now = yield* Clock.currentTimeMillis
        const failed = (detail: string) =>
          Effect.gen(function* () {
            rt.failures += 1
            rt.retryAtMs = now + restartBackoffMs(intervalMs, rt.failures)
            rt.phase = "dead"
            yield* setPid(record.port, null)
            yield* report(record, "restart_failed", `${detail}; next attempt in ${Math.round((rt.retryAtMs - now) / 1000)} s`)
          })
        if (attempt._tag === "Left") return yield* failed(attempt.left.message)
        const { pid, outcome, tookMs } = attempt.right
        if (outcome === "exited") return yield* failed(startFailure(engine, record, outcome, startWaitMs))
        rt.failures = 0
        yield* update(record.port, (r) => ({ ...r, restarts: r.restarts + 1 }))
        const was = record.pid === null ? "it had no process" : `pid ${record.pid} was gone`
        const answer = outcome === "answered" ? `answers select 1 after ${tookMs} ms` : "does not answer select 1 yet"
        yield* report(record, "restarted", `${was}; started pid ${pid}, which ${answer}`)
      })

    const onNoProcess = (engine: Engine, record: InstanceRecord, rt: Runtime) =>
      Effect.gen(function* () {
        if (record.stopped_on_purpose) {
          rt.phase = "stopped"
          return
        }
        if (rt.phase !== "dead") {
          Object.assign(rt, { phase: "dead", retryAtMs: 0, answered: false })
          yield* report(record, "died", record.pid === null ? "no process" : `pid ${record.pid} is gone`)
        }
        if ((yield* Clock.currentTimeMillis) < rt.retryAtMs) return
        yield* restartDead(engine, record, rt)
      })

    const onUnanswered = (engine: Engine, record: InstanceRecord, pid: number, rt: Runtime) =>
      Effect.gen(function* () {
        // Never answered since it started: still starting (crash recovery may take long).
        if (!rt.answered) {
          rt.phase = "starting"
          return
        }
        const now = yield* Clock.currentTimeMillis
        rt.unansweredSinceMs ??= now
        if (now - rt.unansweredSinceMs < hungMs || record.stopped_on_purpose) return
        yield* report(record, "died", `pid ${pid} has not answered select 1 for ${now - rt.unansweredSinceMs} ms; killed it`)
        signalPid(pid, "SIGKILL")
        yield* waitGone(pid, 10_000)
        Object.assign(rt, { phase: "dead", retryAtMs: 0, answered: false, unansweredSinceMs: null })
        yield* restartDead(engine, { ...record, pid }, rt)
      })

    const checkOne = (port: number) =>
      Effect.gen(function* () {
        const found = yield* find(port)
        if (found === undefined) return
        const engine = engines[found.kind]
        const rt = runtimeOf(port)
        const pid = engine.findPid(found)
        if (pid !== found.pid && pid !== null) yield* setPid(port, pid)
        const record = { ...found, pid: pid ?? found.pid }
        if (pid === null) return yield* onNoProcess(engine, record, rt)
        if (yield* engine.probe(record)) {
          Object.assign(rt, { phase: "running", answered: true, unansweredSinceMs: null })
          return
        }
        yield* onUnanswered(engine, record, pid, rt)
      }).pipe(
        lockOf(port).withPermitsIfAvailable(1),
        Effect.catchAllCause((cause) => Effect.logError(`check of instance ${port} failed: ${Cause.pretty(cause)}`))
      )

    const adoptOne = (record: InstanceRecord) =>
      lockOf(record.port).withPermits(1)(
        Effect.gen(function* () {
          const engine = engines[record.kind]
          const pid = engine.findPid(record)
          if (pid !== null) {
            if (pid !== record.pid) yield* setPid(record.port, pid)
            const answers = yield* engine.probe({ ...record, pid })
            runtimes.set(record.port, freshRuntime(answers ? "running" : "starting"))
            yield* report(record, "adopted", answers ? `pid ${pid} answers select 1` : `pid ${pid} is alive and does not answer select 1 yet`)
          } else if (record.stopped_on_purpose) {
            runtimes.set(record.port, freshRuntime("stopped"))
          } else {
            runtimes.set(record.port, freshRuntime("dead"))
            yield* report(record, "died", `${record.pid === null ? "no process" : `pid ${record.pid} is gone`} at agent start`)
          }
        })
      ).pipe(Effect.catchAll((e) => Effect.logError(`adopting instance ${record.port}: ${e.message}`)))

    const adoptAll = Effect.gen(function* () {
      const state = yield* store.get
      yield* Effect.forEach(state.instances, adoptOne, { concurrency: 8, discard: true })
      if (state.instances.length > 0) yield* Effect.logInfo(`adopted the state of ${state.instances.length} instance(s)`)
    })

    const superviseRound = Effect.gen(function* () {
      const state = yield* store.get
      for (const record of state.instances) yield* FiberSet.run(checks, Effect.asVoid(checkOne(record.port)))
    })

    return {
      list: Effect.map(store.get, (s) => s.instances.map(view)),
      install,
      remove,
      control,
      setReplica,
      promote,
      portIdle: (port) =>
        Effect.flatMap(find(port), (record) => (record !== undefined ? Effect.succeed(false) : portIdle(config.local_ip, port))),
      adoptAll,
      superviseRound
    } satisfies InstancesApi
  })

export const layer = (config: AgentConfig): Layer.Layer<Instances, never, StateStore> => Layer.scoped(Instances, make(config))
