import { describe, expect, it } from "@effect/vitest"
import { Effect, HashMap, Option } from "effect"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { decodeImage, encodeImage, encodeImageBySchema, StateMachine } from "../../src/actors/StateMachine.js"
import type { Event } from "../../src/domain/events.js"
import { encodeCommand } from "../../src/domain/jobs.js"
import { emptyState, evolve, fold, recentJobsKept, toJson } from "../../src/domain/state.js"
import { awaitLeader, makeInProcessGroup } from "../../src/inProcess.js"
import { decodeEvent, Journal, type JournalInput } from "../../src/storage/Journal.js"
import { openRaftLog } from "../../src/storage/RaftLog.js"
import { accepted, done, failed, started } from "../support/jobEvents.js"

const members = ["n1:1", "n2:1", "n3:1"]

/** A member's journal and its latest Raft snapshot, after a group ran `jobs` jobs with frequent snapshots. */
const filledMember = (jobs: number) =>
  Effect.gen(function* () {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "cm-sm-"))
    yield* Effect.scoped(
      Effect.gen(function* () {
        const g = yield* makeInProcessGroup({ members, dataDir: dir, raft: { snapshotEntries: 20 } })
        const leader = yield* awaitLeader(g.members)
        for (let i = 0; i < jobs; i++) {
          yield* leader.node.submit({ _tag: "SubmitJob", jobType: "raft_mission", userName: "u", paras: { task_type: "transfer_leader", target_leader: leader.id }, at: 1000 + i })
        }
        // Every member applies the last entries before the group stops.
        yield* Effect.sleep("200 millis")
      })
    )
    const memberDir = path.join(dir, "0")
    const log = openRaftLog(path.join(memberDir, "raft.db"), { persist: "sync" })
    const snapshot = log.load()?.snapshot
    yield* log.close
    const journal = Journal.open(path.join(memberDir, "journal.db"))
    return { journal, snapshot: snapshot! }
  })

describe("StateMachine recovery", () => {
  it.live("starts from the latest snapshot's image when the journal holds its head, and folds to the same state as a full replay", () =>
    Effect.gen(function* () {
      const { journal, snapshot } = yield* filledMember(50)
      expect(snapshot).toBeDefined()
      const image = decodeImage(snapshot.data)
      expect(image.head.seq).toBeGreaterThan(0)
      const full = new StateMachine(journal)
      expect(toJson(new StateMachine(journal, snapshot.data).state)).toEqual(toJson(full.state))

      // A checkpoint halfway through the journal (the real snapshot may sit at its head): the
      // rows after it are folded too, and the start really is the image (a job planted in it
      // survives recovery).
      const rows = journal.rows()
      const half = rows[Math.floor(rows.length / 2)]
      const stateAtHalf = toJson(fold(rows.filter((r) => r.seq <= half.seq).map((r) => decodeEvent(r.event))))
      const atHalf = encodeImage({ state: stateAtHalf, head: { seq: half.seq, hash: half.hash } })
      expect(toJson(new StateMachine(journal, atHalf).state)).toEqual(toJson(full.state))
      const planted = { state: { ...stateAtHalf, jobs: [...stateAtHalf.jobs, { ...stateAtHalf.jobs[0], id: "999999" }] }, head: { seq: half.seq, hash: half.hash } }
      const tampered = new StateMachine(journal, encodeImage(planted))
      expect(toJson(tampered.state).jobs.map((j) => j.id)).toContain("999999")
      expect(toJson(tampered.state).jobs.length).toBe(toJson(full.state).jobs.length + 1)

      // An image whose head the journal does not hold is ignored: full replay.
      const wrongHash = encodeImage({ ...planted, head: { ...planted.head, hash: "0".repeat(64) } })
      expect(toJson(new StateMachine(journal, wrongHash).state)).toEqual(toJson(full.state))
      const beyond = encodeImage({ ...planted, head: { ...planted.head, seq: journal.journalHead().seq + 1 } })
      expect(toJson(new StateMachine(journal, beyond).state)).toEqual(toJson(full.state))
      expect(toJson(new StateMachine(journal, "not json").state)).toEqual(toJson(full.state))
      journal.close()
    }),
    60_000
  )

  it("the snapshot image written with JSON.stringify decodes to what the Schema encoding decodes to (jobs and machines)", () => {
    const image = decodeImage(
      JSON.stringify({
        state: {
          nextJobId: 3,
          jobs: [
            { id: "1", jobType: "raft_mission", userName: "u", paras: { task_type: "add_peer", peer: "a:1" }, status: "done", memo: { n: [1, 2] }, errorCode: "", errorInfo: "", acceptedAt: 1, startedAt: 2, endedAt: 3 },
            { id: "2", jobType: "create_machine", userName: "u", paras: {}, status: "failed", memo: null, errorCode: "70007", errorInfo: "x", acceptedAt: 4, startedAt: null, endedAt: null }
          ],
          voters: ["a:1"],
          learners: [],
          leader: "a:1",
          leaderHttp: "a:2",
          leaderTerm: 2,
          machines: [
            {
              hostaddr: "127.0.0.2", rackId: "r", machineType: "storage", portRange: "57000-58000", datadir: "/d", logdir: null, walLogDir: null, compDatadir: null,
              totalMem: 1, totalCpuCores: 2, nodeMgrPort: 58010, nodeStats: "running", statsSince: 5, createdAt: 5, createdBy: "2",
              instances: [{ kind: "storage", port: 57001, status: "running", stoppedOnPurpose: false }], reportsAcked: 1, restartsReported: 1
            }
          ]
        },
        head: { seq: 4, hash: "ab" }
      })
    )
    expect(JSON.parse(encodeImage(image))).toEqual(JSON.parse(encodeImageBySchema(image)))
    expect(decodeImage(encodeImage(image))).toEqual(image)
  })
})

