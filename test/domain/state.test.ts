import { describe, expect, it } from "@effect/vitest"
import { HashMap, Option } from "effect"
import type { Event } from "../../src/domain/events.js"
import { Prng } from "../../src/domain/raft/prng.js"
import { MachineAdded, MachineRemoved, MachineStatsChanged } from "../../src/domain/events.js"
import { type ClusterState, emptyState, evolve, fold, fromJson, isFinished, type Job, recentJobsKept, toJson } from "../../src/domain/state.js"
import { accepted, done, failed, started } from "../support/jobEvents.js"

/** The job log as it was before the window: every job ever accepted, none dropped. */
const foldEverything = (events: ReadonlyArray<Event & { jobId: string }>): Map<string, Job> => {
  const all = new Map<string, Job>()
  for (const e of events) {
    const s = evolve({ ...emptyState, nextJobId: 1, jobs: all.has(e.jobId) ? HashMap.make([e.jobId, all.get(e.jobId)!]) : HashMap.empty() }, e)
    const job = HashMap.get(s.jobs, e.jobId)
    if (Option.isSome(job)) all.set(e.jobId, job.value)
  }
  return all
}

const expectWindow = (state: ClusterState, all: Map<string, Job>): void => {
  const kept = [...all.values()].filter((j) => !isFinished(j) || Number(j.id) >= state.nextJobId - recentJobsKept)
  expect(HashMap.size(state.jobs)).toBe(kept.length)
  for (const j of kept) expect(Option.getOrUndefined(HashMap.get(state.jobs, j.id))).toEqual(j)
}

describe("the state's window of recent jobs", () => {
  it("holds every open job and the newest recentJobsKept ids, after every event of a random job log", () => {
    for (const seed of [1, 2, 3]) {
      const rng = new Prng(seed)
      const events: Array<Event & { jobId: string }> = []
      const open: Array<number> = []
      let next = 1
      let state = emptyState
      for (let step = 0; step < 3 * recentJobsKept; step++) {
        // Mostly new jobs; some end at once, some much later (they leave the window while open).
        let e: Event & { jobId: string }
        if (open.length === 0 || rng.float() < 0.6) {
          e = accepted(next)
          open.push(next++)
        } else {
          const id = open.splice(Math.floor(rng.float() * open.length), 1)[0]
          const r = rng.float()
          e = r < 0.1 ? started(id) : r < 0.7 ? done(id) : failed(id)
          if (e._tag === "JobStarted") open.push(id)
        }
        events.push(e)
        state = evolve(state, e)
        if (step % 97 === 0) expectWindow(state, foldEverything(events))
      }
      const all = foldEverything(events)
      expectWindow(state, all)
      // Open jobs far outside the window are still held: a new leader resumes them.
      const oldOpen = [...all.values()].filter((j) => !isFinished(j) && Number(j.id) < state.nextJobId - recentJobsKept)
      expect(oldOpen.length).toBeGreaterThan(0)
      expect(HashMap.size(state.jobs)).toBeLessThan(all.size)
    }
  })

  it("an image that holds every job (written before the window) loads as the window", () => {
    let state = emptyState
    const events: Array<Event & { jobId: string }> = []
    for (let id = 1; id <= recentJobsKept + 50; id++) events.push(accepted(id), done(id))
    events.push(accepted(recentJobsKept + 51))
    for (const e of events) state = evolve(state, e)
    const all = foldEverything(events)
    const old = toJson(state)
    const everything = { ...old, jobs: [...all.values()].sort((a, b) => Number(a.id) - Number(b.id)) }
    expect(everything.jobs.length).toBe(recentJobsKept + 51)
    expect(toJson(fromJson(everything))).toEqual(old)
  })
})

describe("fold", () => {
  const machine = (n: number) => ({
    hostaddr: `10.0.0.${n}`,
    machineType: "storage" as const,
    rackId: null,
    portRange: "57000-58000",
    datadir: null,
    logdir: null,
    walLogDir: null,
    compDatadir: null,
    totalMem: 1024,
    totalCpuCores: 2,
    nodeMgrPort: 58002
  })
  /** A random log: jobs accepted, started and ended (some long after), machines added, changed, removed. */
  const randomLog = (rng: Prng, length: number, firstJob: number): Array<Event> => {
    const events: Array<Event> = []
    const open: Array<number> = []
    let next = firstJob
    for (let i = 0; i < length; i++) {
      const r = rng.float()
      const m = 1 + Math.floor(rng.float() * 4)
      if (r < 0.05) events.push(new MachineAdded({ v: 1, machine: machine(m), jobId: "0", at: i }))
      else if (r < 0.08) events.push(new MachineStatsChanged({ v: 1, hostaddr: machine(m).hostaddr, nodeStats: "dead", detail: "", at: i }))
      else if (r < 0.1) events.push(new MachineRemoved({ v: 1, hostaddr: machine(m).hostaddr, jobId: "0", at: i }))
      else if (open.length === 0 || r < 0.6) {
        events.push(accepted(next))
        open.push(next++)
      } else {
        const id = open.splice(Math.floor(rng.float() * open.length), 1)[0]
        const e = r < 0.65 ? started(id) : r < 0.9 ? done(id) : failed(id)
        if (e._tag === "JobStarted") open.push(id)
        events.push(e)
      }
    }
    return events
  }
  const byEvolve = (events: ReadonlyArray<Event>, from: ClusterState) => events.reduce(evolve, from)

  it("gives what evolve gives event by event, and leaves the state it starts from as it was", () => {
    for (const seed of [11, 12, 13]) {
      const rng = new Prng(seed)
      const first = randomLog(rng, 2 * recentJobsKept, 1)
      const from = byEvolve(first, emptyState)
      const fromBefore = toJson(from)
      const rest = randomLog(rng, 3 * recentJobsKept, from.nextJobId)
      const folded = fold(rest, from)
      const expected = byEvolve(rest, from)
      expect(toJson(folded)).toStrictEqual(toJson(expected))
      expect(HashMap.size(folded.jobs)).toBe(HashMap.size(expected.jobs))
      expect(toJson(from)).toStrictEqual(fromBefore)
      // Folded again from the same state, and on from the result: still each as evolve gives it.
      expect(toJson(fold(rest, from))).toStrictEqual(toJson(expected))
      const more = randomLog(rng, 500, folded.nextJobId)
      expect(toJson(fold(more, folded))).toStrictEqual(toJson(byEvolve(more, expected)))
      expect(toJson(folded)).toStrictEqual(toJson(expected))
      // The result is an ordinary map again: a later set copies instead of changing it.
      const after = evolve(folded, accepted(folded.nextJobId))
      expect(HashMap.size(after.jobs)).toBeGreaterThanOrEqual(HashMap.size(folded.jobs))
      expect(toJson(folded)).toStrictEqual(toJson(expected))
    }
  })
})

