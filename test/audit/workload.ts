import Database from "better-sqlite3"
import { execFile } from "node:child_process"
import { promisify } from "node:util"
import { Effect, Either, HashMap } from "effect"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import * as Audit from "../../src/audit/Audit.js"
import { Divergence } from "../../src/audit/errors.js"
import { awaitLeader, type InProcessMember, makeInProcessGroup } from "../../src/inProcess.js"
import type { StateCommand } from "../../src/domain/jobs.js"
import { Prng } from "../../src/domain/raft/prng.js"
import { unfinishedJobs } from "../../src/domain/state.js"
import { Journal, type JournalRetention, type JournalRow } from "../../src/storage/Journal.js"

export const members = ["n1:1", "n2:1", "n3:1"]

const created: Array<string> = []

export const tmpDir = (prefix: string) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), prefix))
  created.push(dir)
  return dir
}

/** Removes every directory tmpDir made in this test file. */
export const removeTmpDirs = () => {
  for (const dir of created.splice(0)) fs.rmSync(dir, { recursive: true, force: true })
}

/** One random command: a new job (run by the scheduler too), or a step of a job seen so far. */
const randomCommand = (rng: Prng, leader: string, jobIds: ReadonlyArray<string>, at: number): StateCommand => {
  const jobId = jobIds.length > 0 ? jobIds[rng.int(jobIds.length)] : "1"
  switch (jobIds.length === 0 ? 0 : rng.int(6)) {
    case 0:
      return { _tag: "SubmitJob", jobType: "raft_mission", userName: `u${rng.int(3)}`, paras: { task_type: "transfer_leader", target_leader: leader }, at }
    case 1:
      return { _tag: "SubmitJob", jobType: "manual", userName: `u${rng.int(3)}`, paras: { n: rng.int(1000) }, at }
    case 2:
      return { _tag: "StartJob", jobId, memo: { step: 0 }, at }
    case 3:
      return { _tag: "ProgressJob", jobId, memo: { step: rng.int(10) }, at }
    case 4:
      return { _tag: "FinishJob", jobId, memo: { ok: true }, at }
    default:
      return { _tag: "FailJob", jobId, memo: {}, errorCode: "70007", errorInfo: "by the workload", at }
  }
}

/** Submits `count` random commands through the leader's RaftNode, a few at a time. */
export const runCommands = (rng: Prng, leader: InProcessMember, count: number, jobIds: Array<string>) =>
  Effect.forEach(
    Array.from({ length: count }, (_, i) => i),
    (i) =>
      leader.node.submit(randomCommand(rng, leader.id, jobIds, 1_700_000_000_000 + i * 1000)).pipe(
        Effect.tap((a) => Effect.sync(() => a.events.forEach((e) => e._tag === "JobAccepted" && jobIds.push(e.jobId)))),
        Effect.ignore
      ),
    { concurrency: 4, discard: true }
  )

/** Until the scheduler has finished every job and every running member applied the leader's log. */
export const settle = (leader: InProcessMember, running: ReadonlyArray<InProcessMember>) =>
  Effect.gen(function* () {
    for (let i = 0; i < 1000; i++) {
      const open = unfinishedJobs(yield* leader.node.localState).length
      const last = (yield* leader.node.status).lastIndex
      const applied = yield* Effect.forEach(running, (m) => Effect.map(m.node.status, (s) => s.appliedIndex))
      if (open === 0 && applied.every((a) => a === last)) return
      yield* Effect.sleep("10 millis")
    }
    return yield* Effect.dieMessage("the group did not settle")
  })

export interface Workload {
  /** Each member's data directory, its group stopped. */
  readonly dirs: ReadonlyArray<string>
  /** The member that was stopped mid-way and rejoined by snapshot. */
  readonly rejoined: number
  readonly jobs: number
}

export const raft = { snapshotEntries: 20, logRetainEntries: 2 }

/**
 * A random workload on a 3-member in-process group with frequent snapshots and a short
 * retained log: one follower is stopped mid-way and restarted after the log moved past it, so
 * it rejoins by snapshot. `whileRunning` sees the settled, still-running group's directories.
 */
