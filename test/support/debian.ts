import { execFile } from "node:child_process"
import * as fs from "node:fs"
import * as path from "node:path"

/**
 * The database servers the node_mgr tests run: Debian's mariadb-server and postgresql. A CI
 * machine starts with Node only, so the tests install them (as root, with apt-get) when missing.
 */

export interface DebianDatabases {
  /** True when MariaDB and PostgreSQL binaries are present (installed now or before). */
  readonly available: boolean
  /** Why they are not, for the skip message. */
  readonly reason?: string
}

const executable = (file: string): boolean => {
  try {
    fs.accessSync(file, fs.constants.X_OK)
    return true
  } catch {
    return false
  }
}

/** The newest /usr/lib/postgresql/<major>/bin with postgres, initdb and psql. */
export const postgresBinDir = (): string | undefined => {
  let majors: Array<string> = []
  try {
    majors = fs.readdirSync("/usr/lib/postgresql").filter((m) => /^[0-9]+$/.test(m))
  } catch {
    return undefined
  }
  return majors
    .sort((a, b) => Number(b) - Number(a))
    .map((m) => path.join("/usr/lib/postgresql", m, "bin"))
    .find((dir) => ["postgres", "initdb", "psql"].every((p) => executable(path.join(dir, p))))
}

const missingBinaries = (): ReadonlyArray<string> => [
  ...["/usr/sbin/mariadbd", "/usr/bin/mariadb", "/usr/bin/mariadb-install-db"].filter((f) => !executable(f)),
  ...(postgresBinDir() === undefined ? ["/usr/lib/postgresql/*/bin/{postgres,initdb,psql}"] : [])
]

const run = (file: string, args: ReadonlyArray<string>, timeoutMs: number): Promise<void> =>
  new Promise((resolve, reject) => {
    execFile(
      file,
      [...args],
      { timeout: timeoutMs, maxBuffer: 64 * 1024 * 1024, env: { ...process.env, DEBIAN_FRONTEND: "noninteractive" } },
      (error, _stdout, stderr) =>
        error === null ? resolve() : reject(new Error(`${file} ${args.join(" ")} failed: ${error.message}\n${stderr.slice(-2000)}`))
    )
  })

let once: Promise<DebianDatabases> | undefined

/**
 * Installs mariadb-server and postgresql with apt-get when their binaries are missing (root
 * only; otherwise reports them unavailable with the reason, and the caller skips). Runs at
 * most once per test worker. Give the calling hook a long timeout: apt can take minutes.
 */
export const ensureDebianPackages = (): Promise<DebianDatabases> => {
  once ??= (async () => {
    const missing = missingBinaries()
    if (missing.length === 0) return { available: true }
    if (process.getuid?.() !== 0) {
      const reason = `MariaDB/PostgreSQL missing (${missing.join(", ")}) and not root, so apt-get cannot install them: skipping`
      console.warn(reason)
      return { available: false, reason }
    }
    console.warn(`installing mariadb-server and postgresql with apt-get (missing: ${missing.join(", ")})`)
    await run("apt-get", ["update"], 10 * 60_000)
    await run("apt-get", ["install", "-y", "mariadb-server", "postgresql"], 20 * 60_000)
    const still = missingBinaries()
    if (still.length > 0) throw new Error(`apt-get installed the packages but these are still missing: ${still.join(", ")}`)
    return { available: true }
  })()
  return once
}
