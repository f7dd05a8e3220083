import { Effect, Either } from "effect"
import * as fs from "node:fs"
import * as path from "node:path"
import { type PostgresBinaries, type PostgresUser, resolvePostgres, resolvePostgresUser } from "./binaries.js"
import type { AgentConfig } from "./config.js"
import type { Engine } from "./Engine.js"
import { errnoText, JobError } from "./errors.js"
import { computerPaths } from "./layout.js"
import { fileTail, isInstanceProcess, pidsWithCwd, readPidFile, type RunAs, run, signalPid, spawnDetached, waitGone } from "./proc.js"

/**
 * Computer instances: PostgreSQL from the machine's packages, one postmaster per port. When the
 * agent is root, initdb, postgres and psql run as the `postgres` OS user (setuid by spawn, no
 * sudo or su); the superuser is reached over the instance's socket directory with peer auth.
 */

const serverNames = ["postgres"]
const initdbTimeoutMs = 180_000
const probeTimeoutMs = 5_000

const fromEither = <A>(either: Either.Either<A, string>): Effect.Effect<A, JobError> =>
  Either.isRight(either) ? Effect.succeed(either.right) : Effect.fail(new JobError({ message: either.left }))

const binaries = (config: AgentConfig): Effect.Effect<PostgresBinaries, JobError> =>
  Effect.suspend(() => fromEither(resolvePostgres(config.postgresql_bin_dir)))

const osUser: Effect.Effect<PostgresUser, JobError> = Effect.suspend(() => fromEither(resolvePostgresUser()))

/** Can `who` traverse `dir` by its mode bits (owner, group, other)? */
const searchable = (stat: fs.Stats, who: RunAs): boolean =>
  stat.uid === who.uid ? (stat.mode & 0o100) !== 0 : stat.gid === who.gid ? (stat.mode & 0o010) !== 0 : (stat.mode & 0o001) !== 0

/** The first ancestor of `dir` the postgres user cannot enter, if any. */
const unreachableAncestor = (dir: string, who: RunAs): string | undefined => {
  const parts = path.resolve(dir).split("/").filter((p) => p.length > 0)
  for (let i = 0; i < parts.length; i++) {
    const ancestor = "/" + parts.slice(0, i).join("/")
    try {
      if (!searchable(fs.statSync(ancestor), who)) return ancestor
    } catch {
      return undefined
    }
  }
  return undefined
}

const chownAll = (paths: ReadonlyArray<string>, who: RunAs | undefined): void => {
  if (who === undefined) return
  for (const p of paths) fs.chownSync(p, who.uid, who.gid)
}

export const make = (config: AgentConfig): Engine => ({
  kind: "computer",
  root: config.computer_data_root,

  prepareDir: (dir) =>
    Effect.gen(function* () {
      const user = yield* osUser
      if (user.runAs !== undefined) {
        const blocked = unreachableAncestor(dir, user.runAs)
        if (blocked !== undefined) {
          return yield* new JobError({
            message: `the postgres OS user (uid ${user.runAs.uid}) cannot enter ${blocked}: make it searchable (chmod o+x) or move computer_data_root`
          })
        }
      }
      const paths = computerPaths(dir)
      yield* Effect.try({
        try: () => {
          fs.mkdirSync(dir, { recursive: true, mode: 0o700 })
          fs.mkdirSync(paths.sockDir, { mode: 0o700 })
          chownAll([dir, paths.sockDir], user.runAs)
        },
        catch: (e) => new JobError({ message: `cannot create ${dir}: ${errnoText(e)}` })
      })
    }),

  initialize: (dir, port) =>
    Effect.gen(function* () {
      const bin = yield* binaries(config)
      const user = yield* osUser
      const paths = computerPaths(dir)
      yield* run(
        bin.initdb,
        [
          "-D",
          paths.data,
          "-U",
          user.name,
          "--auth-local=peer",
          "--auth-host=scram-sha-256",
          "-E",
          "UTF8",
          "--locale=C",
          "--no-instructions"
        ],
        { timeoutMs: initdbTimeoutMs, ...(user.runAs === undefined ? {} : { runAs: user.runAs }) }
      ).pipe(Effect.mapError((e) => new JobError({ message: `computer instance ${port}: ${e.message}` })))
    }),

  setup: () => Effect.void,

  spawn: (record) =>
    Effect.gen(function* () {
      const bin = yield* binaries(config)
      const user = yield* osUser
      const paths = computerPaths(record.dir)
      const args = ["-D", paths.data, "-p", String(record.port), "-k", paths.sockDir, "-c", `listen_addresses=${config.local_ip}`]
      return yield* spawnDetached(bin.postgres, args, {
        logFile: paths.log,
        cwd: record.dir,
        ...(user.runAs === undefined ? {} : { runAs: user.runAs })
      }).pipe(Effect.mapError((e) => new JobError({ message: `computer instance ${record.port}: ${e.message}` })))
    }),

  probe: (record) =>
    Effect.gen(function* () {
      const bin = yield* binaries(config)
      const user = yield* osUser
      const paths = computerPaths(record.dir)
      const args = ["-X", "-A", "-t", "-h", paths.sockDir, "-p", String(record.port), "-U", user.name, "-d", "postgres", "-c", "select 1"]
      const result = yield* run(bin.psql, args, {
        timeoutMs: probeTimeoutMs,
        env: { PGCONNECT_TIMEOUT: "3" },
        ...(user.runAs === undefined ? {} : { runAs: user.runAs })
      })
      return result.stdout.trim() === "1"
    }).pipe(Effect.orElseSucceed(() => false)),

  findPid: (record) => {
    const marker = computerPaths(record.dir).data
    if (record.pid !== null && isInstanceProcess(record.pid, serverNames, marker)) return record.pid
    const fromFile = readPidFile(computerPaths(record.dir).pidFile)
    return fromFile !== undefined && isInstanceProcess(fromFile, serverNames, marker) ? fromFile : null
  },

  // SIGINT is PostgreSQL's fast shutdown; SIGTERM (smart) would wait for every client to leave.
  stopSignal: "SIGINT",

  // Backends of a killed postmaster notice and exit; until they have, a new postmaster refuses
  // to start on the data directory (its shared memory is still in use).
  reapOrphans: (record) =>
    Effect.gen(function* () {
      const orphans = pidsWithCwd(computerPaths(record.dir).data)
      for (const pid of orphans) signalPid(pid, "SIGKILL")
      for (const pid of orphans) yield* waitGone(pid, 5_000)
    }),

  logTail: (dir) => fileTail(computerPaths(dir).log)
})
