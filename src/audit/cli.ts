import { Args, Command, HelpDoc, Options, ValidationError } from "@effect/cli"
import * as NodeContext from "@effect/platform-node/NodeContext"
import { Cause, Effect, Exit, Option } from "effect"
import * as fs from "node:fs"
import type { EventTag } from "../domain/events.js"
import { toJson } from "../domain/state.js"
import type { Journal, JournalFilter } from "../storage/Journal.js"
import * as Audit from "./Audit.js"
import { AuditError, Divergence } from "./errors.js"
import { rowJson, tableHeader, tableRow } from "./format.js"
import { baseReason, type JobHistory, pages } from "./replay.js"
import { describeDivergence, describeReport } from "./verify.js"

/**
 * `cluster_mgr audit --data DIR <events|verify|state|job>`: reads a node's journal read-only,
 * on a stopped node or beside a running one. Exit codes: 0 ok, 1 verify found a divergence,
 * 2 a bad argument or an unusable data directory, 3 a bug.
 */

// The compiler keeps this list complete: a new event type must be added here to be filterable.
const eventTypes: Record<EventTag, null> = {
  JobAccepted: null,
  JobStarted: null,
  JobProgressed: null,
  JobDone: null,
  JobFailed: null,
  MembershipChanged: null,
  LeaderElected: null,
  MachineAdded: null,
  MachineUpdated: null,
  MachineRemoved: null,
  MachineStatsChanged: null,
  AgentReported: null
}

/** An instant as ISO 8601 text or milliseconds since the epoch, as the journal's `at` column holds. */
const parseInstant = (text: string): number | undefined => {
  if (/^\d+$/.test(text)) return Number(text)
  const ms = Date.parse(text)
  return Number.isNaN(ms) ? undefined : ms
}

const instant = (name: string) =>
  Options.text(name).pipe(
    Options.withPseudoName("TIME"),
    Options.withDescription("ISO 8601 time or milliseconds since the epoch"),
    Options.mapEffect((text) => {
      const ms = parseInstant(text)
      return ms === undefined
        ? Effect.fail(ValidationError.invalidValue(HelpDoc.p(`--${name}: expected an ISO 8601 time or milliseconds since the epoch, got '${text}'`)))
        : Effect.succeed(ms)
    }),
    Options.optional
  )

const positive = (name: string, pseudoName: string) =>
  Options.integer(name).pipe(
    Options.withPseudoName(pseudoName),
    Options.mapEffect((n) => (n > 0 ? Effect.succeed(n) : Effect.fail(ValidationError.invalidValue(HelpDoc.p(`--${name}: must be a positive integer, got ${n}`))))),
    Options.optional
  )

const json = Options.boolean("json").pipe(Options.withDescription("one JSON object per line, for tools"))

const audit = Command.make(
  "audit",
  { data: Options.text("data").pipe(Options.withPseudoName("DIR"), Options.withDescription("the node's data directory (its cluster_mgr_tmp_data_path)")) },
  () => Effect.fail(new AuditError({ message: "expected a command: events, verify, state or job (--help for more)" }))
).pipe(Command.withDescription("Read a node's event journal: list, verify, replay."))

/** The data directory given to `audit`. */
const dataDir = Effect.map(audit, ({ data }) => data)

const print = (text: string) => Effect.sync(() => process.stdout.write(text + "\n"))

const events = Command.make(
  "events",
  {
    job: Options.text("job").pipe(Options.withPseudoName("ID"), Options.withDescription("only this job's events"), Options.optional),
    type: Options.choice("type", Object.keys(eventTypes)).pipe(Options.withPseudoName("TYPE"), Options.withDescription("only events of this type"), Options.optional),
    since: instant("since"),
    until: instant("until"),
    limit: positive("limit", "N"),
    json
  },
  (o) =>
    Effect.flatMap(dataDir, (dir) =>
      Audit.withJournal(dir, (journal) => {
        const filter: JournalFilter = {
        jobId: Option.getOrUndefined(o.job),
        type: Option.getOrUndefined(o.type),
        sinceAt: Option.getOrUndefined(o.since),
        untilAt: Option.getOrUndefined(o.until),
        limit: Option.getOrUndefined(o.limit)
      }
        const note = baseNote(journal, filter)
        if (note !== undefined) process.stderr.write(note + "\n")
        if (!o.json) process.stdout.write(tableHeader + "\n")
        for (const row of pages(journal, filter)) process.stdout.write((o.json ? JSON.stringify(rowJson(row)) : tableRow(row)) + "\n")
      })
    )
).pipe(Command.withDescription("List events (--since inclusive, --until exclusive)."))

