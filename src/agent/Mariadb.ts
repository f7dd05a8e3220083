import { Effect, Either } from "effect"
import * as fs from "node:fs"
import { type MariadbBinaries, isRoot, mariadbAdminUser, resolveMariadb } from "./binaries.js"
import type { AgentConfig } from "./config.js"
import type { Engine } from "./Engine.js"
import { errnoText, JobError } from "./errors.js"
import { defaultBufferPoolSize, renderStorageCnf, storagePaths, storageSetupSql } from "./layout.js"
import { fileTail, isInstanceProcess, readPidFile, run, spawnDetached } from "./proc.js"
import type { InstanceRecord } from "./state.js"

/** Storage instances: MariaDB from the machine's packages, one mariadbd per port. */

const serverNames = ["mariadbd", "mysqld"]
const installTimeoutMs = 180_000
const probeTimeoutMs = 5_000
const sqlTimeoutMs = 30_000

const binaries = (config: AgentConfig): Effect.Effect<MariadbBinaries, JobError> =>
  Effect.suspend(() => {
    const found = resolveMariadb(config.mariadb_bin_dir)
    return Either.isRight(found) ? Effect.succeed(found.right) : Effect.fail(new JobError({ message: found.left }))
  })

/** Client arguments for the admin account over the instance's socket; never through TCP. */
const clientArgs = (record: InstanceRecord, extra: ReadonlyArray<string>): ReadonlyArray<string> => [
  "--no-defaults",
  `--socket=${storagePaths(record.dir).socket}`,
  `--user=${mariadbAdminUser()}`,
  "--connect-timeout=3",
  "--batch",
  ...extra
]

/** Runs SQL on the instance through the mariadb client (argv, no shell); its output. */
export const runSql = (
  config: AgentConfig,
  record: InstanceRecord,
  sql: string,
  options: { readonly vertical?: boolean; readonly timeoutMs?: number } = {}
): Effect.Effect<string, JobError> =>
  Effect.gen(function* () {
    const bin = yield* binaries(config)
    // Vertical output keeps the column names (`Name: value` lines); tabular output drops them.
    const args = clientArgs(record, [options.vertical ? "--vertical" : "--skip-column-names", "-e", sql])
    const result = yield* run(bin.client, args, { timeoutMs: options.timeoutMs ?? sqlTimeoutMs }).pipe(
      Effect.mapError((e) => new JobError({ message: `storage instance ${record.port}: ${e.message}` }))
    )
    return result.stdout
  })

export const make = (config: AgentConfig): Engine => ({
  kind: "storage",
  root: config.storage_data_root,

  prepareDir: (dir) =>
    Effect.try({
      try: () => fs.mkdirSync(dir, { recursive: true, mode: 0o750 }),
      catch: (e) => new JobError({ message: `cannot create ${dir}: ${errnoText(e)}` })
    }).pipe(Effect.asVoid),

  initialize: (dir, port, options) =>
    Effect.gen(function* () {
      const bin = yield* binaries(config)
      const paths = storagePaths(dir)
      yield* Effect.try({
        try: () =>
          fs.writeFileSync(
            paths.cnf,
            renderStorageCnf(paths, { ip: config.local_ip, port, bufferPoolSize: options.bufferPoolSize ?? defaultBufferPoolSize })
          ),
        catch: (e) => new JobError({ message: `cannot write ${paths.cnf}: ${errnoText(e)}` })
      })
      const account = isRoot() ? ["--user=root"] : [`--auth-root-socket-user=${mariadbAdminUser()}`]
      yield* run(
        bin.installDb,
        [
          "--no-defaults",
          `--datadir=${paths.data}`,
          ...account,
          "--auth-root-authentication-method=socket",
          "--skip-test-db"
        ],
        { timeoutMs: installTimeoutMs }
      ).pipe(Effect.mapError((e) => new JobError({ message: `storage instance ${port}: ${e.message}` })))
    }),

  setup: (record) => Effect.asVoid(runSql(config, record, storageSetupSql(config.replication_password))),

  spawn: (record) =>
    Effect.gen(function* () {
      const bin = yield* binaries(config)
      const paths = storagePaths(record.dir)
      const args = [
        `--defaults-file=${paths.cnf}`,
        ...(isRoot() ? ["--user=root"] : []),
        ...(record.replica_of === null ? [] : ["--read-only=ON"])
      ]
      return yield* spawnDetached(bin.mariadbd, args, { logFile: paths.log, cwd: record.dir }).pipe(
        Effect.mapError((e) => new JobError({ message: `storage instance ${record.port}: ${e.message}` }))
      )
    }),

  probe: (record) =>
    Effect.gen(function* () {
      const bin = yield* binaries(config)
      const result = yield* run(bin.client, clientArgs(record, ["--skip-column-names", "-e", "select 1"]), { timeoutMs: probeTimeoutMs })
      return result.stdout.trim() === "1"
    }).pipe(Effect.orElseSucceed(() => false)),

  findPid: (record) => {
    const marker = storagePaths(record.dir).cnf
    if (record.pid !== null && isInstanceProcess(record.pid, serverNames, marker)) return record.pid
    const fromFile = readPidFile(storagePaths(record.dir).pidFile)
    return fromFile !== undefined && isInstanceProcess(fromFile, serverNames, marker) ? fromFile : null
  },

  stopSignal: "SIGTERM",

  reapOrphans: () => Effect.void,

  logTail: (dir) => fileTail(storagePaths(dir).log)
})
