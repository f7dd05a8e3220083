import { describe, expect, it } from "@effect/vitest"
import { Scripted } from "./harness.js"

const three = ["a", "b", "c"]

describe("membership catch-up", () => {
  it("a new voter that never answers fails the change, however short the log", () => {
    const net = new Scripted(three, { catchupTicks: 50 })
    const leader = net.elect()
    for (let i = 0; i < 5; i++) net.propose(`v${i}`)
    net.run(2)
    // "d" is never started: nothing answers for it.
    expect(net.core(leader).changeMembership("job1", [...three, "d"])).toBeUndefined()
    net.run(100)
    const n = net.notices.find((x) => x.id === "job1")
    expect(n?._tag).toBe("ConfChangeFailed")
  })

  it("a new voter caught up by a snapshot ending at the leader last index completes the change", () => {
    const net = new Scripted(three, { snapshotEntries: 5, logRetainEntries: 0, catchupTicks: 50 })
    const leader = net.elect()
    for (let i = 0; i < 19; i++) net.propose(`v${i}`)
    net.run(5)
    net.add("d", [...three, "d"])
    expect(net.core(leader).changeMembership("job1", [...three, "d"])).toBeUndefined()
    net.run(100)
    const n = net.notices.find((x) => x.id === "job1")
    expect(n?._tag).toBe("ConfChangeDone")
  })
})
