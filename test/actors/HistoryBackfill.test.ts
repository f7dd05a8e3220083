import { describe, expect, it } from "@effect/vitest"
import Database from "better-sqlite3"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import * as HttpClient from "@effect/platform/HttpClient"
import * as HttpClientResponse from "@effect/platform/HttpClientResponse"
import { Duration, Effect } from "effect"
import { checkPage, copyOnce } from "../../src/actors/HistoryBackfill.js"
import { JournalPruner } from "../../src/actors/JournalPruner.js"
import type { RaftNodeApi } from "../../src/actors/RaftNode.js"
import type { RaftStatus } from "../../src/domain/raft/ready.js"
import { type ClusterState, emptyState, toJson } from "../../src/domain/state.js"
import { type Event, LeaderElected } from "../../src/domain/events.js"
import { Journal, type JournalInput } from "../../src/storage/Journal.js"
import { accepted, done } from "../support/jobEvents.js"

const dir = () => fs.mkdtempSync(path.join(os.tmpdir(), "cm-history-"))
let index = 0
const rows = (events: ReadonlyArray<Event>): Array<JournalInput> =>
  events.map((event) => ({ event, logIndex: ++index, logTerm: 1, at: "at" in event ? event.at : 0, userName: "u" }))

/** A leader's journal of 20 jobs (40 events) and a member that joined by a snapshot at seq 30. */
const setUp = () => {
  const leader = openJournal()
  const events: Array<Event> = []
  for (let id = 1; id <= 20; id++) events.push(accepted(id), done(id))
  leader.append(rows(events), index)
  const [at30] = leader.rows({ fromSeq: 30, toSeq: 30 })
  const member = openJournal()
  member.installBase({ seq: 30, hash: at30.hash, state: "{}" }, at30.logIndex)
  return { leader, member, at30 }
}

/** Journals opened by `openJournal`, with their files. */
const files = new Map<Journal, string>()
const openJournal = (retention?: { events: number; days: number }) => {
  const file = path.join(dir(), "journal.db")
  const journal = Journal.open(file, retention)
  files.set(journal, file)
  return journal
}

/** A leader's journal of 20 jobs (40 events), and the inputs it appended (a member may append the same). */
const leaderOf40 = () => {
  const leader = openJournal()
  const events: Array<Event> = []
  for (let id = 1; id <= 20; id++) events.push(accepted(id), done(id))
  const inputs = rows(events)
  leader.append(inputs, index)
  return { leader, inputs }
}

/** A member that applied the leader's first `count` events itself (`inputs` as leaderOf40 gives them). */
const withOwnRows = (inputs: ReadonlyArray<JournalInput>, count: number) => {
  const member = openJournal()
  member.append(inputs.slice(0, count), inputs[count - 1].logIndex)
  return member
}

/** Installs on `member` a snapshot at the leader's row `seq` (an empty state); that row. */
const installAt = (leader: Journal, member: Journal, seq: number) => {
  const [row] = leader.rows({ fromSeq: seq, toSeq: seq })
  member.installBase({ seq, hash: row.hash, state: "{}" }, row.logIndex)
  return row
}

/** Copies from `leader` until the member lacks nothing, `limit` rows a page; what each page closed. */
const copyAll = (leader: Journal, member: Journal, limit: number) => {
  const outcomes: Array<string> = []
  for (let need = member.historyNeed(); need !== undefined; need = member.historyNeed()) {
    const page = leader.page(need.toSeq, Math.min(limit, need.toSeq - need.floor))
    expect(checkPage(page, need)).toBeUndefined()
    outcomes.push(member.addHistory(page, need))
    if (outcomes.length > 100) throw new Error("the copy does not end")
  }
  return outcomes
}

/** How many rows the member's table history holds (copied ones). */
const historyRows = (member: Journal): number => {
  const db = new Database(files.get(member)!, { readonly: true })
  try {
    return db.prepare<[], { n: number }>("SELECT count(*) AS n FROM history").get()!.n
  } finally {
    db.close()
  }
}

