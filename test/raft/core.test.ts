import { describe, expect, it } from "@effect/vitest"
import { Scripted } from "./harness.js"

const three = ["a", "b", "c"]

describe("election", () => {
  it("elects exactly one leader and every node learns it", () => {
    const net = new Scripted(three)
    const leader = net.elect()
    net.run(5)
    for (const id of three) expect(net.core(id).status().leader).toBe(leader)
  })

  it("elects a new leader after the old one is isolated, in a higher term", () => {
    const net = new Scripted(three)
    const old = net.elect()
    const term = net.core(old).status().term
    net.isolate(old)
    net.run(60)
    const others = three.filter((x) => x !== old)
    const newLeader = others.find((x) => net.core(x).status().role === "leader")
    expect(newLeader).toBeDefined()
    expect(net.core(newLeader!).status().term).toBeGreaterThan(term)
    // CheckQuorum: the isolated leader stepped down on its own.
    expect(net.core(old).status().role).not.toBe("leader")
  })

  it("two followers that time out in the same tick elect one of them in the next term: no split vote", () => {
    // No jitter: both followers heard the last heartbeat in the same round, so both become
    // pre-candidates in the same tick before either hears of the other.
    const net = new Scripted(three, { electionJitterTicks: 1 })
    const old = net.elect()
    const term = net.core(old).status().term
    net.run(5)
    net.isolate(old)
    const rest = three.filter((x) => x !== old)
    let ticks = 0
    while (!rest.some((x) => net.core(x).status().role === "leader")) {
      net.run(1)
      if (++ticks > 200) throw new Error(`no leader: ${rest.map((x) => JSON.stringify(net.core(x).status())).join(" ")}`)
    }
    const leader = rest.find((x) => net.core(x).status().role === "leader")!
    expect(net.core(leader).status().term).toBe(term + 1)
    // The lower id is the one backed.
    expect(leader).toBe([...rest].sort()[0])
  })

  it("a campaign left undecided is retried after a quarter of the election timeout (with pre-votes), never raising the term", () => {
    const net = new Scripted(three, { electionTicks: 100, electionJitterTicks: 10 })
    const leader = net.elect(1000)
    net.run(5)
    const f = three.find((x) => x !== leader)!
    const term = net.core(f).status().term
    net.isolate(f)
    const from = net.sent.length
    net.run(1000)
    const campaigns = net.sent.slice(from).filter((m) => m._tag === "PreVote" && m.from === f).length / 2
    // The first after 100-109 ticks, then one every 25-34 ticks: about 30 in 1000 ticks (a whole
    // timeout between tries would make 9).
    expect(campaigns).toBeGreaterThanOrEqual(25)
    expect(net.core(f).status().term).toBe(term)
  })

  it("PreVote: an isolated follower does not raise its term and does not disturb on rejoin", () => {
    const net = new Scripted(three)
    const leader = net.elect()
    const follower = three.find((x) => x !== leader)!
    const term = net.core(leader).status().term
    net.isolate(follower)
    net.run(100)
    expect(net.core(follower).status().term).toBe(term)
    net.heal()
    net.run(20)
    expect(net.core(leader).status().role).toBe("leader")
    expect(net.core(leader).status().term).toBe(term)
  })

  it("a non-member campaigning does not raise the group's term", () => {
    const net = new Scripted(three)
    const leader = net.elect()
    const term = net.core(leader).status().term
    net.add("d", [...three, "d"])
    net.run(100)
    expect(net.core(leader).status().role).toBe("leader")
    expect(net.core(leader).status().term).toBe(term)
    for (const id of three) expect(net.core(id).status().voters).toEqual(three)
  })
})

describe("replication", () => {
  it("commits proposals on every node in order", () => {
    const net = new Scripted(three)
    net.elect()
    for (let i = 0; i < 20; i++) net.propose(`v${i}`)
    net.run(5)
    for (const id of three) expect(net.appliedData(id)).toEqual(Array.from({ length: 20 }, (_, i) => `v${i}`))
  })

  it("no commit without a majority", () => {
    const net = new Scripted(three)
    const leader = net.elect()
    for (const x of three) if (x !== leader) net.isolate(x)
    const before = net.core(leader).status().commitIndex
    net.core(leader).propose(["lost"])
    net.run(5)
    expect(net.core(leader).status().commitIndex).toBe(before)
  })
})

describe("membership", () => {
  it("adds a peer by joint consensus after it catches up", () => {
    const net = new Scripted(three)
    const leader = net.elect()
    for (let i = 0; i < 30; i++) net.propose(`v${i}`)
    net.add("d", [...three, "d"])
    expect(net.core(leader).changeMembership("job1", [...three, "d"])).toBeUndefined()
    net.run(20)
    expect(net.notices.find((n) => n._tag === "ConfChangeDone" && n.id === "job1")).toBeDefined()
    for (const id of [...three, "d"]) expect([...net.core(id).status().voters].sort()).toEqual([...three, "d"])
    expect(net.appliedData("d").length).toBe(30)
  })

  it("a removed leader steps down once the new configuration commits", () => {
    const net = new Scripted(three)
    const leader = net.elect()
    const rest = three.filter((x) => x !== leader)
    net.core(leader).changeMembership("rm", rest)
    net.run(40)
    expect(net.notices.find((n) => n._tag === "ConfChangeDone" && n.id === "rm")).toBeDefined()
    expect(net.core(leader).status().role).toBe("follower")
    const newLeader = rest.find((x) => net.core(x).status().role === "leader")
    expect(newLeader).toBeDefined()
  })
})