describe("StateMachine.apply", () => {
  it("hands what it applied to beforeJournal once the state holds it and before the journal has it; entries applied before are skipped", () => {
    const journal = Journal.open(path.join(fs.mkdtempSync(path.join(os.tmpdir(), "cm-smapply-")), "journal.db"))
    const sm = new StateMachine(journal)
    const submit = (at: number) => ({
      _tag: "Command" as const,
      data: encodeCommand({ _tag: "SubmitJob", jobType: "raft_mission", userName: "u", paras: { task_type: "add_peer", peer: "p:1" }, at })
    })
    const entries = [1, 2].map((index) => ({ index, term: 1, payload: submit(index) }))
    const seen: Array<{ ids: Array<string>; jobsInState: number; journalRows: number; applied: number }> = []
    const out = sm.apply(entries, (applied) =>
      seen.push({
        ids: applied.flatMap((a) => a.events.map((e) => ("jobId" in e ? e.jobId : ""))),
        jobsInState: HashMap.size(sm.state.jobs),
        journalRows: journal.rows().length,
        applied: sm.appliedIndex()
      })
    )
    expect(seen).toEqual([{ ids: ["1", "2"], jobsInState: 2, journalRows: 0, applied: 0 }])
    expect(out.map((a) => a.index)).toEqual([1, 2])
    expect(journal.rows().map((r) => r.jobId)).toEqual(["1", "2"])
    expect(sm.appliedIndex()).toBe(2)
    // Replayed entries (already applied) apply nothing, and beforeJournal still hears it.
    const again: Array<number> = []
    expect(sm.apply(entries, (applied) => again.push(applied.length))).toEqual([])
    expect(again).toEqual([0])
    expect(journal.rows().length).toBe(2)
    journal.close()
  })

  it("leaves the state it started from as it was: a batch updates its maps in place, never the previous state's", () => {
    const journal = Journal.open(path.join(fs.mkdtempSync(path.join(os.tmpdir(), "cm-smapply-")), "journal.db"))
    const sm = new StateMachine(journal)
    const command = (index: number) => {
      const job = String(Math.ceil(index / 3))
      const commands = [
        { _tag: "SubmitJob" as const, jobType: "raft_mission", userName: "u", paras: { n: index }, at: index },
        { _tag: "StartJob" as const, jobId: job, memo: { step: index }, at: index },
        { _tag: "FinishJob" as const, jobId: job, memo: { ok: index }, at: index }
      ]
      return { _tag: "Command" as const, data: encodeCommand(commands[(index - 1) % 3]) }
    }
    let next = 1
    const batch = (size: number) => Array.from({ length: size }, () => ({ index: next, term: 1, payload: command(next++) }))
    const states = [sm.state]
    const images = [toJson(sm.state)]
    const events: Array<Event> = []
    for (const size of [1, 7, 40, 3 * recentJobsKept, 5]) {
      for (const applied of sm.apply(batch(size))) events.push(...applied.events)
      states.push(sm.state)
      images.push(toJson(sm.state))
      // Every earlier state reads as it did when it was current.
      states.forEach((state, i) => expect(toJson(state)).toStrictEqual(images[i]))
      expect(toJson(sm.state)).toStrictEqual(toJson(events.reduce(evolve, emptyState)))
      // The current state's maps are persistent again: evolving it elsewhere leaves it as it is.
      evolve(evolve(sm.state, accepted(sm.state.nextJobId)), done(sm.state.nextJobId - recentJobsKept))
      expect(toJson(sm.state)).toStrictEqual(images[images.length - 1])
    }
    expect(HashMap.size(sm.state.jobs)).toBeGreaterThan(0)
    journal.close()
  })
})

