import * as fs from "node:fs"
import * as net from "node:net"
import * as path from "node:path"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import {
  type AgentHandle,
  agentEmit,
  cleanupAgents,
  emitPath,
  httpRequest,
  ping,
  prepareAgent,
  renderCnf,
  runAgentOnce,
  startAgent,
  succeeded,
  tempDir
} from "./harness.js"

/**
 * The agent process without databases: start-up errors, the HTTP surface, malformed requests,
 * ping_pong, check_port_idle, get_paths_space, refusals, and a clean SIGTERM.
 */

afterAll(cleanupAgents, 30_000)

describe("start-up errors: one line on stderr, exit code 2", () => {
  const failsWith = async (settings: Record<string, string | number>): Promise<string> => {
    const dir = tempDir()
    const cnf = path.join(dir, "node_mgr.cnf")
    fs.writeFileSync(cnf, renderCnf(settings))
    const { code, stderr } = await runAgentOnce(cnf)
    expect(code).toBe(2)
    expect(stderr.trim().split("\n")).toHaveLength(1)
    return stderr.trim()
  }

  it("names the key and line of an unknown key or a bad value, the port in use, the unwritable path", async () => {
    const dir = tempDir()
    const base = {
      local_ip: "127.0.0.1",
      brpc_http_port: 1,
      node_mgr_tmp_data_path: path.join(dir, "state"),
      storage_data_root: path.join(dir, "s"),
      computer_data_root: path.join(dir, "c")
    }
    const busy = net.createServer()
    await new Promise<void>((resolve) => busy.listen({ host: "127.0.0.1", port: 0 }, resolve))
    const busyPort = (busy.address() as net.AddressInfo).port
    const aFile = path.join(dir, "a-file")
    fs.writeFileSync(aFile, "")
    try {
      const [unknown, bad, inUse, unwritable] = await Promise.all([
        failsWith({ ...base, brpc_http_port: 58010, raft_port: 3 }),
        failsWith({ ...base, thread_work_interval: "soon" }),
        failsWith({ ...base, brpc_http_port: busyPort }),
        failsWith({ ...base, brpc_http_port: 58010, storage_data_root: path.join(aFile, "below") })
      ])
      expect(unknown).toMatch(/^node_mgr: .*node_mgr\.cnf line 6: unknown key `raft_port`$/)
      expect(bad).toMatch(/^node_mgr: .*node_mgr\.cnf line 6: `thread_work_interval` must be a number of seconds .*, got 'soon'$/)
      expect(inUse).toMatch(new RegExp(`^node_mgr: brpc_http_port ${busyPort}: cannot listen on 127\\.0\\.0\\.1:${busyPort}`))
      expect(unwritable).toBe(`node_mgr: storage_data_root ${path.join(aFile, "below")}: not a writable directory (ENOTDIR)`)
    } finally {
      busy.close()
    }
  }, 60_000)

  it("refuses a second agent on the same state directory", async () => {
    const first = await startAgent()
    const second = await prepareAgent({ cnf: { node_mgr_tmp_data_path: first.stateDir } })
    const { code, stderr } = await runAgentOnce(second.cnfPath)
    expect(code).toBe(2)
    expect(stderr.trim()).toBe(`node_mgr: node_mgr_tmp_data_path ${first.stateDir} is in use by node_mgr pid ${first.pid}`)
    await first.stop()
  }, 60_000)
})

