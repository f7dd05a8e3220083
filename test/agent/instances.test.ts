import { execFile } from "node:child_process"
import * as fs from "node:fs"
import * as net from "node:net"
import * as path from "node:path"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import type { Instance, Report } from "../../src/agent/protocol.js"
import { ensureDebianPackages, postgresBinDir } from "../support/debian.js"
import { freePort } from "../support/freePort.js"
import { type AgentHandle, agentEmit, cleanupAgents, instanceOn, ping, sleep, startAgent, succeeded, waitFor } from "./harness.js"

/**
 * Real MariaDB and PostgreSQL instances under one agent, in order: install, query, kill -9 and
 * restart with reports, stop on purpose, replication and promotion, restarts of the agent
 * itself (SIGTERM and kill -9, with an instance killed while it was down), deletion.
 */

const interval = 0.5
const hangTimeoutMs = 3000
let agent: AgentHandle
let skipReason: string | undefined
let storageA: number
let storageB: number
let computerC: number

beforeAll(async () => {
  const dbs = await ensureDebianPackages()
  if (!dbs.available) {
    skipReason = dbs.reason
    return
  }
  agent = await startAgent({ interval, cnf: { instance_hang_timeout_ms: hangTimeoutMs } })
  storageA = await freePort()
  storageB = await freePort()
  computerC = await freePort()
}, 30 * 60_000)

afterAll(async () => {
  if (agent !== undefined && process.env.NODE_MGR_TEST_LOG === "1") console.error(agent.logTail(80))
  await cleanupAgents()
}, 60_000)

/** Skips the test (with the reason) when the databases could not be installed. */
const needDatabases = (ctx: { skip: (note?: string) => void }) => {
  if (skipReason !== undefined) ctx.skip(skipReason)
}

// ------------------------------------------------------------------------------- clients

const execText = (file: string, args: ReadonlyArray<string>, options: { uid?: number; gid?: number } = {}): Promise<string> =>
  new Promise((resolve, reject) =>
    execFile(file, [...args], { timeout: 15_000, cwd: "/", ...options }, (error, stdout, stderr) =>
      error === null ? resolve(stdout.trim()) : reject(new Error(`${path.basename(file)}: ${error.message} ${stderr}`))
    )
  )

const storageDir = (port: number) => path.join(agent.storageRoot, String(port))

const mariadb = (port: number, sql: string): Promise<string> =>
  execText("/usr/bin/mariadb", ["--no-defaults", `--socket=${storageDir(port)}/mysql.sock`, "-uroot", "--batch", "--skip-column-names", "-e", sql])

const postgresUser = (): { uid: number; gid: number } | undefined => {
  if (process.getuid?.() !== 0) return undefined
  const line = fs.readFileSync("/etc/passwd", "utf8").split("\n").find((l) => l.startsWith("postgres:"))!
  const [, , uid, gid] = line.split(":")
  return { uid: Number(uid), gid: Number(gid) }
}

const psql = (port: number, sql: string): Promise<string> => {
  const user = postgresUser()
  const sockDir = path.join(agent.computerRoot, String(port), "sock")
  return execText(
    path.join(postgresBinDir()!, "psql"),
    ["-X", "-A", "-t", "-h", sockDir, "-p", String(port), "-U", user === undefined ? process.env.USER ?? "root" : "postgres", "-d", "postgres", "-c", sql],
    user ?? {}
  )
}

const isAlive = (pid: number): boolean => {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, "utf8")
    return !/^\S+ \(.*\) [ZX]/.test(stat)
  } catch {
    return false
  }
}

const processUid = (pid: number): number => Number(/^Uid:\s+(\d+)/m.exec(fs.readFileSync(`/proc/${pid}/status`, "utf8"))![1])

const instance = async (port: number): Promise<Instance> => {
  const found = await instanceOn(agent.http, port)
  if (found === undefined) throw new Error(`no instance ${port}`)
  return found
}

/** Waits until `port` runs with a pid other than `oldPid`. */
const restartedFrom = (port: number, oldPid: number, timeoutMs = 40_000): Promise<Instance> =>
  waitFor(
    `instance ${port} running again with a new pid`,
    async () => {
      const i = await instance(port)
      return i.status === "running" && i.pid !== null && i.pid !== oldPid ? i : undefined
    },
    timeoutMs
  )

const reportsFor = (reports: ReadonlyArray<Report>, port: number, event: Report["event"]) =>
  reports.filter((r) => r.port === port && r.event === event)

const kill9 = async (pid: number) => {
  process.kill(pid, "SIGKILL")
  await waitFor(`pid ${pid} gone`, async () => (isAlive(pid) ? undefined : true), 10_000)
}

// ----------------------------------------------------------------------------------- tests

