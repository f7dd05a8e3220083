import { Metric, MetricBoundaries, MetricLabel } from "effect"

/** Every metric the node exports, in one place; /metrics renders them for Prometheus. */
export const metrics = {
  term: Metric.gauge("cluster_mgr_raft_term", { description: "Current Raft term" }),
  isLeader: Metric.gauge("cluster_mgr_raft_is_leader", { description: "1 when this node leads" }),
  historyMissing: Metric.gauge("cluster_mgr_journal_history_missing", {
    description: "On a node that joined by snapshot: the highest seq of the events before its base still to be copied (0: none)"
  }),
  appliedIndex: Metric.gauge("cluster_mgr_raft_applied_index", { description: "Last applied log index" }),
  commitIndex: Metric.gauge("cluster_mgr_raft_commit_index", { description: "Last committed log index" }),
  proposals: Metric.counter("cluster_mgr_raft_proposals_total", { description: "Commands proposed by this node" }),
  persistEntries: Metric.histogram(
    "cluster_mgr_raft_persist_entries",
    MetricBoundaries.exponential({ start: 1, factor: 2, count: 12 }),
    "Log entries per raft.db write (one transaction, one fsync): how well proposals and appends share a write"
  ),
  raftWrites: Metric.counter("cluster_mgr_raft_writes_total", {
    description: "raft.db writes by the thread that ran them: main (inline, the event loop waits) or writer (the writer thread)"
  }),
  elections: Metric.counter("cluster_mgr_raft_elections_won_total", { description: "Times this node became leader" }),
  jobs: Metric.counter("cluster_mgr_jobs_total", { description: "Jobs by final or accepted status" }),
  requests: Metric.counter("cluster_mgr_http_requests_total", { description: "Emit requests by job_type and outcome" }),
  pingsMissed: Metric.counter("cluster_mgr_machine_pings_missed_total", { description: "node_mgr pings that got no answer" }),
  agentRequests: Metric.counter("cluster_mgr_node_mgr_requests_total", {
    description: "node_mgr job requests of jobs, by job_type and outcome"
  }),
  requestLatency: Metric.histogram(
    "cluster_mgr_http_request_seconds",
    MetricBoundaries.exponential({ start: 0.0005, factor: 2, count: 16 }),
    "Emit request latency"
  )
}

/**
 * Updates `metric` under fixed labels, for hot paths. `Metric.tagged` builds a new key and looks
 * it up in the registry on every update (about 1.5 us, and garbage: 2% of a leader's CPU when
 * every Emit request counted so), while an update with the same label array finds its key in
 * the metric's own cache (about 10 ns). Same series either way.
 */
export const labelled = <Type, In, Out>(
  metric: Metric.Metric<Type, In, Out>,
  labels: Readonly<Record<string, string>>
): ((input: In) => void) => {
  const tags = Object.entries(labels).map(([key, value]) => MetricLabel.make(key, value))
  return (input) => metric.unsafeUpdate(input, tags)
}
