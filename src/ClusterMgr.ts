import { Clock, Data, Effect, Mailbox, Option, Stream } from "effect"
import type { Layer } from "effect"
import type { NodeHttpAddress } from "./actors/JobScheduler.js"
import { OperationFailed, type RaftError, type RaftNode, type RaftNodeApi } from "./actors/RaftNode.js"
import type { Config } from "./domain/config.js"
import type { Event } from "./domain/events.js"
import type { Job } from "./domain/state.js"
import { nodeLayer, type NodeLayerOptions, type StartupError } from "./node.js"

/**
 * What an Effect app needs to run a cluster_mgr node and use it: the node as a Layer built
 * from a Config value, and helpers over its RaftNode service (`yield* RaftNode`, or an
 * in-process group member's `node`).
 */

/**
 * One cluster_mgr node: Raft over TCP at `local_ip:brpc_raft_port`, the job scheduler, and
 * (unless `serveHttp` is false) the HTTP API at `local_ip:brpc_http_port`. Its data lives in
 * `cluster_mgr_tmp_data_path`. Fails with StartupError naming the key, port or path at fault.
 */
export const layer = (config: Config, options?: NodeLayerOptions): Layer.Layer<RaftNode | NodeHttpAddress, StartupError> =>
  nodeLayer(config, options)

/** awaitJob was asked for a job this node has not applied. */
export class NoSuchJob extends Data.TaggedError("NoSuchJob")<{ readonly jobId: string }> {}

export interface JobRequest {
  readonly jobType: string
  readonly userName: string
  readonly paras: unknown
}

/** Submits a job (on the leader); succeeds with its id once it is committed and applied here. */
export const submitJob = (node: RaftNodeApi, job: JobRequest): Effect.Effect<string, RaftError> =>
  Effect.gen(function* () {
    const at = yield* Clock.currentTimeMillis
    const applied = yield* node.submit({ _tag: "SubmitJob", ...job, at })
    const accepted = applied.events.find((e) => e._tag === "JobAccepted")
    if (accepted === undefined) return yield* new OperationFailed({ reason: "the job was committed but its acceptance was not seen here" })
    return accepted.jobId
  })

const ended = (job: Job): boolean => job.status === "done" || job.status === "failed"

/** How often awaitJob looks again without an applied entry: an installed snapshot publishes none. */
const recheckInterval = "200 millis"

/**
 * Waits until the job is done or failed on this node and returns it. The job must already be
 * applied here, as it is on the node whose submit returned its id; otherwise NoSuchJob.
 */
export const awaitJob = (node: RaftNodeApi, jobId: string): Effect.Effect<Job, NoSuchJob> =>
  Effect.scoped(
    Effect.gen(function* () {
      // Subscribed before the first look, so an end applied in between is still seen.
      const applied = yield* node.applied
      const look = Effect.flatMap(node.localState, (s) => node.job(s, jobId))
      let job = yield* look
      if (Option.isNone(job)) return yield* new NoSuchJob({ jobId })
      while (!ended(job.value)) {
        yield* applied.takeAll.pipe(Effect.timeoutOption(recheckInterval))
        job = yield* look
        if (Option.isNone(job)) return yield* new NoSuchJob({ jobId })
      }
      return job.value
    })
  )

/** Every event this node applies from the moment the stream is run, in order. */
export const events = (node: RaftNodeApi): Stream.Stream<Event> =>
  Stream.unwrapScoped(Effect.map(node.applied, Mailbox.toStream)).pipe(Stream.mapConcat((entry) => entry.events))
