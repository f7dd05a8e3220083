import { afterAll, describe, expect, it } from "@effect/vitest"
import { Effect, HashMap, Option } from "effect"
import { awaitLeader, ClusterMgr, type InProcessMember, makeInProcessGroup } from "../../src/index.js"
import type { Machine } from "../../src/domain/machines.js"
import { removeTmpDirs, tmpDir } from "../audit/workload.js"
import { FakeAgent } from "./fakeAgent.js"

/**
 * The fleet on an in-process group (real SQLite files, in-memory Raft network) with fake node_mgr
 * agents on real sockets: machine jobs, the leader's pings, reports, and a job resumed by a new
 * leader. test/integration/fleet.test.ts runs the same against real agents and processes.
 */

const agents: Array<FakeAgent> = []
afterAll(async () => {
  await Promise.all(agents.map((a) => a.close()))
  removeTmpDirs()
})

const fakeAgent = Effect.promise(async () => {
  const a = await FakeAgent.start()
  agents.push(a)
  return a
})

const fleet = { pingIntervalMs: 100, deadAfterMisses: 3, requestTimeoutMs: 5000 }

const group = Effect.gen(function* () {
  const g = yield* makeInProcessGroup({ members: ["f1:1", "f2:1", "f3:1"], dataDir: tmpDir("cm-fleet-"), fleet })
  return { g, leader: yield* awaitLeader(g.members) }
})

const machineParas = (agent: FakeAgent, hostaddr = "127.0.0.1") => ({
  hostaddr,
  machine_type: "storage",
  datadir: "/kunlun/data",
  logdir: "/kunlun/log",
  wal_log_dir: "/kunlun/wal",
  total_mem: "16384",
  total_cpu_cores: "8",
  nodemgr_port: String(agent.port)
})

const run = (member: InProcessMember, jobType: string, paras: unknown) =>
  Effect.flatMap(ClusterMgr.submitJob(member.node, { jobType, userName: "t", paras }), (id) => ClusterMgr.awaitJob(member.node, id))

const machineOn = (member: InProcessMember, hostaddr: string): Effect.Effect<Machine | undefined> =>
  Effect.map(member.node.localState, (s) => Option.getOrUndefined(HashMap.get(s.machines, hostaddr)))

/** Polls until `check` holds (bounded by the test's timeout). */
const until = <A>(look: Effect.Effect<A>, check: (a: A) => boolean) =>
  Effect.gen(function* () {
    while (true) {
      const a = yield* look
      if (check(a)) return a
      yield* Effect.sleep("25 millis")
    }
  })

describe("machines", () => {
  it.scopedLive("create_machine pings the agent first: no agent, no machine", () =>
    Effect.gen(function* () {
      const { g, leader } = yield* group
      const agent = yield* fakeAgent
      agent.alive = false
      const refused = yield* run(leader, "create_machine", machineParas(agent))
      expect(refused.status).toBe("failed")
      expect(refused.errorInfo).toMatch(/node_mgr at 127\.0\.0\.1:\d+ did not answer/)
      expect(yield* machineOn(leader, "127.0.0.1")).toBeUndefined()

      agent.alive = true
      const created = yield* run(leader, "create_machine", machineParas(agent))
      expect(created.status).toBe("done")
      expect(agent.count("ping_pong")).toBeGreaterThan(0)
      for (const m of g.members) {
        const machine = yield* until(machineOn(m, "127.0.0.1"), (x) => x !== undefined)
        expect(machine).toMatchObject({ machineType: "storage", nodeStats: "running", nodeMgrPort: agent.port, totalMem: 16384 })
      }
      // The refused job tried the agent for its 10 s budget: room for a loaded machine.
    }), 90_000)

  it.scopedLive("two create_machine of one host: one creates it, the other fails", () =>
    Effect.gen(function* () {
      const { leader } = yield* group
      const agent = yield* fakeAgent
      const [a, b] = yield* Effect.all([run(leader, "create_machine", machineParas(agent)), run(leader, "create_machine", machineParas(agent))], {
        concurrency: 2
      })
      expect([a.status, b.status].sort()).toEqual(["done", "failed"])
      expect([a, b].find((j) => j.status === "failed")!.errorInfo).toMatch(/already exists/)
    }), 30_000)

  it.scopedLive("update_machine changes the named fields; delete_machine removes it", () =>
    Effect.gen(function* () {
      const { leader } = yield* group
      const agent = yield* fakeAgent
      yield* run(leader, "create_machine", machineParas(agent))
      const updated = yield* run(leader, "update_machine", { hostaddr: "127.0.0.1", total_mem: "32768", rack_id: "r2" })
      expect(updated.status).toBe("done")
      expect(yield* machineOn(leader, "127.0.0.1")).toMatchObject({ totalMem: 32768, rackId: "r2", totalCpuCores: 8, datadir: "/kunlun/data" })
      const wrongType = yield* run(leader, "delete_machine", { hostaddr: "127.0.0.1", machine_type: "computer" })
      expect(wrongType.status).toBe("failed")
      const deleted = yield* run(leader, "delete_machine", { hostaddr: "127.0.0.1", machine_type: "storage" })
      expect(deleted.status).toBe("done")
      expect(yield* machineOn(leader, "127.0.0.1")).toBeUndefined()
    }), 30_000)

  it.scopedLive("a machine whose agent misses its pings is dead, and running again when it answers", () =>
    Effect.gen(function* () {
      const { g, leader } = yield* group
      const agent = yield* fakeAgent
      yield* run(leader, "create_machine", machineParas(agent))
      agent.alive = false
      for (const m of g.members) yield* until(machineOn(m, "127.0.0.1"), (x) => x?.nodeStats === "dead")
      agent.alive = true
      for (const m of g.members) yield* until(machineOn(m, "127.0.0.1"), (x) => x?.nodeStats === "running")
    }), 30_000)

  it.scopedLive("agent reports are recorded once, then acknowledged; instances are observed", () =>
    Effect.gen(function* () {
      const { g, leader } = yield* group
      const agent = yield* fakeAgent
      agent.addInstance("storage", 57001)
      yield* run(leader, "create_machine", machineParas(agent))
      agent.report("restarted", 57001, "select 1 failed; restarted")
      agent.report("restarted", 57001, "again")
      for (const m of g.members) {
        const machine = yield* until(machineOn(m, "127.0.0.1"), (x) => x?.restartsReported === 2)
        expect(machine!.instances).toEqual([{ kind: "storage", port: 57001, status: "running", stoppedOnPurpose: false }])
        expect(machine!.reportsAcked).toBe(2)
      }
      // The next pings carry the acknowledgement: the agent drops them, and nothing is counted twice.
      yield* until(Effect.sync(() => agent.reports.length), (n) => n === 0)
      yield* Effect.sleep("300 millis")
      expect((yield* machineOn(leader, "127.0.0.1"))!.restartsReported).toBe(2)
    }), 30_000)
})