describe("leadership transfer", () => {
  it("hands over to a follower", () => {
    const net = new Scripted(three)
    const leader = net.elect()
    const target = three.find((x) => x !== leader)!
    net.core(leader).transferLeadership("t1", target)
    net.run(5)
    expect(net.leader()).toBe(target)
    expect(net.notices.find((n) => n._tag === "TransferDone" && n.id === "t1")).toBeDefined()
  })

  it("to the current leader is done at once", () => {
    const net = new Scripted(three)
    const leader = net.elect()
    net.core(leader).transferLeadership("t2", leader)
    net.settle()
    expect(net.notices.find((n) => n._tag === "TransferDone" && n.id === "t2")).toBeDefined()
  })
})

describe("reads", () => {
  it("ReadIndex confirms leadership with a quorum and returns the commit index", () => {
    const net = new Scripted(three)
    const leader = net.elect()
    net.propose("x")
    net.run(2)
    net.core(leader).readIndex("r1")
    net.settle()
    const n = net.notices.find((x) => x._tag === "ReadReady" && x.id === "r1")
    expect(n).toBeDefined()
    expect((n as { index: number }).index).toBe(net.core(leader).status().commitIndex)
  })
})

describe("snapshots", () => {
  it("a lagging follower is brought up to date by InstallSnapshot in chunks", () => {
    const net = new Scripted(three, { snapshotEntries: 20, logRetainEntries: 2, snapshotChunkBytes: 64 })
    const leader = net.elect()
    const lag = three.find((x) => x !== leader)!
    net.isolate(lag)
    for (let i = 0; i < 100; i++) net.propose(`v${i}`)
    net.run(5)
    net.heal()
    net.sent.length = 0
    net.run(20)
    expect(net.sent.filter((m) => m._tag === "InstallSnapshot").length).toBeGreaterThan(1)
    expect(net.appliedData(lag)).toEqual(net.appliedData(leader))
  })
})

describe("fast failover on a closed connection", () => {
  it("followers that lose the leader's connection elect a new leader well before an election timeout", () => {
    const net = new Scripted(three, { electionTicks: 100 })
    const old = net.elect(1000)
    net.run(5)
    net.crash(old)
    const rest = three.filter((x) => x !== old)
    for (const id of rest) net.core(id).peerUnreachable(old)
    let ticks = 0
    while (!rest.some((x) => net.core(x).status().role === "leader")) {
      net.run(1)
      if (++ticks > 200) throw new Error("no leader")
    }
    expect(ticks).toBeLessThan(100)
  })

  it("a follower that alone lost its connection cannot unseat a live leader", () => {
    const net = new Scripted(three, { electionTicks: 100 })
    const leader = net.elect(1000)
    const term = net.core(leader).status().term
    const f = three.find((x) => x !== leader)!
    net.isolate(f)
    net.core(f).peerUnreachable(leader)
    net.run(40)
    net.heal()
    net.run(40)
    expect(net.core(leader).status().role).toBe("leader")
    expect(net.core(leader).status().term).toBe(term)
  })
})

describe("ticksUntilDue: how long a driver may sleep", () => {
  /**
   * Ticks `id` alone (nothing delivered) and checks it acts on exactly the tick the bound named:
   * the ticks before it leave nothing to do, the last one something. Returns the bound.
   */
  const actsWhenDue = (net: Scripted, id: string): number => {
    net.settle()
    const core = net.core(id)
    const due = core.ticksUntilDue()
    for (let i = 1; i < due; i++) {
      core.tick()
      expect(core.hasReady(), `tick ${i} of ${due}`).toBe(false)
    }
    core.tick()
    expect(core.hasReady(), `tick ${due}`).toBe(true)
    return due
  }
  // Heartbeats far apart, so that the other deadlines come first.
  const sparse = { electionTicks: 40, electionJitterTicks: 1, heartbeatTicks: 30 }

  it("a leader sleeps until its next heartbeat; a follower until its election timeout", () => {
    const net = new Scripted(three, sparse)
    const leader = net.elect()
    net.run(3)
    expect(actsWhenDue(net, leader)).toBe(27)
    const follower = three.find((x) => x !== leader)!
    const due = actsWhenDue(net, follower)
    expect(due).toBeGreaterThan(30)
    expect(net.core(follower).ticksUntilDue()).toBeGreaterThanOrEqual(1)
  })

  it("a leader wakes for a transfer's deadline", () => {
    const net = new Scripted(three, { ...sparse, transferTicks: 5 })
    const leader = net.elect()
    const target = three.find((x) => x !== leader)!
    net.isolate(target)
    net.propose("x")
    net.run(1)
    expect(net.core(leader).transferLeadership("t1", target)).toBeUndefined()
    expect(actsWhenDue(net, leader)).toBe(5)
    net.settle()
    expect(net.notices.find((n) => n.id === "t1")?._tag).toBe("TransferFailed")
  })

  it("a leader wakes for a new voter's catch-up deadline", () => {
    const net = new Scripted(three, { ...sparse, catchupTicks: 7 })
    const leader = net.elect()
    net.run(1)
    // "d" is never started: it cannot catch up.
    expect(net.core(leader).changeMembership("c1", [...three, "d"])).toBeUndefined()
    expect(actsWhenDue(net, leader)).toBeLessThanOrEqual(7)
    net.settle()
    while (!net.notices.some((n) => n.id === "c1")) actsWhenDue(net, leader)
    expect(net.notices.find((n) => n.id === "c1")?._tag).toBe("ConfChangeFailed")
  })

  it("a node with applied entries wakes for a snapshot by time", () => {
    const net = new Scripted(three, { ...sparse, snapshotTicks: 4 })
    const leader = net.elect()
    net.propose("x")
    net.run(5)
    net.propose("y")
    net.settle()
    const follower = three.find((x) => x !== leader)!
    expect(actsWhenDue(net, follower)).toBeLessThanOrEqual(4)
  })
})
