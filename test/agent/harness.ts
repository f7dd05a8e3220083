import { type ChildProcess, execFile, spawn } from "node:child_process"
import { emitPath, httpRequest } from "../support/http.js"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { fileURLToPath } from "node:url"
import type { AgentReply, Instance, PingInfo } from "../../src/agent/protocol.js"
import { freePort } from "../support/freePort.js"

/**
 * node_mgr agents as real OS processes (`node bin/node_mgr.mjs <cnf>`) on a loopback address,
 * each with free ports and its own temporary directories. Everything started is tracked by
 * pid: the agents, and the database instances they report (replies) or leave pid files for.
 * `cleanupAgents()` (call it in afterAll) kills them all by pid and removes the directories.
 *
 *   const agent = await startAgent({ interval: 0.5 })
 *   const reply = await agentEmit(agent.http, "install_storage", { port: "57001" })
 *   afterAll(cleanupAgents)
 */

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..")
export const agentBin = path.join(repoRoot, "bin/node_mgr.mjs")

export const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms))

export interface Exit {
  readonly code: number | null
  readonly signal: NodeJS.Signals | null
}

export interface AgentOptions {
  /** local_ip; default 127.0.0.1 (any 127.0.0.x works on Linux). */
  readonly ip?: string
  /** thread_work_interval in seconds; default 0.5. */
  readonly interval?: number
  /** instance_port_range; default 10000-65000 (freePort's ports fall inside). */
  readonly portRange?: string
  /** More cnf keys, or overrides of the harness's. */
  readonly cnf?: Readonly<Record<string, string | number>>
  /** How long to wait for the first ping_pong answer; default 30 s. */
  readonly readyTimeoutMs?: number
}

/** A running (or stopped) agent: its address, files and process. */
export interface AgentHandle {
  /** The current process's pid. */
  readonly pid: number
  /** Every pid this agent has had, oldest first. */
  readonly pids: ReadonlyArray<number>
  /** "ip:port" of its Emit endpoint. */
  readonly http: string
  readonly ip: string
  readonly port: number
  readonly dir: string
  readonly cnfPath: string
  readonly stateDir: string
  readonly storageRoot: string
  readonly computerRoot: string
  readonly logFile: string
  readonly alive: boolean
  readonly exit: Exit | undefined
  /** Captured standard error (start-up errors land here). */
  readonly stderr: string
  /** Sends one job to this agent. */
  emit(jobType: string, paras?: Record<string, unknown>, options?: EmitOptions): Promise<AgentReply>
  /** SIGTERM and wait for the exit (bounded). */
  stop(timeoutMs?: number): Promise<Exit>
  /** kill -9 and wait for the exit. */
  kill9(): Promise<Exit>
  /** Starts a new process on the same cnf and state; resolves once it answers ping_pong. */
  restart(): Promise<void>
  /** The end of the agent's log file. */
  logTail(lines?: number): string
}

// ------------------------------------------------------------------------------- tracking

/** Agent processes still to kill. */
const agentPids = new Set<number>()
/** Directories below which instances live: a pid is only killed if its command line names one. */
const instanceRoots = new Set<string>()
/** Instance pids seen in replies. */
const instancePids = new Set<number>()
const tempDirs = new Set<string>()

const signalPid = (pid: number, sig: NodeJS.Signals): boolean => {
  try {
    process.kill(pid, sig)
    return true
  } catch {
    return false
  }
}

const isAlive = (pid: number): boolean => {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, "utf8")
    const state = stat.slice(stat.lastIndexOf(")") + 2, stat.lastIndexOf(")") + 3)
    return state !== "Z" && state !== "X"
  } catch {
    return false
  }
}

const cmdline = (pid: number): string => {
  try {
    return fs.readFileSync(`/proc/${pid}/cmdline`, "utf8").replace(/\0/g, " ")
  } catch {
    return ""
  }
}

/** A pid of a database instance one of our agents manages (not a reused pid of something else). */
export const isOurInstance = (pid: number): boolean => {
  const line = cmdline(pid)
  return line !== "" && [...instanceRoots].some((root) => line.includes(root + "/"))
}

