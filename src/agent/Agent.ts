import * as NodeHttpServer from "@effect/platform-node/NodeHttpServer"
import { Duration, Effect, Layer, Schedule } from "effect"
import * as fs from "node:fs"
import { createServer } from "node:http"
import * as path from "node:path"
import { type AgentConfig, agentAddress } from "./config.js"
import { AgentStartupError, errnoText } from "./errors.js"
import * as Http from "./http.js"
import * as Instances from "./Instances.js"
import * as Jobs from "./Jobs.js"
import { argvOf, isAlive, readPidFile } from "./proc.js"
import * as StateStore from "./StateStore.js"

/**
 * One node_mgr agent as a Layer: its directories and state, the instances (adopted before the
 * first request is served), the supervisor, and the HTTP API on local_ip:brpc_http_port.
 */

/** Creates `dir` if needed and checks it is a writable directory; fails naming the key and path. */
const usableDir = (key: string, dir: string, mode: number) =>
  Effect.try({
    try: () => {
      // A directory made here gets `mode` whatever the umask; an existing one is left as it is.
      if (fs.mkdirSync(dir, { recursive: true, mode }) !== undefined) fs.chmodSync(dir, mode)
      if (!fs.statSync(dir).isDirectory()) throw Object.assign(new Error("not a directory"), { code: "ENOTDIR" })
      fs.accessSync(dir, fs.constants.W_OK | fs.constants.X_OK)
      const probe = path.join(dir, `.node_mgr_write_test_${process.pid}`)
      fs.writeFileSync(probe, "")
      fs.rmSync(probe)
    },
    catch: (e) => new AgentStartupError({ message: `${key} ${dir}: not a writable directory (${errnoText(e)})` })
  })

const pidFileName = "node_mgr.pid"

/**
 * One agent per state directory: a second one would restart the first one's instances. The
 * pid file names the owner; a stale one (its process gone, or not a node_mgr) is taken over.
 */
const holdStateDir = (dir: string) =>
  Effect.acquireRelease(
    Effect.suspend(() => {
      const file = path.join(dir, pidFileName)
      const owner = readPidFile(file)
      if (owner !== undefined && owner !== process.pid && isAlive(owner) && argvOf(owner).some((a) => a.includes("node_mgr"))) {
        return Effect.fail(new AgentStartupError({ message: `node_mgr_tmp_data_path ${dir} is in use by node_mgr pid ${owner}` }))
      }
      return Effect.try({
        try: () => fs.writeFileSync(file, `${process.pid}\n`),
        catch: (e) => new AgentStartupError({ message: `node_mgr_tmp_data_path ${dir}: cannot write ${file} (${errnoText(e)})` })
      })
    }),
    () => Effect.sync(() => fs.rmSync(path.join(dir, pidFileName), { force: true }))
  )

const binDirExists = (key: string, dir: string | undefined) =>
  dir === undefined || fs.existsSync(dir)
    ? Effect.void
    : Effect.fail(new AgentStartupError({ message: `${key} ${dir}: no such directory` }))

const supervisorLayer = (config: AgentConfig) =>
  Layer.scopedDiscard(
    Effect.gen(function* () {
      const instances = yield* Instances.Instances
      yield* instances.superviseRound.pipe(
        Effect.repeat(Schedule.spaced(Duration.millis(Math.round(config.thread_work_interval * 1000)))),
        Effect.forkScoped
      )
    })
  )

/** Instances, adopted from the state file before anything else uses them. */
const instancesLayer = (config: AgentConfig) =>
  Layer.effectDiscard(Effect.flatMap(Instances.Instances, (i) => i.adoptAll)).pipe(
    Layer.provideMerge(Instances.layer(config)),
    Layer.provideMerge(StateStore.layer(config.node_mgr_tmp_data_path))
  )

const httpLayer = (config: AgentConfig) =>
  Http.layer(config.http_max_body_bytes).pipe(
    Layer.provide(
      NodeHttpServer.layer(createServer, { host: config.local_ip, port: config.brpc_http_port }).pipe(
        Layer.mapError(
          (e) =>
            new AgentStartupError({
              message: `brpc_http_port ${config.brpc_http_port}: cannot listen on ${agentAddress(config)} (${String(e.cause ?? e)})`
            })
        )
      )
    )
  )

export const agentLayer = (config: AgentConfig, version: string) =>
  Layer.unwrapScoped(
    Effect.gen(function* () {
      yield* usableDir("node_mgr_tmp_data_path", config.node_mgr_tmp_data_path, 0o700)
      // Searchable by others: PostgreSQL instances below run as the postgres user.
      yield* usableDir("storage_data_root", config.storage_data_root, 0o755)
      yield* usableDir("computer_data_root", config.computer_data_root, 0o755)
      yield* binDirExists("mariadb_bin_dir", config.mariadb_bin_dir)
      yield* binDirExists("postgresql_bin_dir", config.postgresql_bin_dir)
      yield* holdStateDir(config.node_mgr_tmp_data_path)
      yield* Effect.addFinalizer(() => Effect.logInfo("stopping; the instances keep running"))
      yield* Effect.logInfo(
        `starting node_mgr ${version} on ${agentAddress(config)}: state ${config.node_mgr_tmp_data_path}, ` +
          `storage ${config.storage_data_root}, computer ${config.computer_data_root}, ` +
          `ports ${config.portRange.low}-${config.portRange.high}, interval ${config.thread_work_interval} s`
      )
      return Layer.mergeAll(supervisorLayer(config), httpLayer(config).pipe(Layer.provide(Jobs.layer(config, version)))).pipe(
        Layer.provide(instancesLayer(config))
      )
    })
  )
