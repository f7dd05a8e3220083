import { describe, expect, it } from "@effect/vitest"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { checkPage, nextNeed } from "../../src/actors/HistoryBackfill.js"
import type { Event } from "../../src/domain/events.js"
import { Journal, type JournalInput } from "../../src/storage/Journal.js"
import { accepted, done } from "../support/jobEvents.js"

const dir = () => fs.mkdtempSync(path.join(os.tmpdir(), "cm-history-"))
let index = 0
const rows = (events: ReadonlyArray<Event>): Array<JournalInput> =>
  events.map((event) => ({ event, logIndex: ++index, logTerm: 1, at: "at" in event ? event.at : 0, userName: "u" }))

/** A leader's journal of 20 jobs (40 events) and a member that joined by a snapshot at seq 30. */
const setUp = () => {
  const leader = Journal.open(path.join(dir(), "journal.db"))
  const events: Array<Event> = []
  for (let id = 1; id <= 20; id++) events.push(accepted(id), done(id))
  leader.append(rows(events), index)
  const [at30] = leader.rows({ fromSeq: 30, toSeq: 30 })
  const member = Journal.open(path.join(dir(), "journal.db"))
  member.installBase({ seq: 30, hash: at30.hash, state: "{}" }, at30.logIndex)
  return { leader, member, at30 }
}

describe("history backfill", () => {
  it("copies the events before the base a checked page at a time, newest first, down to seq 1", () => {
    const { leader, member, at30 } = setUp()
    expect(nextNeed(member)).toEqual({ toSeq: 30, anchor: at30.hash })
    expect(nextNeed(leader)).toBeUndefined() // no base: nothing to copy
    let pages = 0
    for (let need = nextNeed(member); need !== undefined; need = nextNeed(member)) {
      const page = leader.page(need.toSeq, 8)
      expect(checkPage(page, need)).toBeUndefined()
      member.addHistory(page)
      pages++
    }
    expect(pages).toBe(4)
    expect(member.historyOf("3").map((r) => r.type)).toEqual(["JobAccepted", "JobDone"])
    expect(member.historyOf("3")).toEqual(leader.rows({ jobId: "3" }))
    // The journal itself is untouched: readers still start after the base.
    expect(member.rows()).toEqual([])
    // Served onwards: the member's page below its base comes from its history.
    expect(member.page(12, 4)).toEqual(leader.page(12, 4))
  })

  it("refuses a page that is not the chain below the base: edited, reordered, with a gap, or another chain's", () => {
    const { leader, member } = setUp()
    const need = nextNeed(member)!
    const page = leader.page(need.toSeq, 6)
    expect(checkPage(page.map((r, i) => (i === 2 ? { ...r, event: r.event.replace(`"jobId":"`, `"jobId":"9`) } : r)), need)).toContain("does not hash")
    expect(checkPage([page[0], page[2], page[3]], need)).toContain("expected seq 29")
    expect(checkPage([page[1], page[0]], need)).toContain("expected seq 30")
    expect(checkPage(page, { ...need, anchor: "f".repeat(64) })).toContain("does not link")
    const other = Journal.open(path.join(dir(), "journal.db"))
    const events: Array<Event> = []
    for (let id = 1; id <= 20; id++) events.push(accepted(id), done(id + 1000))
    other.append(rows(events), index)
    expect(checkPage(other.page(need.toSeq, 6), need)).toBeDefined()
  })

  it("starts again from a newer base, and copies nothing where the node's own retention pruned", () => {
    const { leader, member } = setUp()
    member.addHistory(leader.page(30, 10))
    expect(nextNeed(member)?.toSeq).toBe(20)
    const [at36] = leader.rows({ fromSeq: 36, toSeq: 36 })
    member.installBase({ seq: 36, hash: at36.hash, state: "{}" }, at36.logIndex)
    expect(nextNeed(member)).toEqual({ toSeq: 36, anchor: at36.hash })
    expect(member.historyLow()).toBeUndefined()
    const pruning = Journal.open(path.join(dir(), "journal.db"), { events: 10, days: 0 })
    pruning.installBase({ seq: 36, hash: at36.hash, state: "{}" }, at36.logIndex)
    expect(nextNeed(pruning)).toBeUndefined()
  })
})