const notePids = (value: unknown): void => {
  if (typeof value !== "object" || value === null) return
  const v = value as { pid?: unknown; instances?: unknown }
  if (typeof v.pid === "number") instancePids.add(v.pid)
  if (Array.isArray(v.instances)) for (const i of v.instances) notePids(i)
}

/** Pids from the instances' pid files below every root we created. */
const pidFilePids = (): ReadonlyArray<number> => {
  const pids: Array<number> = []
  for (const root of instanceRoots) {
    let ports: Array<string> = []
    try {
      ports = fs.readdirSync(root)
    } catch {
      continue
    }
    for (const port of ports) {
      for (const file of [path.join(root, port, "mariadbd.pid"), path.join(root, port, "data", "postmaster.pid")]) {
        try {
          const pid = Number(fs.readFileSync(file, "utf8").split("\n", 1)[0].trim())
          if (Number.isInteger(pid) && pid > 1) pids.push(pid)
        } catch {
          // no such file
        }
      }
    }
  }
  return pids
}

const waitGone = async (pids: ReadonlyArray<number>, timeoutMs: number): Promise<boolean> => {
  const deadline = Date.now() + timeoutMs
  while (pids.some(isAlive)) {
    if (Date.now() > deadline) return false
    await sleep(100)
  }
  return true
}

/**
 * Kills every agent (SIGKILL, so none restarts an instance), then every instance (a clean
 * shutdown first, SIGKILL after 10 s), all by pid; removes the temporary directories.
 */
export const cleanupAgents = async (): Promise<void> => {
  for (const pid of agentPids) signalPid(pid, "SIGKILL")
  await waitGone([...agentPids], 5000)
  agentPids.clear()
  const instances = [...new Set([...instancePids, ...pidFilePids()])].filter((pid) => isAlive(pid) && isOurInstance(pid))
  for (const pid of instances) signalPid(pid, cmdline(pid).includes("postgres") ? "SIGINT" : "SIGTERM")
  if (!(await waitGone(instances, 10_000))) for (const pid of instances) signalPid(pid, "SIGKILL")
  await waitGone(instances, 5000)
  instancePids.clear()
  for (const dir of tempDirs) fs.rmSync(dir, { recursive: true, force: true })
  tempDirs.clear()
  instanceRoots.clear()
}

process.once("exit", () => {
  for (const pid of agentPids) signalPid(pid, "SIGKILL")
  for (const pid of instancePids) if (isOurInstance(pid)) signalPid(pid, "SIGKILL")
})

// ------------------------------------------------------------------------------------ HTTP

export { emitPath, type HttpReply, httpRequest } from "../support/http.js"

export interface EmitOptions {
  readonly requestId?: string
  readonly taskSpecInfo?: string
  /** Default 150 s: an install runs mariadb-install-db or initdb and a first start. */
  readonly timeoutMs?: number
}

/**
 * Sends one node_mgr job (Klustron envelope) to the agent at `address` ("ip:port") and returns
 * its reply. Instance pids in the reply are remembered for cleanupAgents. Throws if the answer
 * is not HTTP 200 with a reply body.
 */
export const agentEmit = async (
  address: string,
  jobType: string,
  paras: Record<string, unknown> = {},
  options: EmitOptions = {}
): Promise<AgentReply> => {
  const body = JSON.stringify({
    cluster_mgr_request_id: options.requestId ?? "",
    task_spec_info: options.taskSpecInfo ?? jobType,
    job_type: jobType,
    paras
  })
  const reply = await httpRequest("POST", address, emitPath, body, options.timeoutMs ?? 150_000)
  if (reply.httpStatus !== 200 || reply.json === undefined) {
    throw new Error(`${jobType} at ${address}: HTTP ${reply.httpStatus} ${reply.text.slice(0, 500)}`)
  }
  notePids(reply.json.info)
  return reply.json as AgentReply
}

