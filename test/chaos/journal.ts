import Database from "better-sqlite3"
import { execFile } from "node:child_process"
import * as fs from "node:fs"
import * as path from "node:path"
import { fileURLToPath } from "node:url"
import { binPath } from "../integration/harness.js"

/**
 * A node's data directory, read-only: the journal rows (seq, log index, hash chain, the job and
 * user behind each), the applied index and the journal's base (a node that joined or caught up
 * by snapshot starts its journal there, with the snapshot's state, jobs included).
 */

export interface JournalRow {
  readonly seq: number
  readonly logIndex: number
  readonly logTerm: number
  readonly jobId: string | null
  readonly userName: string | null
  readonly type: string
  readonly prevHash: string
  readonly hash: string
}

export interface BaseJob {
  readonly id: string
  readonly userName: string
  readonly status: string
}

export interface JournalDump {
  readonly node: string
  readonly dir: string
  readonly rows: ReadonlyArray<JournalRow>
  readonly appliedIndex: number
  readonly baseSeq: number
  readonly baseHash: string
  /** Jobs in the base state (empty unless the journal starts from a snapshot). */
  readonly baseJobs: ReadonlyArray<BaseJob>
  /**
   * Jobs accepted before the base of a node that joined by snapshot, as copied into its table
   * `history` (HistoryBackfill): the base image holds only the window of recent jobs.
   */
  readonly historyJobs: ReadonlyArray<BaseJob>
  readonly error?: string
}

export const readJournal = (node: string, dataDir: string): JournalDump => {
  const file = path.join(dataDir, "journal.db")
  try {
    const db = new Database(file, { readonly: true, fileMustExist: true, timeout: 5000 })
    try {
      const rows = db
        .prepare<[], JournalRow>(
          "SELECT seq, log_index AS logIndex, log_term AS logTerm, job_id AS jobId, user_name AS userName, type, prev_hash AS prevHash, hash FROM journal ORDER BY seq"
        )
        .all()
      const sm = db
        .prepare<[], { applied: number; baseSeq: number; baseHash: string; baseState: string | null }>(
          "SELECT applied_index AS applied, base_seq AS baseSeq, base_hash AS baseHash, (SELECT state FROM sm_base WHERE id = 0) AS baseState FROM sm_state WHERE id = 0"
        )
        .get()
      const hasHistory = db.prepare("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'history'").get() !== undefined
      const historyJobs = hasHistory
        ? db
          .prepare<[], BaseJob>("SELECT job_id AS id, coalesce(user_name, '') AS userName, 'accepted' AS status FROM history WHERE type = 'JobAccepted'")
          .all()
        : []
      return {
        node,
        dir: dataDir,
        rows,
        appliedIndex: sm?.applied ?? 0,
        baseSeq: sm?.baseSeq ?? 0,
        baseHash: sm?.baseHash ?? "",
        baseJobs: baseJobsOf(sm?.baseState ?? null),
        historyJobs
      }
    } finally {
      db.close()
    }
  } catch (e) {
    return { node, dir: dataDir, rows: [], appliedIndex: 0, baseSeq: 0, baseHash: "", baseJobs: [], historyJobs: [], error: (e as Error).message }
  }
}

/** The jobs of a snapshot image's state ({state: {jobs: [...]}, head}), read leniently. */
const baseJobsOf = (image: string | null): Array<BaseJob> => {
  if (image === null || image === "") return []
  try {
    const parsed = JSON.parse(image) as { state?: { jobs?: Array<{ id?: unknown; userName?: unknown; status?: unknown }> } }
    return (parsed.state?.jobs ?? []).map((j) => ({ id: String(j.id), userName: String(j.userName ?? ""), status: String(j.status ?? "") }))
  } catch {
    return []
  }
}

/** Every job a journal knows: from its history, its base state and its JobAccepted rows. */
export const jobsOf = (d: JournalDump): Map<string, string> => {
  const jobs = new Map<string, string>()
  for (const j of d.historyJobs) jobs.set(j.id, j.userName)
  for (const j of d.baseJobs) jobs.set(j.id, j.userName)
  for (const r of d.rows) if (r.type === "JobAccepted" && r.jobId !== null) jobs.set(r.jobId, r.userName ?? "")
  return jobs
}