describe("a running agent", () => {
  let agent: AgentHandle

  beforeAll(async () => {
    agent = await startAgent({ portRange: "20000-60000" })
  }, 60_000)

  it("answers ping_pong with its version, address, instances and reports", async () => {
    const reply = await agentEmit(agent.http, "ping_pong", {}, { requestId: "17", taskSpecInfo: "ping" })
    expect(reply).toEqual({
      cluster_mgr_request_id: "17",
      info: { node_mgr: "0.1.0", hostaddr: "127.0.0.1", port: agent.port, instances: [], reports: [] },
      status: "success",
      task_spec_info: "ping"
    })
    expect(succeeded(await agentEmit(agent.http, "list_instances"))).toEqual({ instances: [] })
  }, 20_000)

  it("answers every malformed request with HTTP 200 and a well-formed failed reply", async () => {
    const cases: Array<[string, RegExp]> = [
      ["{not json", /^the request body is not JSON/],
      ["42", /^the request body must be a JSON object/],
      ['{"cluster_mgr_request_id":"5"}', /^missing `job_type`/],
      ['{"cluster_mgr_request_id":"5","job_type":"rm -rf /"}', /^unknown job_type: rm -rf \/$/],
      ['{"cluster_mgr_request_id":"5","job_type":"install_storage","paras":"port=1"}', /^`paras` must be a JSON object/],
      ['{"cluster_mgr_request_id":"5","job_type":"install_storage","paras":{"port":"x"}}', /^`paras.port` must be a port number/],
      ['{"cluster_mgr_request_id":"5","job_type":"execute_command","paras":{"command":"id"}}', /not supported/]
    ]
    for (const [body, info] of cases) {
      const reply = await httpRequest("POST", agent.http, emitPath, body)
      expect(reply.httpStatus, body).toBe(200)
      expect(reply.json.status, body).toBe("failed")
      expect(reply.json.info, body).toMatch(info)
      expect(Object.keys(reply.json).sort()).toEqual(["cluster_mgr_request_id", "info", "status", "task_spec_info"])
    }
    expect((await httpRequest("POST", agent.http, emitPath, '{"cluster_mgr_request_id":"5"}')).json.cluster_mgr_request_id).toBe("5")
  }, 20_000)

  it("serves only POST on the Emit path (405), nothing else (404), bodies up to 1 MiB (413 beyond)", async () => {
    const get = await httpRequest("GET", agent.http, emitPath)
    expect([get.httpStatus, get.json.status]).toEqual([405, "failed"])
    const other = await httpRequest("POST", agent.http, "/other", "{}")
    expect([other.httpStatus, other.json.status]).toEqual([404, "failed"])
    const big = await httpRequest("POST", agent.http, emitPath, JSON.stringify({ job_type: "ping_pong", pad: "x".repeat(1_100_000) }))
    expect([big.httpStatus, big.json.status]).toEqual([413, "failed"])
    expect((await ping(agent.http)).hostaddr).toBe("127.0.0.1")
  }, 20_000)

  it("check_port_idle: a free port is idle, a bound one is not, one outside instance_port_range is refused", async () => {
    const busy = net.createServer()
    await new Promise<void>((resolve) => busy.listen({ host: "127.0.0.1", port: 0 }, resolve))
    const busyPort = (busy.address() as net.AddressInfo).port
    try {
      const inRange = busyPort >= 20000 && busyPort <= 60000
      const busyReply = await agentEmit(agent.http, "check_port_idle", { port: String(busyPort) })
      if (inRange) expect(succeeded(busyReply)).toEqual({ port: busyPort, idle: false })
      busy.close()
      await new Promise((r) => setTimeout(r, 50))
      if (inRange) expect(succeeded(await agentEmit(agent.http, "check_port_idle", { port: busyPort }))).toEqual({ port: busyPort, idle: true })
    } finally {
      busy.close()
    }
    const outside = await agentEmit(agent.http, "check_port_idle", { port: "80" })
    expect(outside).toMatchObject({ status: "failed", info: "port 80 is outside instance_port_range 20000-60000" })
  }, 20_000)

  it("get_paths_space: sizes of paths under the roots; paths outside them, through symlinks or missing are refused", async () => {
    const info = succeeded(await agentEmit(agent.http, "get_paths_space", { paths: `${agent.storageRoot},${agent.computerRoot}` }))
    expect(info.paths.map((p: { path: string }) => p.path)).toEqual([agent.storageRoot, agent.computerRoot])
    for (const p of info.paths) {
      expect(p.total_bytes).toBeGreaterThan(0)
      expect(p.free_bytes).toBeGreaterThan(0)
      expect(p.free_bytes).toBeLessThanOrEqual(p.total_bytes)
    }
    fs.symlinkSync("/etc", path.join(agent.storageRoot, "escape"))
    const refusals: Array<[unknown, RegExp]> = [
      [["/etc"], /^path \/etc is not under a configured root/],
      [[`${agent.storageRoot}/../../..`], /is not under a configured root/],
      [[path.join(agent.storageRoot, "escape")], /leads outside the configured roots \(to \/etc\)/],
      [[path.join(agent.storageRoot, "missing")], /does not exist$/],
      ["relative/path", /^`paras.paths` must be a list of 1..64 absolute paths/],
      [[`${agent.storageRoot}/$(touch /tmp/node_mgr_pwned)`], /does not exist$/]
    ]
    for (const [paths, info] of refusals) {
      const reply = await agentEmit(agent.http, "get_paths_space", { paths })
      expect(reply.status, JSON.stringify(paths)).toBe("failed")
      expect(reply.info, JSON.stringify(paths)).toMatch(info)
    }
    expect(fs.existsSync("/tmp/node_mgr_pwned")).toBe(false)
  }, 20_000)

  it("refuses instance jobs on ports outside instance_port_range and on unknown instances", async () => {
    for (const [job, paras] of [
      ["install_storage", { port: "80" }],
      ["install_computer", { port: "65000" }],
      ["delete_storage", { port: "19999" }]
    ] as const) {
      const reply = await agentEmit(agent.http, job, paras)
      expect(reply, job).toMatchObject({ status: "failed", info: expect.stringMatching(/is outside instance_port_range 20000-60000$/) })
    }
    expect(await agentEmit(agent.http, "control_instance", { port: "30000", control: "start" })).toMatchObject({
      status: "failed",
      info: "no instance on port 30000"
    })
    expect(succeeded(await agentEmit(agent.http, "delete_computer", { port: "30000" }))).toEqual({
      kind: "computer",
      port: 30000,
      deleted: false,
      detail: "no computer instance on port 30000; nothing to delete"
    })
  }, 20_000)

  it("stops on SIGTERM with exit code 0", async () => {
    expect(await agent.stop()).toEqual({ code: 0, signal: null })
  }, 20_000)
})
