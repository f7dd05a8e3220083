/**
 * Reproduces the stale lease read the chaos suite found (seed 8002 with
 * `--kinds pause,partition,transfer --cnf raft_lease_read=true --clients 8 --duration 60s`):
 *
 *   npx tsx test/chaos/repro-lease-pause.ts              (raft_lease_read = true: stale)
 *   npx tsx test/chaos/repro-lease-pause.ts --no-lease   (the default ReadIndex: not stale)
 *
 * With raft_lease_read = true, a leader that is serving reads is paused (SIGSTOP: a GC pause, a
 * frozen VM) and cut off; the others elect a new leader, which accepts job 1. When the old
 * leader resumes it still counts its lease in Raft ticks, and no tick passed while it was stopped,
 * so it answers get_status from its stale state: "no job with job_id 1", although job 1 was
 * accepted 1.5 s before the read was sent (fixed: ticks now follow the monotonic clock, see
 * RaftNode.catchUpTicks; chaos.test.ts runs this script). Exit code 1 when the stale read happens, 0 when the
 * old leader refuses or forwards the read (the fixed behaviour), 2 if the setup failed.
 */
import {
  type ClusterNode,
  emit,
  getStatus,
  Harness,
  request,
  sleep,
  status,
  transferLeader,
  waitForLeader
} from "../integration/harness.js"

const fault = (n: ClusterNode, body: object) => request("POST", n.http, "/debug/faults", JSON.stringify(body), 2000)

const main = async (): Promise<number> => {
  const h = new Harness()
  process.once("SIGINT", () => void h.cleanup().finally(() => process.exit(130)))
  try {
    const lease = !process.argv.includes("--no-lease")
    const nodes = await h.startCluster(3, { raft_fault_injection: "true", raft_lease_read: String(lease), raft_election_timeout_ms: 400 })
    const { leader: old } = await waitForLeader(nodes)
    const others = nodes.filter((n) => n !== old)

    // Reads through the leader keep its lease fresh; pause it in the middle of them.
    let reading = true
    const reads = (async () => {
      while (reading) await emit(old.http, getStatus("999"), 3000).catch(() => undefined)
    })()
    await sleep(300)
    h.sigstop(old)
    reading = false
    // Cut it off on the other side (it cannot apply faults while stopped).
    for (const o of others) await fault(o, { action: "block", peer: old.raft })

    const next = await waitForLeader(others, 10_000)
    const accepted = await emit(next.leader.http, transferLeader(next.leader.raft))
    const jobId = accepted.json?.job_id as string | undefined
    if (accepted.json?.status !== "accept" || jobId === undefined) {
      console.error(`setup: the new leader did not accept a job: ${accepted.text}`)
      return 2
    }
    console.log(`${next.leader.name} leads term ${next.term} and accepted job ${jobId}; ${old.name} (old leader, term 1) is stopped and cut off`)
    await sleep(1500)

    h.sigcont(old)
    const read = await emit(old.http, getStatus(jobId), 5000)
    const s = await status(old.http)
    console.log(`get_status(${jobId}) at ${old.name} right after SIGCONT: ${read.text}`)
    console.log(`${old.name} then reports role ${s.role}, term ${s.term}`)
    void reads
    if (read.json?.error_code === "70003") {
      console.log(`STALE READ: job ${jobId} was accepted before the read was sent, yet the old leader says it does not exist`)
      return 1
    }
    console.log("no stale read")
    return 0
  } finally {
    await h.cleanup()
  }
}

main().then(
  (code) => process.exit(code),
  (e) => {
    console.error(e)
    process.exit(2)
  }
)