describe("StateMachine: every replica journals the same rows", () => {
  it("an event with no time of its own (a membership change) gets the time of the event before it, also on a node that joined by snapshot or restarted there", () => {
    const open = () => Journal.open(path.join(fs.mkdtempSync(path.join(os.tmpdir(), "cm-smat-")), "journal.db"))
    const submit = (index: number) => ({
      index,
      term: 1,
      payload: {
        _tag: "Command" as const,
        data: encodeCommand({ _tag: "SubmitJob", jobType: "raft_mission", userName: "u", paras: { task_type: "add_peer", peer: "p:1" }, at: 5000 + index })
      }
    })
    const config = (index: number) => ({ index, term: 1, payload: { _tag: "Config" as const, config: { voters: ["a:1", "b:1"], outgoing: [], learners: [] } } })
    const leaderJournal = open()
    const leader = new StateMachine(leaderJournal)
    leader.apply([1, 2, 3].map(submit))
    const image = leader.snapshotImage()
    leader.apply([config(4), submit(5)])
    const expected = leaderJournal.rows({ fromSeq: 4 })
    expect(expected[0]).toMatchObject({ type: "MembershipChanged", at: 5003 })
    // A node that installs the snapshot at 3, and one that does after it applied rows of its own.
    const fresh = open()
    const joined = new StateMachine(fresh)
    joined.install(image, 3)
    joined.apply([config(4), submit(5)])
    expect(fresh.rows()).toEqual(expected)
    const behindJournal = open()
    const behind = new StateMachine(behindJournal)
    behind.apply([submit(1)])
    behind.install(image, 3)
    behind.apply([config(4), submit(5)])
    expect(behindJournal.rows()).toEqual(expected)
    // One that restarts right after installing it, with nothing after its base.
    const restartedJournal = open()
    new StateMachine(restartedJournal).install(image, 3)
    new StateMachine(restartedJournal).apply([config(4), submit(5)])
    expect(restartedJournal.rows()).toEqual(expected)
  })
})

