import * as NodeRuntime from "@effect/platform-node/NodeRuntime"
import { Cause, Effect, Either, Exit, Layer, Logger, LogLevel } from "effect"
import * as fs from "node:fs"
import { parseConfig } from "./domain/config.js"
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

const die = (message: string): never => {
  process.stderr.write(`cluster_mgr: ${message}\n`)
  process.exit(2)
}

const fileLogger = (file: string) => {
  const out = fs.createWriteStream(file, { flags: "a" })
  return Logger.replace(Logger.defaultLogger, Logger.logfmtLogger.pipe(Logger.map((line) => out.write(line + "\n"))))
}

const runNode = (cnfPath: string) => {
  let text: string
  try {
    text = fs.readFileSync(cnfPath, "utf8")
  } catch (e) {
    return die(`cannot read ${cnfPath}: ${(e as NodeJS.ErrnoException).code ?? String(e)}`)
  }
  const parsed = parseConfig(text, cnfPath)
  if (Either.isLeft(parsed)) return die(parsed.left.message)
  const config = parsed.right
  const logger = config.log_file ? fileLogger(config.log_file) : Logger.replace(Logger.defaultLogger, Logger.logfmtLogger)
  // A node whose Raft actor died acknowledges nothing more: exit, so a supervisor restarts it.
  const onActorDeath = () => setTimeout(() => process.exit(70), 50)
  const program = Layer.launch(nodeLayer(config, { onActorDeath })).pipe(
    Effect.annotateLogs({ node: raftAddress(config) }),
    Effect.provide(logger),
    Logger.withMinimumLogLevel(LogLevel.Info)
  )
  Effect.runFork(Effect.logInfo(`starting: raft ${raftAddress(config)}, http ${httpAddress(config)}`).pipe(Effect.provide(logger)))
  NodeRuntime.runMain(program, {
    disableErrorReporting: true,
    disablePrettyLogger: true,
    teardown: (exit, onExit) => {
      if (Exit.isFailure(exit) && !Exit.isInterrupted(exit)) {
        const failure = Cause.failureOption(exit.cause)
        if (failure._tag === "Some" && failure.value instanceof StartupError) {
          process.stderr.write(`cluster_mgr: ${failure.value.message}\n`)
          return onExit(2)
        }
        process.stderr.write(`cluster_mgr: crashed: ${Cause.pretty(exit.cause)}\n`)
        return onExit(1)
      }
      onExit(0)
    }
  })
}

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
  runNode(args[0])
} else {
  die(`expected one argument, the path of cluster_mgr.cnf\n${usage}`)
}
