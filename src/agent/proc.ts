import { Data, Duration, Effect, Schedule } from "effect"
import { execFile, spawn } from "node:child_process"
import * as fs from "node:fs"
import * as net from "node:net"

/**
 * Processes, the only way the agent runs programs: execFile/spawn with argv arrays, never a
 * shell. Children get a small fixed environment, not the agent's.
 */

export class CommandFailed extends Data.TaggedError("CommandFailed")<{ readonly message: string }> {}

export interface RunAs {
  readonly uid: number
  readonly gid: number
}

export interface RunOptions {
  readonly timeoutMs: number
  readonly runAs?: RunAs
  readonly env?: Readonly<Record<string, string>>
}

export interface RunResult {
  readonly stdout: string
  readonly stderr: string
}

export const childEnv = (extra: Readonly<Record<string, string>> = {}): Record<string, string> => ({
  PATH: "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
  LANG: "C.UTF-8",
  LC_ALL: "C.UTF-8",
  ...extra
})

/** The last lines of a text, short enough for a reply. */
export const tail = (text: string, lines = 6, charsMax = 1500): string => {
  const kept = text.trimEnd().split("\n").slice(-lines).join("\n")
  return kept.length > charsMax ? kept.slice(kept.length - charsMax) : kept
}

/** The last lines of a (log) file, read from its end; "" if it cannot be read. */
export const fileTail = (file: string, lines = 8): string => {
  try {
    const size = fs.statSync(file).size
    const fd = fs.openSync(file, "r")
    try {
      const length = Math.min(size, 16 * 1024)
      const buffer = Buffer.alloc(length)
      fs.readSync(fd, buffer, 0, length, size - length)
      return tail(buffer.toString("utf8"), lines)
    } finally {
      fs.closeSync(fd)
    }
  } catch {
    return ""
  }
}

const nameOf = (file: string): string => file.slice(file.lastIndexOf("/") + 1)

/** Runs `file args` to completion within a time limit; fails with its stderr's tail otherwise. */
export const run = (file: string, args: ReadonlyArray<string>, options: RunOptions): Effect.Effect<RunResult, CommandFailed> =>
  Effect.async<RunResult, CommandFailed>((resume, signal) => {
    execFile(
      file,
      [...args],
      {
        timeout: options.timeoutMs,
        killSignal: "SIGKILL",
        maxBuffer: 8 * 1024 * 1024,
        cwd: "/",
        env: childEnv(options.env),
        signal,
        ...(options.runAs === undefined ? {} : { uid: options.runAs.uid, gid: options.runAs.gid })
      },
      (error, stdout, stderr) => {
        if (error === null) return resume(Effect.succeed({ stdout, stderr }))
        const e = error as NodeJS.ErrnoException & { killed?: boolean; code?: number | string; signal?: string }
        const why =
          e.killed === true || e.signal === "SIGKILL"
            ? `did not finish within ${options.timeoutMs} ms`
            : typeof e.code === "number"
              ? `exited with code ${e.code}`
              : `could not run (${e.code ?? e.message})`
        const output = tail(`${stderr}\n${stdout}`.trim())
        resume(Effect.fail(new CommandFailed({ message: `${nameOf(file)} ${why}${output ? `: ${output}` : ""}` })))
      }
    )
  })

export interface SpawnOptions {
  /** stdout and stderr are appended to this file. */
  readonly logFile: string
  readonly cwd: string
  readonly runAs?: RunAs
}

/**
 * Starts a long-lived program in its own session (process group), output to its log file,
 * detached from the agent: it outlives the agent, kill -9 of the agent included.
 */
export const spawnDetached = (file: string, args: ReadonlyArray<string>, options: SpawnOptions): Effect.Effect<number, CommandFailed> =>
  Effect.try({
    try: () => {
      const fd = fs.openSync(options.logFile, "a")
      try {
        const child = spawn(file, [...args], {
          detached: true,
          stdio: ["ignore", fd, fd],
          cwd: options.cwd,
          env: childEnv(),
          ...(options.runAs === undefined ? {} : { uid: options.runAs.uid, gid: options.runAs.gid })
        })
        // An exec failure (ENOENT, EACCES) is reported asynchronously; the pid check below and
        // the caller's wait for the process to answer catch it.
        child.on("error", () => {})
        child.unref()
        if (child.pid === undefined) throw new Error(`could not start ${file}`)
        return child.pid
      } finally {
        fs.closeSync(fd)
      }
    },
    catch: (e) => new CommandFailed({ message: `cannot start ${nameOf(file)}: ${e instanceof Error ? e.message : String(e)}` })
  })

