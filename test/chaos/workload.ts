import { sleep } from "../integration/harness.js"
import type { Prng } from "../sim/prng.js"
import type { ChaosCluster } from "./cluster.js"
import type { Recorder } from "./history.js"

/**
 * Concurrent clients: each submits jobs and reads job statuses through a random node (every node,
 * members and spare, whatever its state: a request to a dead node is refused, to a paused one
 * times out), with a timeout per request. The cheap write is `transfer_leader` to the node the
 * monitor last saw leading: done at once when it still leads, a real transfer when it does not.
 */

export interface WorkloadOptions {
  readonly clients: number
  readonly timeoutMs: number
  /** Probability that an operation is a submit (the rest are reads). */
  readonly submitRatio: number
  readonly thinkMs: number
}

export class Workload {
  private stopped = false
  private running: Array<Promise<void>> = []
  /** Ids of accepted jobs, in acceptance order. */
  readonly acked: Array<string> = []
  maxSeen = 0

  constructor(
    readonly cluster: ChaosCluster,
    readonly recorder: Recorder,
    readonly rng: Prng,
    readonly options: WorkloadOptions
  ) {}

  start(): void {
    for (let i = 0; i < this.options.clients; i++) {
      this.running.push(this.client(this.rng.derive(`client-${i}`)))
    }
  }

  async stop(): Promise<void> {
    this.stopped = true
    await Promise.all(this.running)
  }

  private pickReadId(rng: Prng): string {
    const r = rng.float()
    if (this.acked.length > 0 && r < 0.45) {
      // A recent job: its status is still moving.
      return this.acked[Math.max(0, this.acked.length - 1 - rng.int(Math.min(8, this.acked.length)))]
    }
    if (this.acked.length > 0 && r < 0.7) return rng.pick(this.acked)
    // Just past the newest id seen: a job that may exist before (or without) its submit's reply.
    return String(this.maxSeen + 1 + rng.int(3))
  }

  private async client(rng: Prng): Promise<void> {
    let process = this.recorder.newProcess()
    let refused = false
    while (!this.stopped) {
      const target = rng.pick(this.cluster.all)
      const node = { name: target.node.name, http: target.node.http }
      if (rng.chance(this.options.submitRatio)) {
        const leader = this.cluster.currentLeader() ?? rng.pick(this.cluster.members)
        const op = await this.recorder.submit(process, "client", node, "transfer_leader", { target_leader: leader.node.raft }, this.options.timeoutMs)
        if (op.outcome === "ok" && op.jobId !== undefined) {
          this.acked.push(op.jobId)
          this.maxSeen = Math.max(this.maxSeen, Number(op.jobId))
        }
        if (op.outcome === "info") process = this.recorder.newProcess()
        refused = op.detail.startsWith("ECONNREFUSED")
      } else {
        const op = await this.recorder.read(process, "client", node, this.pickReadId(rng), this.options.timeoutMs)
        if (op.found === true) this.maxSeen = Math.max(this.maxSeen, Number(op.input.jobId))
        if (!Number.isFinite(op.ret)) process = this.recorder.newProcess()
        refused = op.detail.startsWith("ECONNREFUSED")
      }
      // A dead node refuses at once: back off a little instead of spinning on it.
      await sleep(rng.int(this.options.thinkMs + 1) + (refused ? 100 : 0))
    }
  }
}
