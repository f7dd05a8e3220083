import { Either } from "effect"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import type { RunAs } from "./proc.js"

/**
 * Where the database programs are and which OS user runs them. Looked up when a job needs
 * them, so a machine with only MariaDB (or only PostgreSQL) still runs the agent.
 */

export interface MariadbBinaries {
  readonly mariadbd: string
  readonly client: string
  readonly installDb: string
}

export interface PostgresBinaries {
  readonly postgres: string
  readonly initdb: string
  readonly psql: string
}

const isExecutable = (file: string): boolean => {
  try {
    fs.accessSync(file, fs.constants.X_OK)
    return fs.statSync(file).isFile()
  } catch {
    return false
  }
}

/** The first `dir/name` that is an executable file. */
const findIn = (dirs: ReadonlyArray<string>, names: ReadonlyArray<string>): string | undefined => {
  for (const dir of dirs) {
    for (const name of names) {
      const file = path.join(dir, name)
      if (isExecutable(file)) return file
    }
  }
  return undefined
}

const missing = (what: string, dirs: ReadonlyArray<string>, key: string) =>
  `${what} not found in ${dirs.join(", ")} (set \`${key}\` in node_mgr.cnf, or install Debian's ` +
  `${key === "mariadb_bin_dir" ? "mariadb-server" : "postgresql"} package)`

/** mariadbd, mariadb and mariadb-install-db: from `mariadb_bin_dir` (and its ../sbin, ../scripts) or Debian's places. */
export const resolveMariadb = (binDir: string | undefined): Either.Either<MariadbBinaries, string> => {
  const dirs =
    binDir === undefined
      ? ["/usr/sbin", "/usr/bin", "/usr/local/sbin", "/usr/local/bin"]
      : [binDir, path.join(binDir, "../sbin"), path.join(binDir, "../bin"), path.join(binDir, "../scripts")]
  const mariadbd = findIn(dirs, ["mariadbd", "mysqld"])
  const client = findIn(dirs, ["mariadb", "mysql"])
  const installDb = findIn(dirs, ["mariadb-install-db", "mysql_install_db"])
  if (mariadbd === undefined) return Either.left(missing("mariadbd", dirs, "mariadb_bin_dir"))
  if (client === undefined) return Either.left(missing("the mariadb client", dirs, "mariadb_bin_dir"))
  if (installDb === undefined) return Either.left(missing("mariadb-install-db", dirs, "mariadb_bin_dir"))
  return Either.right({ mariadbd, client, installDb })
}

/** Debian's /usr/lib/postgresql/<major>/bin directories, newest major first. */
const debianPostgresDirs = (): ReadonlyArray<string> => {
  const base = "/usr/lib/postgresql"
  try {
    return fs
      .readdirSync(base)
      .filter((name) => /^[0-9]+(\.[0-9]+)?$/.test(name))
      .sort((a, b) => Number(b) - Number(a))
      .map((name) => path.join(base, name, "bin"))
  } catch {
    return []
  }
}

/** postgres, initdb and psql from `postgresql_bin_dir` or the newest Debian PostgreSQL. */
export const resolvePostgres = (binDir: string | undefined): Either.Either<PostgresBinaries, string> => {
  const candidates = binDir === undefined ? debianPostgresDirs() : [binDir]
  for (const dir of candidates) {
    const postgres = findIn([dir], ["postgres"])
    const initdb = findIn([dir], ["initdb"])
    const psql = findIn([dir], ["psql"])
    if (postgres !== undefined && initdb !== undefined && psql !== undefined) return Either.right({ postgres, initdb, psql })
  }
  return Either.left(
    missing("postgres, initdb and psql", candidates.length > 0 ? candidates : ["/usr/lib/postgresql/*/bin"], "postgresql_bin_dir")
  )
}

/** One /etc/passwd line's uid and gid for `name`, pure. */
export const passwdEntry = (passwd: string, name: string): RunAs | undefined => {
  for (const line of passwd.split("\n")) {
    const fields = line.split(":")
    if (fields[0] === name && fields.length >= 4) {
      const uid = Number(fields[2])
      const gid = Number(fields[3])
      if (Number.isInteger(uid) && Number.isInteger(gid)) return { uid, gid }
    }
  }
  return undefined
}

export const isRoot = (): boolean => process.getuid?.() === 0

/** The OS user a PostgreSQL instance runs as, and its database superuser's name. */
export interface PostgresUser {
  /** Set when the agent is root: PostgreSQL refuses to run as root, so it runs as `postgres`. */
  readonly runAs: RunAs | undefined
  readonly name: string
}

export const resolvePostgresUser = (): Either.Either<PostgresUser, string> => {
  if (!isRoot()) return Either.right({ runAs: undefined, name: os.userInfo().username })
  let passwd = ""
  try {
    passwd = fs.readFileSync("/etc/passwd", "utf8")
  } catch {
    return Either.left("cannot read /etc/passwd to find the postgres user")
  }
  const entry = passwdEntry(passwd, "postgres")
  return entry === undefined
    ? Either.left("the agent runs as root and there is no `postgres` OS user to run PostgreSQL as (install Debian's postgresql package)")
    : Either.right({ runAs: entry, name: "postgres" })
}

/** The MariaDB account the agent uses over the socket: root's unix_socket login, or the agent's own user's. */
export const mariadbAdminUser = (): string => (isRoot() ? "root" : os.userInfo().username)
