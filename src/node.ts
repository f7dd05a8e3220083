import * as FetchHttpClient from "@effect/platform/FetchHttpClient"
import { Data, Duration, Effect, Layer } from "effect"
import * as fs from "node:fs"
import { createServer } from "node:http"
import * as path from "node:path"
import * as HistoryBackfill from "./actors/HistoryBackfill.js"
import * as JobScheduler from "./actors/JobScheduler.js"
import * as AgentClient from "./fleet/AgentClient.js"
import { FleetSettings, fleetSettingsOf } from "./fleet/FleetSettings.js"
import { NodeHttpAddress } from "./actors/JobScheduler.js"
import * as RaftNode from "./actors/RaftNode.js"
import * as TcpTransport from "./actors/TcpTransport.js"
import type { Config } from "./domain/config.js"
import { defaultRaftOptions } from "./domain/raft/options.js"
import * as HttpRoutes from "./http/server.js"
import { Journal, type JournalRetention } from "./storage/Journal.js"
import { openRaftLog } from "./storage/RaftLog.js"

/** A start-up problem an operator must fix; the CLI prints `message` and exits with code 2. */
/**
 * A client may half-close (FIN) right after its request; Node's server then aborts requests whose
 * reply is not immediate (forwarding, ReadIndex) although they still take effect. Keeping the
 * socket half-open lets such a client read its answer.
 */
const halfOpenServer = () => {
  const server = createServer()
  ;(server as unknown as { httpAllowHalfOpen: boolean }).httpAllowHalfOpen = true
  return server
}

export class StartupError extends Data.TaggedError("StartupError")<{ readonly message: string }> {}

const ticks = (ms: number, tickMs: number) => Math.max(1, Math.round(ms / tickMs))

/** A per-node seed for the core's election jitter: the address plus the start time. */
const seedOf = (self: string): number => {
  let h = Date.now() >>> 0
  for (const c of self) h = (Math.imul(h, 31) + c.charCodeAt(0)) >>> 0
  return h
}

export const raftAddress = (c: Config) => `${c.local_ip}:${c.brpc_raft_port}`
export const httpAddress = (c: Config) => `${c.local_ip}:${c.brpc_http_port}`

const settingsOf = (c: Config, dataDir: string) => {
  const self = raftAddress(c)
  const t = c.raft_tick_ms
  return {
    raft: {
      ...defaultRaftOptions(c.raft_group_id, self, seedOf(self)),
      electionTicks: ticks(c.raft_election_timeout_ms, t),
      electionJitterTicks: ticks(c.raft_election_jitter_ms ?? c.raft_heartbeat_interval_ms, t),
      heartbeatTicks: ticks(c.raft_heartbeat_interval_ms, t),
      preVote: c.raft_pre_vote,
      leaseRead: c.raft_lease_read,
      snapshotEntries: c.raft_snapshot_interval_entries,
      snapshotTicks: ticks(c.raft_snapshot_interval_sec * 1000, t),
      logRetainEntries: c.raft_log_retain_entries,
      catchupTicks: ticks(c.raft_catchup_timeout_ms, t),
      transferTicks: ticks(c.raft_transfer_timeout_ms, t)
    },
    tickMs: t,
    initialVoters: c.raft_group_member_init_config,
    dataDir
  }
}

/** Opens (creating) the data directory, or fails naming the path. */
const openDataDir = (dir: string) =>
  Effect.try({
    try: () => {
      fs.mkdirSync(dir, { recursive: true })
      fs.accessSync(dir, fs.constants.W_OK)
      return path.resolve(dir)
    },
    catch: (e) => new StartupError({ message: `cluster_mgr_tmp_data_path ${dir}: not usable (${(e as NodeJS.ErrnoException).code ?? String(e)})` })
  })

const openStores = (dataDir: string, group: string, self: string, retention: JournalRetention) =>
  Effect.acquireRelease(
    Effect.try({
      try: () => {
        // Persisting on a writer thread unless CLUSTER_MGR_PERSIST=sync (storage/RaftLog.ts).
        const storage = openRaftLog(path.join(dataDir, "raft.db"), { identity: { group, node: self } })
        try {
          return { storage, journal: Journal.open(path.join(dataDir, "journal.db"), retention) }
        } catch (e) {
          Effect.runFork(storage.close)
          throw e
        }
      },
      catch: (e) => new StartupError({ message: `cluster_mgr_tmp_data_path ${dataDir}: ${(e as Error).message}` })
    }),
    ({ storage, journal }) => Effect.zipRight(storage.close, Effect.sync(() => journal.close()))
  )

