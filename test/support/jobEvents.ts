import { JobAccepted, JobDone, JobFailed, JobStarted } from "../../src/domain/events.js"

/** Job events for job `id`, at time `id`: the job log of tests that fold by hand. */
export const accepted = (id: number) => new JobAccepted({ v: 1, jobId: String(id), jobType: "raft_mission", userName: "u", paras: { n: id }, at: id })
export const started = (id: number) => new JobStarted({ v: 1, jobId: String(id), memo: { step: 1 }, at: id })
export const done = (id: number) => new JobDone({ v: 1, jobId: String(id), memo: { ok: id }, at: id })
export const failed = (id: number) => new JobFailed({ v: 1, jobId: String(id), memo: null, errorCode: "70007", errorInfo: "no", at: id })