describe("control_instance", () => {
  it.scopedLive("asks the machine's agent; an unknown port fails the job with the agent's answer", () =>
    Effect.gen(function* () {
      const { leader } = yield* group
      const agent = yield* fakeAgent
      const instance = agent.addInstance("storage", 57002)
      yield* run(leader, "create_machine", machineParas(agent))
      const stopped = yield* run(leader, "control_instance", { hostaddr: "127.0.0.1", port: "57002", control: "stop" })
      expect(stopped.status).toBe("done")
      expect(instance).toMatchObject({ status: "stopped", stopped_on_purpose: true })
      const pid = instance.pid
      const restarted = yield* run(leader, "control_instance", { hostaddr: "127.0.0.1", port: "57002", control: "restart" })
      expect(restarted.status).toBe("done")
      expect(instance.pid).not.toBe(pid)
      expect(restarted.memo).toMatchObject({ hostaddr: "127.0.0.1", port: 57002, control: "restart", pid_before: pid })
      const unknown = yield* run(leader, "control_instance", { hostaddr: "127.0.0.1", port: "57999", control: "start" })
      expect(unknown.status).toBe("failed")
      expect(unknown.errorInfo).toMatch(/no instance on port 57999/)
    }), 30_000)

  it.scopedLive("a job cut off by a leader failover is finished by the next leader, restarting once", () =>
    Effect.gen(function* () {
      const { g, leader } = yield* group
      const agent = yield* fakeAgent
      const instance = agent.addInstance("storage", 57003)
      yield* run(leader, "create_machine", machineParas(agent))
      agent.controlDelayMs = 800
      const pid = instance.pid
      const id = yield* ClusterMgr.submitJob(leader.node, {
        jobType: "control_instance",
        userName: "t",
        paras: { hostaddr: "127.0.0.1", port: "57003", control: "restart" }
      })
      // The old leader recorded the restart step and its request reached the agent, which is
      // restarting the instance: stop that leader there.
      yield* until(
        Effect.map(leader.node.localState, (s) => HashMap.get(s.jobs, id)),
        (j) => Option.isSome(j) && (j.value.memo as { step?: string } | null)?.step === "restarting"
      )
      yield* until(
        Effect.sync(() => agent.count("control_instance")),
        (n) => n >= 1
      )
      yield* leader.stop
      const rest = g.members.filter((m) => m !== leader)
      const next = yield* awaitLeader(rest)
      const job = yield* ClusterMgr.awaitJob(next.node, id)
      expect(job.status).toBe("done")
      expect(instance.status).toBe("running")
      expect(instance.pid).not.toBe(pid)
      // The new leader saw the restart had happened (a new pid) and only made sure it runs.
      const restarts = agent.requests.filter((r) => r.job_type === "control_instance" && r.paras.control === "restart")
      expect(restarts.length).toBe(1)
      expect(agent.requests.filter((r) => r.job_type === "control_instance" && r.paras.control === "start").length).toBe(1)
      expect(job.memo).toMatchObject({ control: "restart", pid_before: pid })
    }), 30_000)
})
