import { describe, expect, it } from "@effect/vitest"
import { HashMap, Option } from "effect"
import type { Event } from "../../src/domain/events.js"
import { Prng } from "../../src/domain/raft/prng.js"
import { type ClusterState, emptyState, evolve, fromJson, isFinished, type Job, recentJobsKept, toJson } from "../../src/domain/state.js"
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