/**
 * Whether the journals agree: every seq that two nodes both hold (at or below the common applied
 * index) has the same hash, and each journal's chain links (prev_hash = previous row's hash).
 */
export const compareJournals = (dumps: ReadonlyArray<JournalDump>): Array<string> => {
  const problems: Array<string> = []
  for (const d of dumps) {
    if (d.error !== undefined) problems.push(`${d.node}: journal unreadable: ${d.error}`)
    let prev = d.baseHash
    let prevSeq = d.baseSeq
    for (const r of d.rows) {
      if (r.seq <= d.baseSeq) continue
      if (r.seq !== prevSeq + 1) {
        problems.push(`${d.node}: journal seq ${prevSeq + 1} missing (next is ${r.seq})`)
        break
      }
      if (r.prevHash !== prev) {
        problems.push(`${d.node}: journal seq ${r.seq} prev_hash does not link to seq ${prevSeq}`)
        break
      }
      prev = r.hash
      prevSeq = r.seq
    }
  }
  const readable = dumps.filter((d) => d.error === undefined)
  if (readable.length < 2) return problems
  const common = Math.min(...readable.map((d) => d.appliedIndex))
  const reference = new Map<number, { node: string; row: JournalRow }>()
  for (const d of readable) {
    // The first row where this node departs from what an earlier node holds (the rest follows from the chain).
    let differing = 0
    for (const r of d.rows) {
      if (r.logIndex > common) continue
      const seen = reference.get(r.seq)
      if (seen === undefined) reference.set(r.seq, { node: d.node, row: r })
      else if (seen.row.hash !== r.hash || seen.row.logIndex !== r.logIndex) {
        if (differing++ === 0) {
          problems.push(
            `journals differ from seq ${r.seq} on (common applied index ${common}): ${seen.node} has index ${seen.row.logIndex} ${seen.row.type} job ${seen.row.jobId} hash ${seen.row.hash.slice(0, 12)}, ${d.node} has index ${r.logIndex} ${r.type} job ${r.jobId} hash ${r.hash.slice(0, 12)}`
          )
        }
      }
    }
    if (differing > 1) problems.push(`${d.node}: ${differing} rows differ in all`)
  }
  // A node's base (snapshot) head must be a row the others hold with the same hash.
  for (const d of readable) {
    if (d.baseSeq === 0) continue
    const seen = reference.get(d.baseSeq)
    if (seen !== undefined && seen.row.hash !== d.baseHash) {
      problems.push(`${d.node}: journal base seq ${d.baseSeq} hash differs from ${seen.node}'s row there`)
    }
  }
  return problems
}

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..")

export interface AuditResult {
  readonly node: string
  /** "ok", "divergence", "skipped" (no audit command), "error" (exit 2/3 or a spawn failure). */
  readonly verdict: "ok" | "divergence" | "skipped" | "error"
  readonly output: string
}

/** `cluster_mgr audit --data DIR verify`, when the audit command exists (src/audit). */
export const auditVerify = (node: string, dataDir: string): Promise<AuditResult> => {
  if (!fs.existsSync(path.join(repoRoot, "src/audit/cli.ts"))) return Promise.resolve({ node, verdict: "skipped", output: "no src/audit" })
  return new Promise((resolve) => {
    execFile(process.execPath, [binPath, "audit", "--data", dataDir, "verify"], { cwd: repoRoot, timeout: 60_000, env: { ...process.env, NODE_OPTIONS: "" } }, (error, stdout, stderr) => {
      const output = `${stdout}${stderr}`.trim()
      const code = error === null ? 0 : typeof (error as { code?: unknown }).code === "number" ? (error as { code: number }).code : -1
      resolve({ node, verdict: code === 0 ? "ok" : code === 1 ? "divergence" : "error", output: output.slice(0, 2000) })
    })
  })
}