// ---------------------------------------------------------------------------------------------
// Liveness, through /proc (Linux): a zombie or a reused pid is not the instance.
// ---------------------------------------------------------------------------------------------

const readProc = (pid: number, file: string): string | undefined => {
  try {
    return fs.readFileSync(`/proc/${pid}/${file}`, "utf8")
  } catch {
    return undefined
  }
}

/** Alive and not a zombie. */
export const isAlive = (pid: number): boolean => {
  const stat = readProc(pid, "stat")
  if (stat === undefined) return false
  const state = stat.slice(stat.lastIndexOf(")") + 2, stat.lastIndexOf(")") + 3)
  return state !== "Z" && state !== "X"
}

/** The process's argv, or [] if it is gone. */
export const argvOf = (pid: number): ReadonlyArray<string> => {
  const text = readProc(pid, "cmdline")
  return text === undefined ? [] : text.split("\0").filter((a) => a.length > 0)
}

/** Is `pid` alive, running one of `programs` (base names) with `marker` (a path of the instance) in its arguments? */
export const isInstanceProcess = (pid: number, programs: ReadonlyArray<string>, marker: string): boolean => {
  if (!Number.isInteger(pid) || pid <= 1 || !isAlive(pid)) return false
  const argv = argvOf(pid)
  return argv.length > 0 && programs.includes(nameOf(argv[0])) && argv.some((a) => a === marker || a.endsWith(`=${marker}`))
}

/** The first line of a pid file as a pid, if it is one. */
export const readPidFile = (file: string): number | undefined => {
  try {
    const n = Number(fs.readFileSync(file, "utf8").split("\n", 1)[0].trim())
    return Number.isInteger(n) && n > 1 ? n : undefined
  } catch {
    return undefined
  }
}

export const signalPid = (pid: number, sig: NodeJS.Signals): boolean => {
  try {
    process.kill(pid, sig)
    return true
  } catch {
    return false
  }
}

/** Waits until `pid` is gone; true if it went within the time limit. */
export const waitGone = (pid: number, timeoutMs: number): Effect.Effect<boolean> =>
  Effect.suspend(() => (isAlive(pid) ? Effect.fail("alive" as const) : Effect.succeed(true))).pipe(
    Effect.retry(Schedule.spaced(Duration.millis(100))),
    Effect.timeout(Duration.millis(timeoutMs)),
    Effect.orElseSucceed(() => false)
  )

/** Signals `pid`, waits up to `graceMs`, then kills it; succeeds once it is gone. */
export const terminate = (pid: number, sig: NodeJS.Signals, graceMs: number): Effect.Effect<void> =>
  Effect.gen(function* () {
    if (!isAlive(pid)) return
    signalPid(pid, sig)
    if (yield* waitGone(pid, graceMs)) return
    yield* Effect.logWarning(`pid ${pid} still alive ${graceMs} ms after ${sig}; killing it`)
    signalPid(pid, "SIGKILL")
    yield* waitGone(pid, 10_000)
  })

/** Live processes whose working directory is `dir` (a PostgreSQL data directory's orphans). */
export const pidsWithCwd = (dir: string): ReadonlyArray<number> => {
  let entries: Array<string>
  try {
    entries = fs.readdirSync("/proc")
  } catch {
    return []
  }
  return entries.flatMap((name) => {
    if (!/^[0-9]+$/.test(name)) return []
    try {
      return fs.readlinkSync(`/proc/${name}/cwd`) === dir && isAlive(Number(name)) ? [Number(name)] : []
    } catch {
      return []
    }
  })
}

/** Can a listener bind `host:port` now? */
export const portIdle = (host: string, port: number): Effect.Effect<boolean> =>
  Effect.async<boolean>((resume) => {
    const server = net.createServer()
    server.once("error", () => resume(Effect.succeed(false)))
    server.listen({ host, port, exclusive: true }, () => server.close(() => resume(Effect.succeed(true))))
  })
