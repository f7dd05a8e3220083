import { describe, expect, it } from "@effect/vitest"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import * as HttpClient from "@effect/platform/HttpClient"
import * as HttpClientResponse from "@effect/platform/HttpClientResponse"
import { Duration, Effect } from "effect"
import { checkPage, copyOnce, nextNeed } from "../../src/actors/HistoryBackfill.js"
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
  const leader = Journal.open(path.join(dir(), "journal.db"))
  const events: Array<Event> = []
  for (let id = 1; id <= 20; id++) events.push(accepted(id), done(id))
  leader.append(rows(events), index)
  const [at30] = leader.rows({ fromSeq: 30, toSeq: 30 })
  const member = Journal.open(path.join(dir(), "journal.db"))
  member.installBase({ seq: 30, hash: at30.hash, state: "{}" }, at30.logIndex)
  return { leader, member, at30 }
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

  it.effect("a member that leads before its copy is done asks a member it saw lead", () =>
    Effect.gen(function* () {
      const { leader, member } = setUp()
      const asked: Array<string> = []
      const client = servingPeers(new Map([["n1-http:1", leader]]), asked)
      const voters = ["n1", "n2", "n3", "n4"]
      let state: ClusterState = { ...emptyState, voters, leader: "n1", leaderHttp: "n1-http:1", leaderTerm: 1 }
      let status = { role: "follower", leader: "n1" } as RaftStatus
      const node = {
        id: "n4",
        localState: Effect.sync(() => state),
        status: Effect.sync(() => status)
      } as unknown as RaftNodeApi
      const seen = new Map<string, string>()
      // It followed n1 for a moment (one page), then took the lead itself.
      expect(Duration.toMillis(yield* copyOnce(node, member, client, seen))).toBeLessThan(1000)
      expect(member.historyLow()?.seq).toBe(1)
      member.installBase({ ...member.journalBase(), state: "{}" }, 30) // a snapshot at the same point empties the history
      state = { ...state, leader: "n4", leaderHttp: "n4-http:4", leaderTerm: 2 }
      status = { role: "leader", leader: "n4" } as RaftStatus
      asked.length = 0
      for (let i = 0; i < 5 && nextNeed(member) !== undefined; i++) yield* copyOnce(node, member, client, seen)
      expect(nextNeed(member)).toBeUndefined()
      expect(new Set(asked)).toEqual(new Set(["n1-http:1"]))
      expect(member.historyOf("3")).toEqual(leader.rows({ jobId: "3" }))
      // A leader with no other leader on record (none seen, none in its journal or its base's
      // image) has no one to ask.
      const fresh = setUp().member
      expect(Duration.toMillis(yield* copyOnce(node, fresh, client, new Map()))).toBeGreaterThanOrEqual(1000)
      expect(fresh.historyLow()).toBeUndefined()
    }))

  it.effect("a member that restarts and leads at once asks the leaders on its record: its journal's LeaderElected events, its base's image", () =>
    Effect.gen(function* () {
      const asked: Array<string> = []
      const client = (served: ReadonlyMap<string, Journal>) => servingPeers(served, asked)
      const voters = ["n1", "n2", "n3", "n4"]
      // Restarted (nothing seen), leading, its state naming itself.
      const state: ClusterState = { ...emptyState, voters, leader: "n4", leaderHttp: "n4-http:4", leaderTerm: 9 }
      const node = {
        id: "n4",
        localState: Effect.sync(() => state),
        status: Effect.sync(() => ({ role: "leader", leader: "n4" }) as RaftStatus)
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
      for (let i = 0; i < 5 && nextNeed(first.member) !== undefined; i++) {
        yield* copyOnce(node, first.member, client(new Map([["n2-http:2", first.leader]])), new Map(), record)
      }
      expect(nextNeed(first.member)).toBeUndefined()
      expect(new Set(asked)).toEqual(new Set(["n2-http:2"]))

      // 2. Its journal names no other leader, its base's image does (the leader it joined from).
      asked.length = 0
      const second = setUp()
      const base = second.member.journalBase()
      const image = JSON.stringify({ state: { ...toJson(emptyState), leader: "n1", leaderHttp: "n1-http:1" }, head: { seq: base.seq, hash: base.hash } })
      second.member.installBase({ ...base, state: image }, 30)
      for (let i = 0; i < 5 && nextNeed(second.member) !== undefined; i++) {
        yield* copyOnce(node, second.member, client(new Map([["n1-http:1", second.leader]])), new Map())
      }
      expect(nextNeed(second.member)).toBeUndefined()
      expect(new Set(asked)).toEqual(new Set(["n1-http:1"]))
      expect(second.member.historyOf("3")).toEqual(second.leader.rows({ jobId: "3" }))
    }))
})