/**
 * On stderr (stdout stays rows only), when events the filter asks for may precede the journal:
 * pruned by retention (unless --since is after the last pruned event), or before the snapshot
 * the node joined by.
 */
const baseNote = (journal: Journal, filter: JournalFilter): string | undefined => {
  const reason = baseReason(journal)
  const lastPrunedAt = journal.pruneMark()?.eventAt
  if (reason === "") return undefined
  if (lastPrunedAt !== undefined && filter.sinceAt !== undefined && filter.sinceAt > lastPrunedAt) return undefined
  return `note: ${reason}; they are not listed`
}

const verify = Command.make("verify", {}, () =>
  dataDir.pipe(
    Effect.flatMap(Audit.verifyDataDir),
    Effect.flatMap((report) => print(describeReport(report)))
  )
).pipe(Command.withDescription("Check the hash chain and that folding the events reproduces the Raft snapshot."))

const state = Command.make(
  "state",
  { at: positive("at", "SEQ").pipe(Options.withDescription("the event's sequence number (default: the last)")) },
  (o) =>
    dataDir.pipe(
      Effect.flatMap((dir) => Audit.stateAt(dir, Option.getOrUndefined(o.at))),
      Effect.flatMap((s) => print(JSON.stringify(toJson(s), null, 2)))
    )
).pipe(Command.withDescription("The state as of an event, as JSON."))

const jobText = (id: string, h: JobHistory): string => {
  const partial = h.rows[0]?.type !== "JobAccepted"
    ? [`(its earlier events are not in this journal: ${h.baseReason}; the state below includes them)`]
    : []
  return [tableHeader, ...h.rows.map(tableRow), ...partial, "", `job ${id}: ${h.job.status}`, JSON.stringify(h.job, null, 2)].join("\n")
}

const job = Command.make("job", { id: Args.text({ name: "ID" }), json }, (o) =>
  dataDir.pipe(
    Effect.flatMap((dir) => Audit.jobHistory(dir, o.id)),
    Effect.flatMap((h) => print(o.json ? JSON.stringify({ job: h.job, events: h.rows.map(rowJson) }) : jobText(o.id, h)))
  )
).pipe(Command.withDescription("One job's full history and its final state."))

const command = audit.pipe(Command.withSubcommands([events, verify, state, job]))

const version = (): string => {
  try {
    return JSON.parse(fs.readFileSync(new URL("../../package.json", import.meta.url), "utf8")).version
  } catch {
    return "unknown"
  }
}

const exitCodeOf = (exit: Exit.Exit<void, unknown>): number => {
  if (Exit.isSuccess(exit)) return 0
  const failure = Cause.failureOption(exit.cause)
  if (Option.isSome(failure)) {
    const e = failure.value
    if (e instanceof Divergence) return process.stdout.write(describeDivergence(e) + "\n"), 1
    if (e instanceof AuditError) return process.stderr.write(`cluster_mgr audit: ${e.message}\n`), 2
    // @effect/cli has already printed what was wrong with the arguments.
    if (ValidationError.isValidationError(e)) return 2
  }
  process.stderr.write(`cluster_mgr audit: crashed: ${Cause.pretty(exit.cause)}\n`)
  return 3
}

/**
 * Runs the audit command line (the arguments after `audit`). The exit code is set, not forced,
 * so output piped to another program is flushed before the process ends.
 */
export const runAudit = (args: ReadonlyArray<string>): Promise<number> => {
  // `audit events | head`: the reader has all it wants; stop quietly, as Unix tools do.
  process.stdout.on("error", (e: NodeJS.ErrnoException) => {
    if (e.code !== "EPIPE") throw e
    process.exit(0)
  })
  return Effect.runPromiseExit(
    Command.run(command, { name: "cluster_mgr audit", version: version() })(["node", "cluster_mgr", ...args]).pipe(
      Effect.provide(NodeContext.layer)
    )
  ).then((exit) => {
    const code = exitCodeOf(exit)
    process.exitCode = code
    return code
  })
}