/** The info of a success; throws with the agent's reason otherwise. */
export const succeeded = <A = any>(reply: AgentReply): A => {
  if (reply.status !== "success") throw new Error(`the agent answered failed: ${String(reply.info)}`)
  return reply.info as A
}

export const ping = async (address: string, ackReportSeq?: number): Promise<PingInfo> =>
  succeeded<PingInfo>(
    await agentEmit(address, "ping_pong", ackReportSeq === undefined ? {} : { ack_report_seq: String(ackReportSeq) }, { timeoutMs: 10_000 })
  )

export const instanceOn = async (address: string, port: number): Promise<Instance | undefined> =>
  (await ping(address)).instances.find((i) => i.port === port)

/** Polls `check` every 200 ms until it returns a value other than undefined, or fails after `timeoutMs`. */
export const waitFor = async <A>(what: string, check: () => Promise<A | undefined>, timeoutMs = 30_000): Promise<A> => {
  const deadline = Date.now() + timeoutMs
  let last: unknown
  for (;;) {
    try {
      const value = await check()
      if (value !== undefined) return value
    } catch (e) {
      last = e
    }
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${last ? ` (last error: ${String(last)})` : ""}`)
    await sleep(200)
  }
}

// ------------------------------------------------------------------------------ processes

/** Renders a cnf file: `name = value` lines. */
export const renderCnf = (settings: Readonly<Record<string, string | number>>): string =>
  Object.entries(settings)
    .map(([key, value]) => `${key} = ${value}`)
    .join("\n") + "\n"

/** A temporary directory (searchable by the postgres user), removed by cleanupAgents. */
export const tempDir = (prefix = "node_mgr-it-"): string => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), prefix))
  fs.chmodSync(dir, 0o755)
  tempDirs.add(dir)
  return dir
}

class AgentProcess implements AgentHandle {
  private proc!: ChildProcess
  private exited!: Promise<Exit>
  private captured = ""
  exit: Exit | undefined
  readonly pids: Array<number> = []

  constructor(
    readonly ip: string,
    readonly port: number,
    readonly dir: string,
    readonly cnfPath: string,
    readonly stateDir: string,
    readonly storageRoot: string,
    readonly computerRoot: string,
    readonly logFile: string,
    private readonly readyTimeoutMs: number
  ) {}

  get pid(): number {
    return this.proc.pid!
  }
  get http(): string {
    return `${this.ip}:${this.port}`
  }
  get alive(): boolean {
    return this.exit === undefined
  }
  get stderr(): string {
    return this.captured
  }

  spawn(): void {
    if (this.proc !== undefined && this.alive) throw new Error(`agent ${this.http} still runs (pid ${this.pid})`)
    const proc = spawn(process.execPath, [agentBin, this.cnfPath], {
      cwd: this.dir,
      stdio: ["ignore", "ignore", "pipe"],
      env: { ...process.env, NODE_OPTIONS: "" }
    })
    if (proc.pid === undefined) throw new Error("could not spawn node_mgr")
    this.proc = proc
    this.exit = undefined
    this.captured = ""
    this.pids.push(proc.pid)
    agentPids.add(proc.pid)
    proc.stderr!.setEncoding("utf8").on("data", (d: string) => (this.captured = (this.captured + d).slice(-32_768)))
    this.exited = new Promise((resolve) =>
      proc.once("exit", (code, signal) => {
        this.exit = { code, signal }
        agentPids.delete(proc.pid!)
        resolve(this.exit)
      })
    )
  }

  async waitReady(): Promise<void> {
    const deadline = Date.now() + this.readyTimeoutMs
    for (;;) {
      if (!this.alive) throw new Error(`node_mgr exited ${JSON.stringify(this.exit)} before answering: ${this.stderr}`)
      try {
        await ping(this.http)
        return
      } catch {
        // not listening yet
      }
      if (Date.now() > deadline) throw new Error(`node_mgr at ${this.http} did not answer within ${this.readyTimeoutMs} ms`)
      await sleep(150)
    }
  }

  emit(jobType: string, paras: Record<string, unknown> = {}, options: EmitOptions = {}): Promise<AgentReply> {
    return agentEmit(this.http, jobType, paras, options)
  }

  async waitExit(timeoutMs: number): Promise<Exit> {
    const exit = await Promise.race([this.exited, sleep(timeoutMs).then(() => undefined)])
    if (exit === undefined) throw new Error(`agent pid ${this.pid} did not exit within ${timeoutMs} ms`)
    return exit
  }

  async stop(timeoutMs = 15_000): Promise<Exit> {
    if (!this.alive) return this.exit!
    signalPid(this.pid, "SIGTERM")
    return this.waitExit(timeoutMs)
  }

  async kill9(): Promise<Exit> {
    if (!this.alive) return this.exit!
    signalPid(this.pid, "SIGKILL")
    return this.waitExit(10_000)
  }

  async restart(): Promise<void> {
    this.spawn()
    await this.waitReady()
  }

  logTail(lines = 40): string {
    try {
      return fs.readFileSync(this.logFile, "utf8").trimEnd().split("\n").slice(-lines).join("\n")
    } catch {
      return "(no log file)"
    }
  }
}

/**
 * Writes a cnf (free HTTP port, temp dirs) and starts an agent on it; resolves once it answers
 * ping_pong. Its instances go below `<dir>/storage` and `<dir>/computer`.
 */
export const startAgent = async (options: AgentOptions = {}): Promise<AgentHandle> => {
  const agent = await prepareAgent(options)
  agent.spawn()
  await agent.waitReady()
  return agent
}

/** The agent's files and cnf, not started (start-up error tests spawn it with runAgentOnce). */
export const prepareAgent = async (options: AgentOptions = {}): Promise<AgentProcess> => {
  const ip = options.ip ?? "127.0.0.1"
  const port = await freePort()
  const dir = tempDir()
  const paths = {
    stateDir: path.join(dir, "state"),
    storageRoot: path.join(dir, "storage"),
    computerRoot: path.join(dir, "computer"),
    logFile: path.join(dir, "node_mgr.log"),
    cnfPath: path.join(dir, "node_mgr.cnf")
  }
  instanceRoots.add(paths.storageRoot)
  instanceRoots.add(paths.computerRoot)
  const settings = {
    local_ip: ip,
    brpc_http_port: port,
    node_mgr_tmp_data_path: paths.stateDir,
    storage_data_root: paths.storageRoot,
    computer_data_root: paths.computerRoot,
    instance_port_range: options.portRange ?? "10000-65000",
    thread_work_interval: options.interval ?? 0.5,
    log_file: paths.logFile,
    ...options.cnf
  }
  fs.writeFileSync(paths.cnfPath, renderCnf(settings))
  return new AgentProcess(
    ip,
    port,
    dir,
    paths.cnfPath,
    paths.stateDir,
    paths.storageRoot,
    paths.computerRoot,
    paths.logFile,
    options.readyTimeoutMs ?? 30_000
  )
}

/** Runs `node_mgr <cnf>` expecting it to stop on its own (a start-up error); its exit and stderr. */
export const runAgentOnce = (cnfPath: string, timeoutMs = 30_000): Promise<{ code: number | null; stderr: string }> =>
  new Promise((resolve, reject) => {
    const child = execFile(
      process.execPath,
      [agentBin, cnfPath],
      { timeout: timeoutMs, killSignal: "SIGKILL", env: { ...process.env, NODE_OPTIONS: "" }, cwd: path.dirname(cnfPath) },
      (error, _stdout, stderr) => {
        if (child.pid !== undefined) agentPids.delete(child.pid)
        if (error !== null && error.killed) return reject(new Error(`node_mgr ${cnfPath} still ran after ${timeoutMs} ms: ${stderr}`))
        resolve({ code: error === null ? 0 : typeof error.code === "number" ? error.code : null, stderr })
      }
    )
    if (child.pid !== undefined) agentPids.add(child.pid)
  })
