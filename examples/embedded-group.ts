/**
 * A 3-node cluster_mgr group embedded in one Effect program: the members talk over an
 * in-memory network and keep their Raft logs and journals in SQLite files under a temporary
 * directory. The program submits a job to the leader, follows the events a follower applies,
 * awaits the job's end and prints it.
 *
 *   node --import tsx examples/embedded-group.ts
 */
import { Effect, Fiber, Stream } from "effect"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { awaitLeader, ClusterMgr, makeInProcessGroup } from "../src/index.js"

const program = Effect.gen(function* () {
  const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), "cm-example-"))
  const group = yield* makeInProcessGroup({ members: ["node1:1", "node2:1", "node3:1"], dataDir })
  const leader = yield* awaitLeader(group.members)
  yield* Effect.log(`leader: ${leader.id}`)

  // Every event a follower applies, printed as it arrives.
  const follower = group.members.find((m) => m.id !== leader.id)!
  const watching = yield* ClusterMgr.events(follower.node).pipe(
    Stream.runForEach((e) => Effect.log(`${follower.id} applied ${e._tag}`)),
    Effect.fork
  )

  // A leadership transfer to the current leader: the job scheduler completes it at once.
  const jobId = yield* ClusterMgr.submitJob(leader.node, {
    jobType: "raft_mission",
    userName: "example",
    paras: { task_type: "transfer_leader", target_leader: leader.id }
  })
  const job = yield* ClusterMgr.awaitJob(leader.node, jobId).pipe(Effect.timeout("10 seconds"))
  yield* Effect.sleep("100 millis")
  yield* Fiber.interrupt(watching)
  console.log(`job ${job.id} ${job.status}: ${JSON.stringify(job.memo)}`)
  fs.rmSync(dataDir, { recursive: true, force: true })
  return job.status
})

// The group lives in this scope: closing it stops every member.
const status = await Effect.runPromise(Effect.scoped(program))
process.exitCode = status === "done" ? 0 : 1