describe("StateMachine.job: finished jobs that left the state's window", () => {
  const journalIn = (name: string) => Journal.open(path.join(fs.mkdtempSync(path.join(os.tmpdir(), "cm-smjob-")), name))
  let index = 0
  const rows = (events: ReadonlyArray<Event>): Array<JournalInput> =>
    events.map((event) => ({ event, logIndex: ++index, logTerm: 1, at: "at" in event ? event.at : 0, userName: "u" }))

  it("reads an old finished job from its journal rows, and knows no job the journal never had", () => {
    const journal = journalIn("journal.db")
    const n = recentJobsKept + 20
    const events: Array<Event> = [accepted(1), started(1)]
    for (let id = 2; id <= n; id++) events.push(accepted(id), id % 3 === 0 ? failed(id) : done(id))
    journal.append(rows(events), index)
    const sm = new StateMachine(journal)
    const full = fold(events)
    expect(Option.isNone(HashMap.get(sm.state.jobs, "2"))).toBe(true)
    expect(Option.isSome(HashMap.get(sm.state.jobs, "1"))).toBe(true)
    // The whole-log fold with the window off, as the reference: each job folded alone.
    const alone = (id: number) => toJson(fold(events.filter((e) => "jobId" in e && e.jobId === String(id)))).jobs[0]
    for (const id of [2, 3, 4, 20]) expect(sm.job(sm.state, String(id))).toEqual(alone(id))
    expect(sm.job(sm.state, String(n))).toEqual(Option.getOrUndefined(HashMap.get(full.jobs, String(n))))
    // An open job that ends out of the window leaves the state, and the journal answers for it.
    journal.append(rows([done(1)]), index)
    const after = new StateMachine(journal)
    expect(Option.isNone(HashMap.get(after.state.jobs, "1"))).toBe(true)
    expect(after.job(after.state, "1")).toMatchObject({ id: "1", status: "done", startedAt: 1, endedAt: 1, memo: { ok: 1 } })
    for (const unknown of [String(n + 1), "0", "-1", "01", "x", "1e3", ""]) expect(after.job(after.state, unknown)).toBeUndefined()
    journal.close()
  })

  it("a job accepted before the journal's base (an installed snapshot) starts from the base's state", () => {
    const journal = journalIn("journal.db")
    const sm = new StateMachine(journal)
    const next = recentJobsKept + 100
    const base = fold([accepted(5), started(5)], { ...fold([]), nextJobId: next })
    sm.install(encodeImage({ state: toJson(base), head: { seq: 40, hash: "ab".repeat(32) } }), 50)
    index = 50
    journal.append(rows([done(5)]), index)
    const after = new StateMachine(journal)
    expect(Option.isNone(HashMap.get(after.state.jobs, "5"))).toBe(true)
    expect(after.job(after.state, "5")).toMatchObject({ id: "5", status: "done", acceptedAt: 5, paras: { n: 5 } })
    journal.close()
  })

  it("a node that installed a snapshot over its own rows answers for a job that ended in the gap only once the gap is copied", () => {
    // Job 2 is accepted first and ends after recentJobsKept + 10 newer jobs: out of the window.
    const events: Array<Event> = [accepted(2)]
    for (let id = 3; id < recentJobsKept + 13; id++) events.push(accepted(id), done(id))
    const endOf2 = events.push(done(2))
    for (let id = recentJobsKept + 13; id < recentJobsKept + 16; id++) events.push(accepted(id), done(id))
    const inputs = rows(events)
    const leader = journalIn("journal.db")
    leader.append(inputs, index)
    const member = journalIn("journal.db")
    member.append(inputs.slice(0, endOf2 - 6), inputs[endOf2 - 7].logIndex) // its own rows end 5 before done(2)
    const baseSeq = endOf2 + 3
    const [atBase] = leader.rows({ fromSeq: baseSeq, toSeq: baseSeq })
    const image = encodeImage({ state: toJson(fold(events.slice(0, baseSeq))), head: { seq: baseSeq, hash: atBase.hash } })
    const sm = new StateMachine(member)
    sm.install(image, atBase.logIndex)
    expect(Option.isNone(HashMap.get(sm.state.jobs, "2"))).toBe(true)
    // Its JobAccepted is the node's own, its JobDone in the gap: not answered as if still open.
    expect(sm.job(sm.state, "2")).toBeUndefined()
    expect(member.historyIncomplete()).toBe(true)
    for (let need = member.historyNeed(); need !== undefined; need = member.historyNeed()) {
      member.addHistory(leader.page(need.toSeq, need.toSeq - need.floor), need)
    }
    expect(sm.job(sm.state, "2")).toMatchObject({ id: "2", status: "done", endedAt: 2 })
    expect(sm.job(sm.state, "3")).toMatchObject({ id: "3", status: "done" })
    leader.close()
    member.close()
  })
})
