/**
 * Processes and temporary directories of the emit bench. Everything spawned is registered by
 * pid and killed with SIGKILL when the bench exits, whatever the cause (normal end, error,
 * SIGINT/SIGTERM, the watchdog); temporary directories are removed then too.
 */
import { type ChildProcess, spawn } from "node:child_process"
import * as fs from "node:fs"
import { freePort } from "../test/support/freePort.js"
import * as os from "node:os"
import * as path from "node:path"
import { sleep } from "./loadgen.js"

export const host = "127.0.0.1"

const pids = new Set<number>()
const dirs = new Set<string>()

export const kill9 = (pid: number): boolean => {
  try {
    process.kill(pid, "SIGKILL")
    return true
  } catch {
    return false
  }
}

/** Kills every registered process and removes every temporary directory (synchronous). */
export const cleanupAll = (): void => {
  for (const pid of pids) kill9(pid)
  pids.clear()
  for (const dir of dirs) {
    try {
      fs.rmSync(dir, { recursive: true, force: true })
    } catch {
      // best effort
    }
  }
  dirs.clear()
}

let installed = false
/** Cleanup on exit, on SIGINT/SIGTERM, on an uncaught error, and after `watchdogMs` at most. */
export const installCleanup = (watchdogMs: number): void => {
  if (installed) return
  installed = true
  process.on("exit", cleanupAll)
  for (const sig of ["SIGINT", "SIGTERM", "SIGHUP"] as const) {
    process.on(sig, () => {
      process.stderr.write(`\nemit bench: ${sig}, killing ${pids.size} spawned process(es)\n`)
      cleanupAll()
      process.exit(130)
    })
  }
  const fail = (e: unknown) => {
    process.stderr.write(`emit bench: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`)
    cleanupAll()
    process.exit(1)
  }
  process.on("uncaughtException", fail)
  process.on("unhandledRejection", fail)
  setTimeout(() => fail(new Error(`watchdog: the bench ran longer than ${Math.round(watchdogMs / 1000)} s`)), watchdogMs).unref()
}

export const tempDir = (prefix: string): string => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), prefix))
  dirs.add(dir)
  return dir
}

/** Removes a data directory, unless BENCH_KEEP_DIRS=1 keeps them (with the nodes' logs) to read after a run. */
export const removeDir = (dir: string): void => {
  if (process.env.BENCH_KEEP_DIRS !== "1") fs.rmSync(dir, { recursive: true, force: true })
  else console.log(`  kept ${dir}`)
  dirs.delete(dir)
}

export { freePort }

/** A spawned process, its output appended to `logFile`, registered for cleanup. */
export interface Proc {
  readonly child: ChildProcess
  readonly pid: number
  readonly spawnedAt: number
  exited: boolean
}

export const spawnLogged = (command: string, args: ReadonlyArray<string>, logFile: string, cwd?: string): Proc => {
  const fd = fs.openSync(logFile, "a")
  const child = spawn(command, args, { cwd, stdio: ["ignore", fd, fd], env: { ...process.env, NODE_OPTIONS: "" } })
  fs.closeSync(fd)
  if (child.pid === undefined) throw new Error(`could not spawn ${command}`)
  const proc: Proc = { child, pid: child.pid, spawnedAt: performance.now(), exited: false }
  pids.add(child.pid)
  child.once("exit", () => {
    proc.exited = true
    pids.delete(proc.pid)
  })
  child.once("error", () => {
    proc.exited = true
  })
  return proc
}

/** SIGKILL, then waits (bounded) until the process is reaped. */
export const killAndWait = async (proc: Proc, timeoutMs = 5000): Promise<void> => {
  kill9(proc.pid)
  const deadline = Date.now() + timeoutMs
  while (!proc.exited && Date.now() < deadline) await sleep(5)
}

/** SIGTERM, then SIGKILL if the process is still there after `graceMs`. */
export const stopGracefully = async (proc: Proc, graceMs: number): Promise<void> => {
  try {
    process.kill(proc.pid, "SIGTERM")
  } catch {
    return
  }
  const deadline = Date.now() + graceMs
  while (!proc.exited && Date.now() < deadline) await sleep(20)
  await killAndWait(proc)
}

/** VmRSS of a process in MB (/proc/PID/status), or NaN when it cannot be read. */
export const rssMb = (pid: number): number => {
  try {
    const m = /VmRSS:\s+(\d+)\s+kB/.exec(fs.readFileSync(`/proc/${pid}/status`, "utf8"))
    return m ? Number(m[1]) / 1024 : NaN
  } catch {
    return NaN
  }
}

/**
 * Pss of a process in MB (/proc/PID/smaps_rollup): its RSS with each shared page divided among
 * the processes that map it (the node binary's code, shared by every node process), or NaN.
 */
export const pssMb = (pid: number): number => {
  try {
    const m = /^Pss:\s+(\d+)\s+kB/m.exec(fs.readFileSync(`/proc/${pid}/smaps_rollup`, "utf8"))
    return m ? Number(m[1]) / 1024 : NaN
  } catch {
    return NaN
  }
}

/** Polls `check` every `everyMs` until it yields a value; throws after `timeoutMs`. */
export const waitFor = async <A>(what: string, check: () => Promise<A | undefined>, timeoutMs: number, everyMs = 10): Promise<A> => {
  const deadline = performance.now() + timeoutMs
  for (;;) {
    let value: A | undefined
    try {
      value = await check()
    } catch {
      value = undefined
    }
    if (value !== undefined) return value
    if (performance.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`)
    await sleep(everyMs)
  }
}

export const median = (xs: ReadonlyArray<number>): number => {
  if (xs.length === 0) return NaN
  const s = [...xs].sort((a, b) => a - b)
  const mid = Math.floor(s.length / 2)
  return s.length % 2 === 1 ? s[mid] : (s[mid - 1] + s[mid]) / 2
}
