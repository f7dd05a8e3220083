import * as NodeRuntime from "@effect/platform-node/NodeRuntime"
import { Cause, Effect, Either, Exit, Layer, Logger, LogLevel } from "effect"
import * as fs from "node:fs"
import { agentLayer } from "./Agent.js"
import { agentAddress, parseAgentConfig } from "./config.js"
import { AgentStartupError } from "./errors.js"

/**
 * `node_mgr <node_mgr.cnf>`: the per-machine agent, in the foreground. Exit codes: 0 stopped by
 * SIGTERM/SIGINT (instances keep running), 2 bad configuration or start-up failure, 1 crash.
 */
const usage = "usage: node_mgr <path/to/node_mgr.cnf>"

const die = (message: string): never => {
  process.stderr.write(`node_mgr: ${message}\n`)
  process.exit(2)
}

const versionOf = (): string => {
  try {
    const pkg = JSON.parse(fs.readFileSync(new URL("../../package.json", import.meta.url), "utf8")) as { version?: unknown }
    return typeof pkg.version === "string" ? pkg.version : "unknown"
  } catch {
    return "unknown"
  }
}

/** logfmt lines to the log file, or to standard output. */
const loggerTo = (file: string | undefined) => {
  const out = file === undefined ? process.stdout : fs.createWriteStream(file, { flags: "a" })
  return Logger.replace(Logger.defaultLogger, Logger.logfmtLogger.pipe(Logger.map((line) => out.write(line + "\n"))))
}

const checkLogFile = (file: string): void => {
  try {
    fs.closeSync(fs.openSync(file, "a"))
  } catch (e) {
    die(`log_file ${file}: cannot be written (${(e as NodeJS.ErrnoException).code ?? String(e)})`)
  }
}

const runAgent = (cnfPath: string) => {
  let text: string
  try {
    text = fs.readFileSync(cnfPath, "utf8")
  } catch (e) {
    return die(`cannot read ${cnfPath}: ${(e as NodeJS.ErrnoException).code ?? String(e)}`)
  }
  const parsed = parseAgentConfig(text, cnfPath, process.cwd())
  if (Either.isLeft(parsed)) return die(parsed.left.message)
  const config = parsed.right
  if (config.log_file !== undefined) checkLogFile(config.log_file)
  const logger = loggerTo(config.log_file)
  const program = Layer.launch(agentLayer(config, versionOf())).pipe(
    Effect.annotateLogs({ agent: agentAddress(config) }),
    Effect.provide(logger),
    Logger.withMinimumLogLevel(LogLevel.Info)
  )
  NodeRuntime.runMain(program, {
    disableErrorReporting: true,
    disablePrettyLogger: true,
    teardown: (exit, onExit) => {
      if (Exit.isFailure(exit) && !Exit.isInterrupted(exit)) {
        const failure = Cause.failureOption(exit.cause)
        if (failure._tag === "Some" && failure.value instanceof AgentStartupError) {
          process.stderr.write(`node_mgr: ${failure.value.message}\n`)
          return onExit(2)
        }
        process.stderr.write(`node_mgr: crashed: ${Cause.pretty(exit.cause)}\n`)
        return onExit(1)
      }
      onExit(0)
    }
  })
}

const args = process.argv.slice(2)
if (args.length === 1 && args[0] !== "--help" && args[0] !== "-h") {
  runAgent(args[0])
} else {
  process.stdout.write(usage + "\n")
  process.exit(args.length === 1 ? 0 : 2)
}