describe.sequential("instances under a real agent", () => {
  it("install_storage: MariaDB with GTID binlog on local_ip, queryable; the same install again answers the same instance", async (ctx) => {
    needDatabases(ctx)
    const info = succeeded<Instance>(await agent.emit("install_storage", { port: String(storageA), innodb_buffer_pool_size: "32M" }))
    expect(info).toMatchObject({
      kind: "storage",
      port: storageA,
      status: "running",
      stopped_on_purpose: false,
      restarts: 0,
      datadir: path.join(storageDir(storageA), "data")
    })
    expect(isAlive(info.pid!)).toBe(true)
    expect(await mariadb(storageA, "select 1")).toBe("1")
    await mariadb(storageA, "create database app; create table app.t (id int primary key, v varchar(20)); insert into app.t values (1, 'one')")
    expect(await mariadb(storageA, "select v from app.t where id = 1")).toBe("one")
    const vars = await mariadb(
      storageA,
      "select concat_ws(',', @@log_bin, @@log_slave_updates, @@binlog_format, @@server_id, @@bind_address, @@port, @@innodb_buffer_pool_size)"
    )
    expect(vars).toBe(`ON,ON,ROW,${(1 << 16) | storageA},127.0.0.1,${storageA},${32 * 1024 * 1024}`)
    expect(await mariadb(storageA, "select count(*) from mysql.user where user = 'repl' and host = '%'")).toBe("1")
    expect(await mariadb(storageA, "show grants for 'repl'@'%'")).toContain("REPLICATION SLAVE")
    // Setup was not binlogged: a replica of any primary starts from an empty GTID position.
    expect(await mariadb(storageA, "select @@gtid_binlog_pos like '0-%'")).toBe("1")

    const again = succeeded<Instance>(await agent.emit("install_storage", { port: storageA }))
    expect(again.pid).toBe(info.pid)
    expect(await agent.emit("install_computer", { port: storageA })).toMatchObject({
      status: "failed",
      info: `port ${storageA} is already used by a storage instance`
    })
  }, 150_000)

  it("install_computer: PostgreSQL running as the postgres user, queryable through psql", async (ctx) => {
    needDatabases(ctx)
    const info = succeeded<Instance>(await agent.emit("install_computer", { port: computerC }))
    expect(info).toMatchObject({ kind: "computer", port: computerC, status: "running", datadir: path.join(agent.computerRoot, String(computerC), "data") })
    const user = postgresUser()
    if (user !== undefined) {
      expect(processUid(info.pid!)).toBe(user.uid)
      expect(fs.statSync(info.datadir).uid).toBe(user.uid)
    }
    expect(await psql(computerC, "select 1")).toBe("1")
    await psql(computerC, "create table t (id int primary key, v text); insert into t values (1, 'one')")
    expect(await psql(computerC, "select v from t")).toBe("one")
    expect(await psql(computerC, "show listen_addresses")).toBe("127.0.0.1")
  }, 150_000)

  it("refuses an install on a busy port, and harmful paras, touching nothing", async (ctx) => {
    needDatabases(ctx)
    const busy = net.createServer()
    await new Promise<void>((resolve) => busy.listen({ host: "127.0.0.1", port: 0 }, resolve))
    const busyPort = (busy.address() as net.AddressInfo).port
    try {
      expect(await agent.emit("install_storage", { port: busyPort })).toMatchObject({ status: "failed", info: `port ${busyPort} is in use on 127.0.0.1` })
      expect(fs.existsSync(storageDir(busyPort))).toBe(false)
    } finally {
      busy.close()
    }
    const hostile = await agent.emit("install_storage", { port: `${storageB}; touch /tmp/node_mgr_pwned` })
    expect(hostile).toMatchObject({ status: "failed", info: expect.stringMatching(/^`paras.port` must be a port number/) })
    const sql = await agent.emit("set_replica", { port: storageA, primary_host: "127.0.0.1' ; DROP DATABASE app; --", primary_port: storageB })
    expect(sql).toMatchObject({ status: "failed", info: expect.stringMatching(/^`paras.primary_host` must be an IPv4 address/) })
    const size = await agent.emit("install_storage", { port: storageB, innodb_buffer_pool_size: "$(id)" })
    expect(size).toMatchObject({ status: "failed", info: expect.stringMatching(/^`paras.innodb_buffer_pool_size` must be a size/) })
    expect(fs.existsSync("/tmp/node_mgr_pwned")).toBe(false)
    expect(await mariadb(storageA, "select count(*) from app.t")).toBe("1")
  }, 30_000)

  it("kill -9 of an instance: the agent restarts it and reports it; acknowledged reports disappear", async (ctx) => {
    needDatabases(ctx)
    const before = await ping(agent.http)
    const storagePid = before.instances.find((i) => i.port === storageA)!.pid!
    const computerPid = before.instances.find((i) => i.port === computerC)!.pid!
    await kill9(storagePid)
    await kill9(computerPid)
    const storage = await restartedFrom(storageA, storagePid)
    const computer = await restartedFrom(computerC, computerPid)
    expect(storage.restarts).toBe(1)
    expect(computer.restarts).toBe(1)
    expect(await mariadb(storageA, "select v from app.t where id = 1")).toBe("one")
    expect(await psql(computerC, "select v from t")).toBe("one")

    const reports = (await ping(agent.http)).reports
    expect(reportsFor(reports, storageA, "died")[0]?.detail).toBe(`pid ${storagePid} is gone`)
    expect(reportsFor(reports, storageA, "restarted")[0]?.detail).toMatch(new RegExp(`^pid ${storagePid} was gone; started pid ${storage.pid}`))
    expect(reportsFor(reports, computerC, "restarted")).toHaveLength(1)
    const seqs = reports.map((r) => r.seq)
    expect(seqs).toEqual([...seqs].sort((a, b) => a - b))

    const acked = await ping(agent.http, seqs[seqs.length - 1])
    expect(acked.reports).toEqual([])
    expect((await ping(agent.http)).reports).toEqual([])
  }, 90_000)

  it("control_instance: stop keeps it down across intervals; start brings it back; restart; both are idempotent", async (ctx) => {
    needDatabases(ctx)
    const running = await instance(storageA)
    const lastSeq = Math.max(0, ...(await ping(agent.http)).reports.map((r) => r.seq))
    const stopped = succeeded<Instance>(await agent.emit("control_instance", { port: storageA, control: "stop", type: "storage" }))
    expect(stopped).toMatchObject({ status: "stopped", stopped_on_purpose: true, pid: null })
    expect(isAlive(running.pid!)).toBe(false)
    for (let i = 0; i < 5; i++) {
      await sleep(interval * 1000)
      expect(await instance(storageA)).toMatchObject({ status: "stopped", pid: null })
    }
    expect((await ping(agent.http)).reports.filter((r) => r.seq > lastSeq)).toEqual([])
    expect(succeeded<Instance>(await agent.emit("control_instance", { port: storageA, control: "stop" })).status).toBe("stopped")
    expect(await agent.emit("control_instance", { port: storageA, control: "start", kind: "computer" })).toMatchObject({
      status: "failed",
      info: `port ${storageA} is a storage instance, not a computer instance`
    })

    const started = succeeded<Instance>(await agent.emit("control_instance", { port: storageA, control: "start" }))
    expect(started).toMatchObject({ status: "running", stopped_on_purpose: false })
    expect(await mariadb(storageA, "select v from app.t where id = 1")).toBe("one")
    expect(succeeded<Instance>(await agent.emit("control_instance", { port: storageA, control: "start" })).pid).toBe(started.pid)

    const restarted = succeeded<Instance>(await agent.emit("control_instance", { port: computerC, control: "restart", kind: "computer" }))
    expect(restarted.status).toBe("running")
    expect(await psql(computerC, "select 1")).toBe("1")
  }, 120_000)

  it("set_replica: a write on the primary shows on the read-only replica; promote_replica makes it writable", async (ctx) => {
    needDatabases(ctx)
    succeeded(await agent.emit("install_storage", { port: storageB, innodb_buffer_pool_size: "32M" }))
    const replica = succeeded(await agent.emit("set_replica", { port: storageB, primary_host: "127.0.0.1", primary_port: storageA }))
    expect(replica).toMatchObject({ port: storageB, primary_host: "127.0.0.1", primary_port: storageA, read_only: true })
    await mariadb(storageA, "insert into app.t values (2, 'two')")
    await waitFor("the write on the replica", async () =>
      (await mariadb(storageB, "select v from app.t where id = 2").catch(() => "")) === "two" ? true : undefined
    )
    expect(await mariadb(storageB, "select @@read_only")).toBe("1")
    expect(await agent.emit("set_replica", { port: computerC, primary_host: "127.0.0.1", primary_port: storageA })).toMatchObject({
      status: "failed",
      info: `set_replica applies to storage instances; port ${computerC} is a computer instance`
    })

    const promoted = succeeded(await agent.emit("promote_replica", { port: storageB }))
    expect(promoted).toMatchObject({ port: storageB, read_only: false })
    expect(await mariadb(storageB, "select @@read_only")).toBe("0")
    expect(await mariadb(storageB, "show slave status")).toBe("")
    await mariadb(storageB, "insert into app.t values (3, 'three')")
    expect(await mariadb(storageB, "select count(*) from app.t")).toBe("3")

    // The former primary follows the promoted one without fetching its own writes again.
    succeeded(await agent.emit("set_replica", { port: storageA, primary_host: "127.0.0.1", primary_port: storageB }))
    await waitFor("the promoted primary's write on the former primary", async () =>
      (await mariadb(storageA, "select v from app.t where id = 3")) === "three" ? true : undefined
    )
  }, 120_000)

  it("agent stopped (SIGTERM) or killed (kill -9): instances keep running and are adopted; one killed meanwhile is restarted", async (ctx) => {
    needDatabases(ctx)
    const before = (await ping(agent.http)).instances
    expect(before.map((i) => i.status)).toEqual(["running", "running", "running"])
    expect(await agent.stop()).toEqual({ code: 0, signal: null })
    for (const i of before) expect(isAlive(i.pid!), `pid ${i.pid}`).toBe(true)
    await agent.restart()
    const adopted = await ping(agent.http)
    expect(adopted.instances.map((i) => [i.port, i.pid, i.status])).toEqual(before.map((i) => [i.port, i.pid, "running"]))
    for (const i of before) expect(reportsFor(adopted.reports, i.port, "adopted")).toHaveLength(1)
    await ping(agent.http, Math.max(...adopted.reports.map((r) => r.seq)))

    await agent.kill9()
    const computerPid = before.find((i) => i.port === computerC)!.pid!
    await kill9(computerPid)
    await agent.restart()
    const computer = await restartedFrom(computerC, computerPid)
    expect(await psql(computerC, "select v from t")).toBe("one")
    const after = await ping(agent.http)
    for (const i of before.filter((i) => i.port !== computerC)) {
      expect(after.instances.find((x) => x.port === i.port)?.pid).toBe(i.pid)
      expect(reportsFor(after.reports, i.port, "adopted")).toHaveLength(1)
    }
    expect(reportsFor(after.reports, computerC, "died")[0]?.detail).toBe(`pid ${computerPid} is gone at agent start`)
    expect(reportsFor(after.reports, computerC, "restarted")[0]?.detail).toMatch(new RegExp(`started pid ${computer.pid}`))
    expect(await mariadb(storageA, "select count(*) from app.t")).toBe("3")
  }, 120_000)

  it("an instance that stops answering after it answered is killed and restarted; one that never answered since adoption is left starting", async (ctx) => {
    needDatabases(ctx)
    const pid = (await instance(storageA)).pid!
    await agent.kill9()
    process.kill(pid, "SIGSTOP")
    try {
      await agent.restart()
      const adopted = await ping(agent.http)
      expect(adopted.instances.find((i) => i.port === storageA)).toMatchObject({ status: "starting", pid })
      expect(reportsFor(adopted.reports, storageA, "adopted").at(-1)?.detail).toBe(`pid ${pid} is alive and does not answer select 1 yet`)
      await sleep(hangTimeoutMs + 4 * interval * 1000)
      const later = await ping(agent.http)
      expect(later.instances.find((i) => i.port === storageA)).toMatchObject({ status: "starting", pid })
      expect(later.reports.filter((r) => r.port === storageA && r.event !== "adopted")).toEqual([])
    } finally {
      process.kill(pid, "SIGCONT")
    }
    await waitFor("the adopted instance answering", async () => ((await instance(storageA)).status === "running" ? true : undefined))
    await ping(agent.http, Math.max(...(await ping(agent.http)).reports.map((r) => r.seq)))

    process.kill(pid, "SIGSTOP")
    const restarted = await restartedFrom(storageA, pid)
    const reports = (await ping(agent.http)).reports
    expect(reportsFor(reports, storageA, "died")[0]?.detail).toMatch(new RegExp(`^pid ${pid} has not answered select 1 for \\d+ ms; killed it$`))
    expect(reportsFor(reports, storageA, "restarted")[0]?.detail).toMatch(new RegExp(`started pid ${restarted.pid}`))
    expect(isAlive(pid)).toBe(false)
    expect(await mariadb(storageA, "select count(*) from app.t")).toBe("3")
    // storageA replicates from storageB (set_replica above): restarted, it is read-only again.
    expect(await mariadb(storageA, "select @@read_only")).toBe("1")
  }, 120_000)

  it("delete_storage / delete_computer: the process is gone and the directory removed; a second delete has nothing to do", async (ctx) => {
    needDatabases(ctx)
    const instances = (await ping(agent.http)).instances
    for (const i of instances) {
      const job = i.kind === "storage" ? "delete_storage" : "delete_computer"
      const deleted = succeeded(await agent.emit(job, { port: i.port }))
      expect(deleted).toMatchObject({ kind: i.kind, port: i.port, deleted: true })
      expect(isAlive(i.pid!)).toBe(false)
      expect(fs.existsSync(path.dirname(i.datadir))).toBe(false)
      expect(succeeded(await agent.emit(job, { port: i.port }))).toMatchObject({ deleted: false })
    }
    expect((await ping(agent.http)).instances).toEqual([])
    expect(await agentEmit(agent.http, "check_port_idle", { port: storageA })).toMatchObject({ status: "success", info: { idle: true } })
  }, 120_000)
})
