import * as FetchHttpClient from "@effect/platform/FetchHttpClient"
import { Context, Effect, ExecutionStrategy, Exit, Layer, Scope, Stream } from "effect"
import * as fs from "node:fs"
import * as path from "node:path"
import { MemoryNetwork, MemoryTransport } from "./actors/MemoryTransport.js"
import * as RaftNode from "./actors/RaftNode.js"
import * as JobScheduler from "./actors/JobScheduler.js"
import * as AgentClient from "./fleet/AgentClient.js"
import { defaultFleetSettings, FleetSettings, type FleetSettingsApi } from "./fleet/FleetSettings.js"
import { defaultRaftOptions, type RaftOptions } from "./domain/raft/options.js"
import { Journal, type JournalRetention } from "./storage/Journal.js"
import { openRaftLog, type PersistMode, persistModeFromEnv } from "./storage/RaftLog.js"

export interface InProcessOptions {
  /** Member names (raft addresses). */
  readonly members: ReadonlyArray<string>
  /** Each member's data lives in `${dataDir}/${index}`. */
  readonly dataDir: string
  readonly tickMs?: number
  readonly raft?: Partial<RaftOptions>
  /** Journal retention (cnf journal_retain_events / journal_retain_days); default: keep everything. */
  readonly journalRetention?: JournalRetention
  /** How the leader watches machines' agents (defaults: 5 s pings, dead after 3 misses). */
  readonly fleet?: Partial<FleetSettingsApi>
  /**
   * How each member writes raft.db: inline ("sync", the default unless CLUSTER_MGR_PERSIST says
   * otherwise) or on a writer thread ("worker", a cluster_mgr process's default); see
   * storage/RaftLog.ts.
   */
  readonly persist?: PersistMode
  /** Proposals and reads waiting longer fail with TimedOut (default 10 s). */
  readonly operationTimeoutMs?: number
}

export interface InProcessMember {
  readonly id: string
  readonly node: RaftNode.RaftNodeApi
  /** Stops this member (its scope closes: fibers interrupted, files closed). */
  readonly stop: Effect.Effect<void>
}

/**
 * A whole Raft group inside one Effect program, over an in-memory network with real SQLite
 * files: for embedding, tests and benchmarks. Each member runs the same RaftNode and
 * JobScheduler layers as a cluster_mgr process. Members live in the caller's scope: when it
 * closes, every member (restarted ones too) stops.
 */
export const makeInProcessGroup = (options: InProcessOptions) =>
  Effect.gen(function* () {
    const outer = yield* Effect.scope
    const network = yield* MemoryNetwork.make
    const start = (id: string, index: number) =>
      Effect.gen(function* () {
        const dir = path.join(options.dataDir, String(index))
        fs.mkdirSync(dir, { recursive: true })
        const scope = yield* Scope.fork(outer, ExecutionStrategy.sequential)
        const storage = openRaftLog(path.join(dir, "raft.db"), { persist: options.persist ?? persistModeFromEnv("sync") })
        const journal = Journal.open(path.join(dir, "journal.db"), options.journalRetention)
        // Closing waits for a write in flight: a restarted member must not load before it lands.
        yield* Scope.addFinalizer(scope, Effect.zipRight(storage.close, Effect.sync(() => journal.close())))
        const raft = RaftNode.layer({
          raft: { ...defaultRaftOptions("inprocess", id, index * 7919 + 1), ...options.raft, id },
          tickMs: options.tickMs ?? 10,
          initialVoters: options.members,
          storage,
          journal,
          ...(options.operationTimeoutMs === undefined ? {} : { operationTimeoutMs: options.operationTimeoutMs })
        }).pipe(Layer.provide(MemoryTransport.layer(network, id)))
        const scheduler = JobScheduler.layer.pipe(
          Layer.provide(Layer.succeed(JobScheduler.NodeHttpAddress, `inprocess:${id}`)),
          Layer.provide(AgentClient.layer.pipe(Layer.provide(FetchHttpClient.layer))),
          Layer.provide(Layer.succeed(FleetSettings, { ...defaultFleetSettings, ...options.fleet }))
        )
        const ctx = yield* Layer.buildWithScope(scheduler.pipe(Layer.provideMerge(raft)), scope)
        const member: InProcessMember = {
          id,
          node: Context.get(ctx, RaftNode.RaftNode),
          stop: Scope.close(scope, Exit.void)
        }
        return member
      })
    const members = yield* Effect.forEach(options.members, (id, i) => start(id, i))
    return { network, members, restart: (i: number) => start(options.members[i], i) }
  })

/** The first of `members` to be leader, as soon as one is (it waits on their leadership changes). */
export const awaitLeader = (members: ReadonlyArray<InProcessMember>): Effect.Effect<InProcessMember> =>
  Effect.raceAll(
    members.map((m) => m.node.leadership.changes.pipe(Stream.filter(RaftNode.isLeader), Stream.runHead, Effect.as(m)))
  )
