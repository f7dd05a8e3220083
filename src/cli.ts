import { die as dieAs, runDaemon } from "./daemon.js"
import { parseConfig } from "./domain/config.js"
import { tuneHeap } from "./heapTuning.js"
import { runLocalCluster } from "./local.js"
import { httpAddress, nodeLayer, raftAddress, StartupError } from "./node.js"

/**
 * `cluster_mgr <cluster_mgr.cnf>` runs one node in the foreground (Klustron's one-argument
 * form); `cluster_mgr local` runs a 3-node cluster on loopback for trying it out.
 * Exit codes: 0 stopped, 2 bad configuration or start-up failure, 1 crash.
 */
const usage = `usage:
  cluster_mgr <path/to/cluster_mgr.cnf>   run one node
  cluster_mgr local [--nodes N] [--dir D]   run an N-node cluster on 127.0.0.1 (default 3, ./data)
  cluster_mgr audit --data DIR <events|verify|state|job> ...   read a node's event journal (--help)`

const die = (message: string): never => dieAs("cluster_mgr", message)

const runNode = (cnfPath: string, v8Flags: ReadonlyArray<string>) =>
  runDaemon(
    {
      name: "cluster_mgr",
      parse: parseConfig,
      logFile: (config) => config.log_file,
      // A node whose Raft actor died acknowledges nothing more: exit, so a supervisor restarts it.
      layer: (config) => nodeLayer(config, { onActorDeath: () => setTimeout(() => process.exit(70), 50) }),
      isStartupError: (e): e is StartupError => e instanceof StartupError,
      annotations: (config) => ({ node: raftAddress(config) }),
      startMessage: (config) =>
        `starting: raft ${raftAddress(config)}, http ${httpAddress(config)}` +
        (v8Flags.length > 0 ? `, V8 flags set at run time: ${v8Flags.join(" ")}` : "")
    },
    cnfPath
  )

const args = process.argv.slice(2)
if (args.length === 0 || args[0] === "--help" || args[0] === "-h") {
  process.stdout.write(usage + "\n")
  if (args.length === 0) process.exit(2)
} else if (args[0] === "audit") {
  // Loaded only for this subcommand: @effect/cli and the audit code stay out of a node process.
  void import("./audit/cli.js").then(({ runAudit }) => runAudit(args.slice(1)))
} else if (args[0] === "local") {
  runLocalCluster(args.slice(1))
} else if (args.length === 1) {
  runNode(args[0], tuneHeap())
} else {
  die(`expected one argument, the path of cluster_mgr.cnf\n${usage}`)
}
