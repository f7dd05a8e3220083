import { describe, expect, it } from "@effect/vitest"
import { Effect } from "effect"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { decodeImage, encodeImage, encodeImageBySchema, StateMachine } from "../../src/actors/StateMachine.js"
import { toJson } from "../../src/domain/state.js"
import { awaitLeader, makeInProcessGroup } from "../../src/inProcess.js"
import { Journal } from "../../src/storage/Journal.js"
import { openRaftLog } from "../../src/storage/RaftLog.js"

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
      // The snapshot is behind the journal's head: recovery must still fold the rows after it.
      expect(image.head.seq).toBeGreaterThan(0)
      expect(image.head.seq).toBeLessThan(journal.journalHead().seq)

      const full = new StateMachine(journal)
      const fromCheckpoint = new StateMachine(journal, snapshot.data)
      expect(toJson(fromCheckpoint.state)).toEqual(toJson(full.state))

      // It really starts from the image: a job planted in the image's state survives recovery.
      const planted = JSON.parse(snapshot.data) as { state: { jobs: Array<Record<string, unknown>> } }
      planted.state.jobs.push({ ...planted.state.jobs[0], id: "999999" })
      const tampered = new StateMachine(journal, JSON.stringify(planted))
      expect(toJson(tampered.state).jobs.map((j) => j.id)).toContain("999999")

      // An image whose head the journal does not hold is ignored: full replay.
      const wrongHash = JSON.stringify({ ...planted, head: { ...image.head, hash: "0".repeat(64) } })
      expect(toJson(new StateMachine(journal, wrongHash).state)).toEqual(toJson(full.state))
      const beyond = JSON.stringify({ ...planted, head: { ...image.head, seq: journal.journalHead().seq + 1 } })
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