/**
 * On a graceful stop a leader first hands leadership to a caught-up voter, so clients see no
 * election timeout; it gives up after a bound and stops anyway.
 */
const handOverOnStop = Effect.gen(function* () {
  const node = yield* RaftNode.RaftNode
  yield* Effect.addFinalizer(() =>
    Effect.gen(function* () {
      const s = yield* node.status
      if (s.role !== "leader") return
      const best = s.peers.filter((p) => p.voter && p.matchIndex === s.lastIndex).sort((a, b) => a.ticksSinceContact - b.ticksSinceContact)[0]
      if (!best) return
      yield* Effect.logInfo(`stopping: handing leadership to ${best.peer}`)
      // Finalizers are uninterruptible: the timeout can only cut the wait if it is made interruptible.
      yield* node.transferLeadership(best.peer).pipe(Effect.interruptible, Effect.timeout(Duration.seconds(2)), Effect.ignore)
    })
  )
})

export interface NodeLayerOptions {
  /**
   * Serve the HTTP routes on `local_ip:brpc_http_port` (default). An embedding app that mounts
   * the routes (`makeRouter`) on its own server passes false; that server must then listen at
   * the same address, which a new leader announces so that followers forward to it.
   */
  readonly serveHttp?: boolean
  /**
   * Called if the node's Raft actor dies of a defect (raft.db cannot be written, a bug): the node
   * then acknowledges nothing. The cluster_mgr process exits with code 70 so that its supervisor
   * restarts it; an embedding app decides for itself (default: only the error log line).
   */
  readonly onActorDeath?: (cause: unknown) => void
}

/** The routes on Node's HTTP server at the configured address, with a client for forwarding. */
const httpLayer = (config: Config) =>
  Layer.scopedDiscard(
    HttpRoutes.serveOn(halfOpenServer(), { host: config.local_ip, port: config.brpc_http_port, maxBodyBytes: config.http_max_body_bytes }).pipe(
      Effect.mapError((e) => new StartupError({ message: `brpc_http_port ${config.brpc_http_port}: cannot listen (${String(e)})` }))
    )
  ).pipe(Layer.provide(FetchHttpClient.layer))

/** One cluster_mgr node: storage, transport, Raft, job scheduler and HTTP, as one Layer. */
export const nodeLayer = (config: Config, options: NodeLayerOptions = {}) =>
  Layer.unwrapScoped(
    Effect.gen(function* () {
      const self = raftAddress(config)
      const dataDir = yield* openDataDir(config.cluster_mgr_tmp_data_path)
      const { storage, journal } = yield* openStores(dataDir, config.raft_group_id, self, {
        events: config.journal_retain_events,
        days: config.journal_retain_days
      })
      const s = settingsOf(config, dataDir)
      const transport = TcpTransport.layer({
        group: config.raft_group_id,
        self,
        http: httpAddress(config),
        listen: { host: config.local_ip, port: config.brpc_raft_port },
        faultInjection: config.raft_fault_injection
      }).pipe(Layer.mapError((e) => new StartupError({ message: `brpc_raft_port ${config.brpc_raft_port}: ${e.message}` })))
      // provideMerge: the HTTP layer reaches TransportControl for the test-only fault endpoint.
      const raft = RaftNode.layer({ ...s, storage, journal, onActorDeath: options.onActorDeath }).pipe(Layer.provideMerge(transport))
      const fleet = Layer.merge(
        AgentClient.layer.pipe(Layer.provide(FetchHttpClient.layer)),
        Layer.succeed(FleetSettings, fleetSettingsOf(config))
      )
      const services = Layer.mergeAll(
        JobScheduler.layer.pipe(Layer.provide(fleet)),
        HistoryBackfill.layer(journal).pipe(Layer.provide(FetchHttpClient.layer)),
        Layer.scopedDiscard(handOverOnStop),
        options.serveHttp === false ? Layer.empty : httpLayer(config)
      )
      return services.pipe(Layer.provideMerge(Layer.succeed(NodeHttpAddress, httpAddress(config))), Layer.provideMerge(raft))
    })
  )
