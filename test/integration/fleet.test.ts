import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { agentEmit, cleanupAgents, instanceOn, startAgent, succeeded } from "../agent/harness.js"
import { ensureDebianPackages } from "../support/debian.js"
import { emit, envelope, Harness, killAllStarted, sleep, submitRetrying, waitFor, waitForLeader, waitJobEnd } from "./harness.js"

/**
 * The fleet end to end: three cluster_mgr processes, a real node_mgr agent (on 127.0.0.2, its
 * own "machine") and a real MariaDB instance. Machines are created through the Emit API, the
 * leader's pings see the agent die and come back, the agent's restarts of a killed instance
 * reach the replicated state, and a control_instance job cut off by kill -9 of the leader is
 * finished by the next one. Every process is killed by pid at the end.
 */

const h = new Harness()
afterAll(async () => {
  await h.cleanup()
  await cleanupAgents()
  killAllStarted()
})

beforeAll(async () => {
  await ensureDebianPackages()
}, 600_000)

const fleetCnf = { machine_ping_interval_ms: 300, machine_dead_after_misses: 3 }

interface MachineRow {
  hostaddr: string
  node_stats: string
  restarts_reported: number
  instances: Array<{ kind: string; port: number; status: string; stopped_on_purpose: boolean }>
}

const machines = async (http: string): Promise<Array<MachineRow>> => {
  const reply = await emit(http, envelope("get_machines"))
  if (reply.json?.status !== "done") throw new Error(`get_machines: ${reply.text}`)
  return (reply.json.attachment as { machines: Array<MachineRow> }).machines
}

const machineParas = (hostaddr: string, agentPort: number) => ({
  hostaddr,
  machine_type: "storage",
  rack_id: "r1",
  datadir: "/kunlun/data",
  logdir: "/kunlun/log",
  wal_log_dir: "/kunlun/wal",
  total_mem: "16384",
  total_cpu_cores: "8",
  nodemgr_port: String(agentPort)
})

describe("machines and instances through real agents", () => {
  it("create_machine, pings, reports, control_instance across a leader failover, a dead agent", async () => {
    const nodes = await h.startCluster(3, fleetCnf)
    const agent = await startAgent({ ip: "127.0.0.2", interval: 0.3 })
    const any = nodes[1].spec.http

    // A machine with no agent behind it is refused by the job (after its pings), not recorded.
    const orphan = await submitRetrying(any, envelope("create_machine", machineParas("127.0.0.3", 9)))
    const orphanEnd = await waitJobEnd(any, orphan, 30_000)
    expect(orphanEnd.status).toBe("failed")
    expect(orphanEnd.error_info).toMatch(/node_mgr at 127\.0\.0\.3:9 did not answer/)

    const created = await submitRetrying(any, envelope("create_machine", machineParas("127.0.0.2", agent.port)))
    expect((await waitJobEnd(any, created, 30_000)).status).toBe("done")
    const dup = await emit(any, envelope("create_machine", machineParas("127.0.0.2", agent.port)))
    expect(dup.json).toMatchObject({ status: "failed", error_code: "70001" })
    expect(dup.json?.error_info).toMatch(/already exists/)
    const unknown = await emit(any, envelope("control_instance", { hostaddr: "127.0.0.9", port: "57001", control: "stop" }))
    expect(unknown.json).toMatchObject({ status: "failed", error_code: "70003" })

    // A real MariaDB instance on the machine (installing is the agent's job; part 2 drives it).
    const port = 57000 + Math.floor(Math.random() * 900)
    const installed = succeeded<{ pid: number }>(await agentEmit(agent.http, "install_storage", { port: String(port) }, { timeoutMs: 120_000 }))
    await waitFor("the instance in get_machines", async () => {
      const m = (await machines(any)).find((x) => x.hostaddr === "127.0.0.2")
      return m?.instances.some((i) => i.port === port && i.status === "running")
    }, 20_000)

    // kill -9 of the instance: the agent restarts it and reports it; the leader records it.
    process.kill(installed.pid, "SIGKILL")
    await waitFor("the restart reported to cluster_mgr", async () => {
      const m = (await machines(any)).find((x) => x.hostaddr === "127.0.0.2")
      return (m?.restarts_reported ?? 0) >= 1
    }, 30_000)

    // An operator's stop: done, and the agent leaves it down.
    const stop = await submitRetrying(any, envelope("control_instance", { hostaddr: "127.0.0.2", port: String(port), control: "stop" }))
    expect((await waitJobEnd(any, stop, 60_000)).status).toBe("done")
    await sleep(1500)
    expect((await instanceOn(agent.http, port))?.status).toBe("stopped")

    // A restart cut off by kill -9 of the leader: the next leader finishes it.
    const leader = await waitForLeader(nodes)
    const restart = await submitRetrying(leader.leader.spec.http, envelope("control_instance", { hostaddr: "127.0.0.2", port: String(port), control: "restart" }))
    await h.kill9AndWait(leader.leader)
    const survivors = nodes.filter((n) => n !== leader.leader)
    const end = await waitJobEnd(survivors[0].spec.http, restart, 90_000)
    expect(end.status).toBe("done")
    expect(end.attachment).toMatchObject({ hostaddr: "127.0.0.2", port, control: "restart" })
    expect(await instanceOn(agent.http, port)).toMatchObject({ status: "running", stopped_on_purpose: false })

    // The agent dies: its machine is marked dead; it comes back: running again.
    await agent.kill9()
    await waitFor("machine dead", async () => (await machines(survivors[0].spec.http)).find((x) => x.hostaddr === "127.0.0.2")?.node_stats === "dead", 20_000)
    await agent.restart()
    await waitFor("machine running", async () => (await machines(survivors[0].spec.http)).find((x) => x.hostaddr === "127.0.0.2")?.node_stats === "running", 20_000)
    // The instance outlived its agent, and was re-adopted.
    expect((await instanceOn(agent.http, port))?.status).toBe("running")

    await agentEmit(agent.http, "delete_storage", { port: String(port) }, { timeoutMs: 60_000 })
  }, 300_000)
})
