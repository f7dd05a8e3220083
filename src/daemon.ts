import * as NodeRuntime from "@effect/platform-node/NodeRuntime"
import { Cause, Effect, Either, Exit, Layer, Logger, LogLevel } from "effect"
import * as fs from "node:fs"

/**
 * How both bins (`cluster_mgr <cnf>` and `node_mgr <cnf>`) run in the foreground: read and parse
 * the cnf, log logfmt lines to `log_file` or standard output, launch the Layer, and exit with
 * 0 when stopped (SIGTERM/SIGINT), 2 for bad configuration or a start-up failure (one line on
 * standard error), 1 for a crash.
 */
export interface Daemon<C> {
  /** The command's name, prefixing every message on standard error. */
  readonly name: string
  readonly parse: (text: string, cnfPath: string) => Either.Either<C, { readonly message: string }>
  readonly logFile: (config: C) => string | undefined
  readonly layer: (config: C) => Layer.Layer<never, unknown>
  /** A failure of the Layer that is a start-up error (exit 2 with its message), not a crash. */
  readonly isStartupError: (error: unknown) => error is { readonly message: string }
  /** Annotations on every log line (the node's or agent's address). */
  readonly annotations: (config: C) => Record<string, string>
  /** Logged once before the Layer starts. */
  readonly startMessage?: (config: C) => string
}

export const die = (name: string, message: string): never => {
  process.stderr.write(`${name}: ${message}\n`)
  process.exit(2)
}

/** logfmt lines appended to `file`, or written to standard output. */
const loggerTo = (file: string | undefined) => {
  const out = file === undefined ? process.stdout : fs.createWriteStream(file, { flags: "a" })
  return Logger.replace(Logger.defaultLogger, Logger.logfmtLogger.pipe(Logger.map((line) => out.write(line + "\n"))))
}

export const runDaemon = <C>(daemon: Daemon<C>, cnfPath: string): void => {
  let text: string
  try {
    text = fs.readFileSync(cnfPath, "utf8")
  } catch (e) {
    return die(daemon.name, `cannot read ${cnfPath}: ${(e as NodeJS.ErrnoException).code ?? String(e)}`)
  }
  const parsed = daemon.parse(text, cnfPath)
  if (Either.isLeft(parsed)) return die(daemon.name, parsed.left.message)
  const config = parsed.right
  const logFile = daemon.logFile(config)
  if (logFile !== undefined) {
    try {
      fs.closeSync(fs.openSync(logFile, "a"))
    } catch (e) {
      return die(daemon.name, `log_file ${logFile}: cannot be written (${(e as NodeJS.ErrnoException).code ?? String(e)})`)
    }
  }
  const logger = loggerTo(logFile)
  const annotations = daemon.annotations(config)
  const start = daemon.startMessage?.(config)
  const program = (start === undefined ? Effect.void : Effect.logInfo(start)).pipe(
    Effect.zipRight(Layer.launch(daemon.layer(config))),
    Effect.annotateLogs(annotations),
    Effect.provide(logger),
    Logger.withMinimumLogLevel(LogLevel.Info)
  )
  NodeRuntime.runMain(program, {
    disableErrorReporting: true,
    disablePrettyLogger: true,
    teardown: (exit, onExit) => {
      if (Exit.isFailure(exit) && !Exit.isInterrupted(exit)) {
        const failure = Cause.failureOption(exit.cause)
        if (failure._tag === "Some" && daemon.isStartupError(failure.value)) {
          process.stderr.write(`${daemon.name}: ${failure.value.message}\n`)
          return onExit(2)
        }
        process.stderr.write(`${daemon.name}: crashed: ${Cause.pretty(exit.cause)}\n`)
        return onExit(1)
      }
      onExit(0)
    }
  })
}