export const runWorkload = (
  seed: number,
  whileRunning: (dirs: ReadonlyArray<string>) => Effect.Effect<void>,
  journalRetention?: JournalRetention
) =>
  Effect.gen(function* () {
    const dir = tmpDir("cm-audit-")
    const rng = new Prng(seed)
    const g = yield* makeInProcessGroup({ members, dataDir: dir, raft, journalRetention })
    const leader = yield* awaitLeader(g.members)
    const jobIds: Array<string> = []
    yield* runCommands(rng, leader, 40, jobIds)
    const rejoined = g.members.findIndex((m) => m.id !== leader.id)
    yield* g.members[rejoined].stop
    yield* runCommands(rng, leader, 80, jobIds)
    const back = yield* g.restart(rejoined)
    const running = g.members.map((m, i) => (i === rejoined ? back : m))
    // Once it has caught up (by snapshot), it journals the rest like the others.
    yield* settle(leader, running)
    yield* runCommands(rng, leader, 40, jobIds)
    yield* settle(leader, running)
    const dirs = members.map((_, i) => path.join(dir, String(i)))
    yield* whileRunning(dirs)
    const jobs = HashMap.size((yield* leader.node.localState).jobs)
    return { dirs, rejoined, jobs } satisfies Workload
  }).pipe(Effect.scoped)

/**
 * Starts the group of a finished workload again on its data directories (every member
 * restarted), runs `count` more random commands and lets it settle; `whileRunning` as above.
 */
export const resumeWorkload = (
  w: Workload,
  seed: number,
  count: number,
  whileRunning: (dirs: ReadonlyArray<string>) => Effect.Effect<void>,
  journalRetention?: JournalRetention
) =>
  Effect.gen(function* () {
    const rng = new Prng(seed)
    const g = yield* makeInProcessGroup({ members, dataDir: path.dirname(w.dirs[0]), raft, journalRetention })
    const leader = yield* awaitLeader(g.members)
    const jobIds = [...HashMap.keys((yield* leader.node.localState).jobs)]
    yield* runCommands(rng, leader, count, jobIds)
    yield* settle(leader, g.members)
    yield* whileRunning(w.dirs)
    const jobs = HashMap.size((yield* leader.node.localState).jobs)
    return { ...w, jobs } satisfies Workload
  }).pipe(Effect.scoped)

export const journalRows = (dir: string): { base: number; rows: Array<JournalRow> } => {
  const journal = Journal.openReadOnly(path.join(dir, "journal.db"))
  try {
    return { base: journal.journalBase().seq, rows: journal.rows() }
  } finally {
    journal.close()
  }
}

/** A copy of a data directory to tamper with; `edit` runs on its journal.db, writable. */
export const tampered = (dir: string, edit: (db: Database) => void): string => {
  const copy = tmpDir("cm-tampered-")
  fs.cpSync(dir, copy, { recursive: true })
  const db = new Database(path.join(copy, "journal.db"))
  try {
    edit(db)
  } finally {
    db.close()
  }
  return copy
}

const repoRoot = path.resolve(__dirname, "../..")

/** The audit through its real entry (`cluster_mgr audit ...`), as an operator runs it. */
export const auditCli = async (...args: Array<string>): Promise<{ code: number; stdout: string; stderr: string }> => {
  try {
    const { stdout, stderr } = await promisify(execFile)("node", ["bin/cluster_mgr.mjs", "audit", ...args], { cwd: repoRoot })
    return { code: 0, stdout, stderr }
  } catch (e) {
    const failed = e as { code: number; stdout: string; stderr: string }
    return { code: failed.code, stdout: failed.stdout, stderr: failed.stderr }
  }
}

/** `audit verify` as an Effect, run to an Either. */
export const verifyDir = (dir: string) => Effect.runPromise(Effect.either(Audit.verifyDataDir(dir)))

/** The divergence verify reports for `dir`; throws if verify passes or fails otherwise. */
export const divergenceOf = async (dir: string): Promise<Divergence> => {
  const result = await verifyDir(dir)
  if (Either.isRight(result) || !(result.left instanceof Divergence)) throw new Error(`expected a divergence, got ${JSON.stringify(result)}`)
  return result.left
}