/** Peers serving their journal pages by HTTP address; `asked` records whom a member asked. */
const servingPeers = (served: ReadonlyMap<string, Journal>, asked: Array<string>) =>
  HttpClient.make((request, url) => {
    asked.push(url.host)
    const peer = served.get(url.host)
    const rows = peer === undefined ? [] : peer.page(Number(url.searchParams.get("to")), Number(url.searchParams.get("limit")))
    return Effect.succeed(HttpClientResponse.fromWeb(request, new Response(JSON.stringify({ rows }))))
  })

describe("history backfill", () => {
  it("copies the events before the base a checked page at a time, newest first, down to seq 1", () => {
    const { leader, member, at30 } = setUp()
    expect(member.historyNeed()).toEqual({ toSeq: 30, anchor: at30.hash, floor: 0 })
    expect(leader.historyNeed()).toBeUndefined() // no base: nothing to copy
    let pages = 0
    for (let need = member.historyNeed(); need !== undefined; need = member.historyNeed()) {
      const page = leader.page(need.toSeq, 8)
      expect(checkPage(page, need)).toBeUndefined()
      expect(member.addHistory(page, need)).toBe("stored")
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
    const need = member.historyNeed()!
    const page = leader.page(need.toSeq, 6)
    expect(checkPage(page.map((r, i) => (i === 2 ? { ...r, event: r.event.replace(`"jobId":"`, `"jobId":"9`) } : r)), need)).toContain("does not hash")
    expect(checkPage([page[0], page[2], page[3]], need)).toContain("expected seq 29")
    expect(checkPage([page[1], page[0]], need)).toContain("expected seq 30")
    expect(checkPage(page, { ...need, anchor: "f".repeat(64) })).toContain("does not link")
    const other = openJournal()
    const events: Array<Event> = []
    for (let id = 1; id <= 20; id++) events.push(accepted(id), done(id + 1000))
    other.append(rows(events), index)
    expect(checkPage(other.page(need.toSeq, 6), need)).toBeDefined()
  })

  it("under a newer base keeps what it copied and copies the gap first; copies nothing where the node's own retention pruned", () => {
    const { leader, member } = setUp()
    member.addHistory(leader.page(30, 10), member.historyNeed()!)
    expect(member.historyNeed()).toMatchObject({ toSeq: 20, floor: 0 })
    const at36 = installAt(leader, member, 36)
    expect(member.historyNeed()).toEqual({ toSeq: 36, anchor: at36.hash, floor: 30 })
    expect(member.historyLow()).toBeUndefined()
    copyAll(leader, member, 4)
    expect(historyRows(member)).toBe(36) // 21-30 first, 31-36 then, 1-20 last: each copied once
    expect(member.page(36, 100)).toEqual(leader.page(36, 100))
    const pruning = openJournal({ events: 10, days: 0 })
    pruning.installBase({ seq: 36, hash: at36.hash, state: "{}" }, at36.logIndex)
    expect(pruning.historyNeed()).toBeUndefined()
  })

  it("a node that installs a snapshot over its own journal keeps its rows and copies only the gap up to the base", () => {
    const { leader, inputs } = leaderOf40()
    const member = withOwnRows(inputs, 20) // it applied 20 events, then fell behind
    const [at20] = leader.rows({ fromSeq: 20, toSeq: 20 })
    expect(member.journalHead()).toEqual({ seq: 20, hash: at20.hash })
    const at30 = installAt(leader, member, 30)
    expect(member.rows()).toEqual([]) // its own rows are below the base now: history, not journal
    expect(member.historyNeed()).toEqual({ toSeq: 30, anchor: at30.hash, floor: 20 })
    expect(member.historyIncomplete()).toBe(true)
    // While the gap is open a job whose rows may be in it is not answered from the history:
    // job 10 was accepted at seq 19, its own, and done at seq 20.
    expect(member.historyOf("10")).toEqual([])
    // Served onwards: its own rows, and nothing across the gap.
    expect(member.page(20, 5)).toEqual(leader.page(20, 5))
    expect(member.page(25, 5)).toEqual([])
    const outcomes = copyAll(leader, member, 4)
    expect(outcomes).toEqual(["stored", "stored", "joined"]) // 30-27, 26-23, 22-21
    expect(member.historyNeed()).toBeUndefined() // its own rows reach seq 1
    expect(historyRows(member)).toBe(10)
    expect(member.historyOf("10")).toEqual(leader.rows({ jobId: "10" }))
    expect(member.historyOf("13")).toEqual(leader.rows({ jobId: "13" })) // accepted at 25, done at 26: copied
    expect(member.page(30, 100)).toEqual(leader.page(30, 100))
    // Reopened: the same, and the journal goes on from the base.
    member.close()
    const reopened = Journal.open(files.get(member)!)
    expect(reopened.historyNeed()).toBeUndefined()
    expect(reopened.page(30, 100)).toEqual(leader.page(30, 100))
    reopened.append(inputs.slice(30, 32), inputs[31].logIndex)
    expect(reopened.rows()).toEqual(leader.rows({ fromSeq: 31, toSeq: 32 }))
  })

  it("own rows kept under a snapshot survive a restart: the pruner deletes only rows a prune mark says it pruned", () => {
    const { leader, inputs } = leaderOf40()
    const member = withOwnRows(inputs, 20)
    installAt(leader, member, 30)
    const restart = (journal: Journal) => {
      journal.close()
      const reopened = Journal.open(files.get(member)!)
      // As StateMachine starts it after a restart: with pruned rows possibly left to delete.
      new JournalPruner(reopened, { decode: () => emptyState, encode: () => "" }).step(0, 1)
      return reopened
    }
    const gapOpen = restart(member)
    expect(gapOpen.page(20, 100)).toEqual(leader.page(20, 100)) // its own rows, still there
    expect(copyAll(leader, gapOpen, 100)).toEqual(["joined"])
    const joined = restart(gapOpen)
    expect(joined.historyNeed()).toBeUndefined()
    expect(joined.page(30, 100)).toEqual(leader.page(30, 100))
  })

  it("a history with a hole, as older versions could leave, is cut at the hole when opened and copied again from there", () => {
    /** Deletes rows of `table` in `from..to` behind the journal's back (an older version's leftovers), then reopens it. */
    const holed = (journal: Journal, table: string, from: number, to: number) => {
      const file = files.get(journal)!
      journal.close()
      const db = new Database(file)
      db.prepare(`DELETE FROM ${table} WHERE seq >= ? AND seq <= ?`).run(from, to)
      db.close()
      const reopened = Journal.open(file)
      files.set(reopened, file)
      return reopened
    }
    // A copied history 11-30 with a hole at 21-22: rows 11-20 would count as history forever.
    const copied = setUp()
    copyAll(copied.leader, copied.member, 10)
    const cut = holed(copied.member, "history", 21, 22)
    expect(cut.historyRepair).toEqual({ below: 23, dropped: 20 }) // 1-20
    expect(cut.historyNeed()?.toSeq).toBe(22)
    expect(copyAll(copied.leader, cut, 100)).toEqual(["stored"])
    expect(cut.page(30, 100)).toEqual(copied.leader.page(30, 100))
    expect(Journal.open(files.get(cut)!).historyRepair).toBeUndefined() // whole now
    // Own rows kept under a snapshot with a hole, and a history without the base's own row.
    const { leader, inputs } = leaderOf40()
    const own = withOwnRows(inputs, 30)
    installAt(leader, own, 30)
    const ownCut = holed(own, "journal", 12, 12)
    expect(ownCut.historyRepair).toEqual({ below: 13, dropped: 11 })
    expect(copyAll(leader, ownCut, 100)).toEqual(["stored"])
    expect(ownCut.page(30, 100)).toEqual(leader.page(30, 100))
    const topless = holed(ownCut, "journal", 30, 30)
    expect(topless.historyRepair).toEqual({ below: 31, dropped: 29 }) // all of 1-29: the run does not reach the base
    expect(copyAll(leader, topless, 100)).toEqual(["stored"])
    expect(topless.page(30, 100)).toEqual(leader.page(30, 100))
    // While a gap is open, only the copied run above it is checked (own rows: when it closes).
    const gapped = withOwnRows(inputs, 10)
    installAt(leader, gapped, 30)
    for (const toSeq of [30, 25]) {
      const need = gapped.historyNeed()!
      expect(gapped.addHistory(leader.page(toSeq, 5), need)).toBe("stored") // 30-26, 25-21
    }
    const gapCut = holed(gapped, "history", 25, 25)
    expect(gapCut.historyRepair).toEqual({ below: 26, dropped: 4 }) // 21-24; own rows 1-10 stay
    expect(gapCut.historyNeed()).toMatchObject({ toSeq: 25, floor: 10 })
    expect(copyAll(leader, gapCut, 100)).toEqual(["joined"])
    expect(historyRows(gapCut)).toBe(20)
    expect(gapCut.page(30, 100)).toEqual(leader.page(30, 100))
  })

  it("own rows that started at an earlier base keep their place: the gap above them first, then what lies below", () => {
    const { leader, inputs } = leaderOf40()
    const member = openJournal()
    installAt(leader, member, 10)
    member.append(inputs.slice(10, 20), inputs[19].logIndex) // joined at 10, applied 11-20 itself, copied nothing yet
    const at30 = installAt(leader, member, 30)
    expect(member.historyNeed()).toEqual({ toSeq: 30, anchor: at30.hash, floor: 20 })
    expect(copyAll(leader, member, 8)).toEqual(["stored", "joined", "stored", "stored"])
    expect(historyRows(member)).toBe(20) // 21-30 and 1-10
    expect(member.page(30, 100)).toEqual(leader.page(30, 100))
  })

  it("a gap that does not link to the node's own rows drops them, and the copy goes on below", () => {
    const { leader } = leaderOf40()
    const member = openJournal()
    const other: Array<Event> = []
    for (let id = 1; id <= 10; id++) other.push(accepted(id), done(id + 1000))
    member.append(rows(other), index)
    installAt(leader, member, 30)
    expect(member.historyNeed()?.floor).toBe(20)
    expect(copyAll(leader, member, 10)).toEqual(["own rows dropped", "stored", "stored"])
    expect(historyRows(member)).toBe(30)
    expect(member.page(30, 100)).toEqual(leader.page(30, 100))
    expect(member.historyOf("10")).toEqual(leader.rows({ jobId: "10" }))
  })

  it("a page fetched for what the history lacked before a snapshot was installed is refused as stale", () => {
    // Copying the gap above its own rows when a newer snapshot comes (the gap is open: all goes).
    const { leader, inputs } = leaderOf40()
    const member = withOwnRows(inputs, 20)
    installAt(leader, member, 30)
    const need = member.historyNeed()!
    const inFlight = leader.page(need.toSeq, 4)
    const at36 = installAt(leader, member, 36)
    expect(member.addHistory(inFlight, need)).toBe("stale")
    expect(historyRows(member)).toBe(0)
    // Had it been stored, the copy would have gone on below it (seq 26), leaving 31-36 out.
    expect(member.historyNeed()).toEqual({ toSeq: 36, anchor: at36.hash, floor: 0 })
    expect(copyAll(leader, member, 10).every((o) => o === "stored")).toBe(true)
    expect(member.page(36, 100)).toEqual(leader.page(36, 100))
    // The same without own rows: a node that joined by snapshot, then got a newer one.
    const fresh = setUp()
    const first = fresh.member.historyNeed()!
    const early = fresh.leader.page(first.toSeq, 5)
    const [later] = fresh.leader.rows({ fromSeq: 36, toSeq: 36 })
    fresh.member.installBase({ seq: 36, hash: later.hash, state: "{}" }, later.logIndex)
    expect(fresh.member.addHistory(early, first)).toBe("stale")
    expect(historyRows(fresh.member)).toBe(0)
  })

  it("own rows with a hole are not kept under a snapshot, and a hole found when the gap closes drops them", () => {
    const { leader, inputs } = leaderOf40()
    const [at30] = leader.rows({ fromSeq: 30, toSeq: 30 })
    const punch = (journal: Journal, seq: number) => {
      const db = new Database(files.get(journal)!)
      db.prepare("DELETE FROM journal WHERE seq = ?").run(seq)
      db.close()
    }
    // A hole at install: nothing is kept, the copy starts from the base.
    const holed = withOwnRows(inputs, 20)
    punch(holed, 7)
    holed.installBase({ seq: 30, hash: at30.hash, state: "{}" }, at30.logIndex)
    expect(holed.historyNeed()).toEqual({ toSeq: 30, anchor: at30.hash, floor: 0 })
    expect(holed.page(20, 5)).toEqual([])
    // A hole that appears while the gap is copied: found when the gap closes.
    const member = withOwnRows(inputs, 20)
    member.installBase({ seq: 30, hash: at30.hash, state: "{}" }, at30.logIndex)
    punch(member, 7)
    expect(copyAll(leader, member, 10)).toEqual(["own rows dropped", "stored", "stored"])
    expect(member.page(30, 100)).toEqual(leader.page(30, 100))
  })

  it("rows that retention pruned and has not deleted yet are no history", () => {
    const { inputs } = leaderOf40()
    const pruning = openJournal({ events: 10, days: 0 })
    pruning.append(inputs, inputs[39].logIndex)
    const [at20] = pruning.rows({ fromSeq: 20, toSeq: 20 })
    expect(pruning.moveBase({ seq: 20, hash: at20.hash, state: "{}" }, { eventAt: 0, snapshotIndex: at20.logIndex, snapshotSeq: 20 })).toBe(true)
    expect(pruning.historyOf("3")).toEqual([])
    expect(pruning.page(20, 5)).toEqual([])
    expect(pruning.historyLow()).toBeUndefined()
    expect(pruning.historyNeed()).toBeUndefined()
  })

  it("a snapshot installed while a gap is open, or over rows that are not the base's, drops what the node held", () => {
    const { leader, inputs } = leaderOf40()
    const member = withOwnRows(inputs, 20)
    installAt(leader, member, 30)
    member.addHistory(leader.page(30, 4), member.historyNeed()!)
    const at36 = installAt(leader, member, 36)
    expect(member.historyNeed()).toEqual({ toSeq: 36, anchor: at36.hash, floor: 0 })
    expect(member.page(20, 5)).toEqual([])
    expect(historyRows(member)).toBe(0)
    // A base at its own head's seq with another hash: its rows are not that chain.
    const diverged = withOwnRows(inputs, 20)
    diverged.installBase({ seq: 20, hash: "f".repeat(64), state: "{}" }, inputs[19].logIndex)
    expect(diverged.page(20, 5)).toEqual([])
    expect(diverged.historyNeed()).toEqual({ toSeq: 20, anchor: "f".repeat(64), floor: 0 })
  })

  it.effect("a member that leads before its copy is done asks a member it saw lead", () =>
    Effect.gen(function* () {
      const { leader, member } = setUp()
      const asked: Array<string> = []
      const client = servingPeers(new Map([["n1-http:1", leader]]), asked)
      // The members as the core knows them; the state names none, as in a group whose members
      // never changed (the state learns them only from a membership change).
      const members = { voters: ["n1", "n2", "n3", "n4"], outgoing: [], learners: [] }
      let state: ClusterState = { ...emptyState, leader: "n1", leaderHttp: "n1-http:1", leaderTerm: 1 }
      let status = { role: "follower", leader: "n1", ...members } as unknown as RaftStatus
      const node = {
        id: "n4",
        localState: Effect.sync(() => state),
        status: Effect.sync(() => status)
      } as unknown as RaftNodeApi
      const seen = new Map<string, string>()
      // It followed n1 for a moment (n1 had no page for it then), then took the lead itself.
      expect(Duration.toMillis(yield* copyOnce(node, member, servingPeers(new Map(), asked), seen))).toBeGreaterThanOrEqual(1000)
      expect(member.historyLow()).toBeUndefined()
      state = { ...state, leader: "n4", leaderHttp: "n4-http:4", leaderTerm: 2 }
      status = { role: "leader", leader: "n4", ...members } as unknown as RaftStatus
      asked.length = 0
      for (let i = 0; i < 5 && member.historyNeed() !== undefined; i++) yield* copyOnce(node, member, client, seen)
      expect(member.historyNeed()).toBeUndefined()
      expect(new Set(asked)).toEqual(new Set(["n1-http:1"]))
      expect(member.historyOf("3")).toEqual(leader.rows({ jobId: "3" }))
      // A leader with no other leader on record (none seen, none in its journal or its base's
      // image) asks the members whose connections announced their HTTP address, members only.
      const { leader: other, member: fresh } = setUp()
      const members3 = servingPeers(new Map([["n3-http:3", other], ["n9-http:9", other]]), asked)
      expect(Duration.toMillis(yield* copyOnce(node, fresh, members3, new Map()))).toBeGreaterThanOrEqual(1000)
      expect(fresh.historyLow()).toBeUndefined()
      asked.length = 0
      const announced = new Map([["n9", "n9-http:9"], ["n3", "n3-http:3"]]) // n9 is no member
      for (let i = 0; i < 5 && fresh.historyNeed() !== undefined; i++) yield* copyOnce(node, fresh, members3, new Map(), undefined, () => announced)
      expect(fresh.historyNeed()).toBeUndefined()
      expect(new Set(asked)).toEqual(new Set(["n3-http:3"]))
    }))

  it.effect("a member that restarts and leads at once asks the leaders on its record: its journal's LeaderElected events, its base's image", () =>
    Effect.gen(function* () {
      const asked: Array<string> = []
      const client = (served: ReadonlyMap<string, Journal>) => servingPeers(served, asked)
      const members = { voters: ["n1", "n2", "n3", "n4"], outgoing: [], learners: [] }
      // Restarted (nothing seen), leading, its state naming itself (and no members: see above).
      const state: ClusterState = { ...emptyState, leader: "n4", leaderHttp: "n4-http:4", leaderTerm: 9 }
      const node = {
        id: "n4",
        localState: Effect.sync(() => state),
        status: Effect.sync(() => ({ role: "leader", leader: "n4", ...members }) as unknown as RaftStatus)
      } as unknown as RaftNodeApi

      // 1. Its journal after the base holds n2's election (and its own, and one of a node since removed).
      const first = setUp()
      first.member.append(
        rows([
          new LeaderElected({ v: 1, leader: "n2", http: "n2-http:2", term: 3, at: 1 }),
          new LeaderElected({ v: 1, leader: "n9", http: "n9-http:9", term: 4, at: 2 }),
          new LeaderElected({ v: 1, leader: "n4", http: "n4-http:4", term: 5, at: 3 })
        ]),
        index
      )
      const record = { checkedHead: undefined }
      for (let i = 0; i < 5 && first.member.historyNeed() !== undefined; i++) {
        yield* copyOnce(node, first.member, client(new Map([["n2-http:2", first.leader]])), new Map(), record)
      }
      expect(first.member.historyNeed()).toBeUndefined()
      expect(new Set(asked)).toEqual(new Set(["n2-http:2"]))

      // 2. Its journal names no other leader, its base's image does (the leader it joined from).
      asked.length = 0
      const second = setUp()
      const base = second.member.journalBase()
      const image = JSON.stringify({ state: { ...toJson(emptyState), leader: "n1", leaderHttp: "n1-http:1" }, head: { seq: base.seq, hash: base.hash } })
      second.member.installBase({ ...base, state: image }, 30)
      for (let i = 0; i < 5 && second.member.historyNeed() !== undefined; i++) {
        yield* copyOnce(node, second.member, client(new Map([["n1-http:1", second.leader]])), new Map())
      }
      expect(second.member.historyNeed()).toBeUndefined()
      expect(new Set(asked)).toEqual(new Set(["n1-http:1"]))
      expect(second.member.historyOf("3")).toEqual(second.leader.rows({ jobId: "3" }))
    }))
})
