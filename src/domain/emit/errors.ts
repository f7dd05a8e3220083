import { Data, Option, SchemaAST } from "effect"
import type { ParseResult } from "effect"

/**
 * Every error code an Emit reply can carry. Klustron uses numeric strings with 70001 as its
 * generic failure; it stays the code of every validation error, so Klustron clients that only
 * know 70001 keep working. The other codes are ours. Docs are generated and checked from this.
 */
export const errorTable = [
  {
    code: "70001",
    name: "BadRequest",
    meaning: "The request is malformed or fails validation (Klustron's generic failure)."
  },
  {
    code: "70002",
    name: "Unavailable",
    meaning: "No leader is known or reachable, or the leader cannot answer yet (it joined by snapshot and is still copying old jobs' events), so the request cannot be served now; retry."
  },
  {
    code: "70003",
    name: "NotFound",
    meaning: "No job has the given job_id, or no machine the given hostaddr; or the job is finished and this leader's journal retention dropped its events."
  },
  { code: "70004", name: "Timeout", meaning: "The operation did not finish within its time limit." },
  {
    code: "70005",
    name: "Internal",
    meaning: "An internal or persistence error; the request was not applied."
  },
  {
    code: "70006",
    name: "Busy",
    meaning: "A leadership transfer or membership change is already in progress."
  },
  { code: "70007", name: "JobFailed", meaning: "The job was accepted but failed while running." }
] as const

type ErrorEntry = (typeof errorTable)[number]
export type ErrorName = ErrorEntry["name"]
export type ErrorCode = ErrorEntry["code"]

type CodeOf<N extends ErrorName> = Extract<ErrorEntry, { name: N }>["code"]

const codeOf = <N extends ErrorName>(name: N): CodeOf<N> =>
  errorTable.find((entry) => entry.name === name)!.code as CodeOf<N>

export class BadRequest extends Data.TaggedError("BadRequest")<{ readonly info: string }> {
  readonly code = codeOf("BadRequest")
}
export class Unavailable extends Data.TaggedError("Unavailable")<{ readonly info: string }> {
  readonly code = codeOf("Unavailable")
}
export class NotFound extends Data.TaggedError("NotFound")<{ readonly info: string }> {
  readonly code = codeOf("NotFound")
}
export class Timeout extends Data.TaggedError("Timeout")<{ readonly info: string }> {
  readonly code = codeOf("Timeout")
}
export class Internal extends Data.TaggedError("Internal")<{ readonly info: string }> {
  readonly code = codeOf("Internal")
}
export class Busy extends Data.TaggedError("Busy")<{ readonly info: string }> {
  readonly code = codeOf("Busy")
}
export class JobFailed extends Data.TaggedError("JobFailed")<{ readonly info: string }> {
  readonly code = codeOf("JobFailed")
}

/** What an Emit request can fail with; `code` and `info` become error_code and error_info. */
export type EmitError = BadRequest | Unavailable | NotFound | Timeout | Internal | Busy | JobFailed

/** Longest excerpt of client input echoed in error_info, so a hostile body cannot bloat replies. */
export const excerptLengthMax = 100

/** A client string as it may appear in an error message: truncated, its real length said. */
export const excerpt = (text: string): string => {
  if (text.length <= excerptLengthMax) return text
  // Never cut between the two halves of a surrogate pair: a lone surrogate is not Unicode.
  const high = text.charCodeAt(excerptLengthMax - 1)
  const end = high >= 0xd800 && high <= 0xdbff ? excerptLengthMax - 1 : excerptLengthMax
  return `${text.slice(0, end)}... (${codePoints(text)} characters)`
}

const codePoints = (text: string): number => {
  let n = text.length
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i)
    if (c >= 0xd800 && c <= 0xdbff && i + 1 < text.length) {
      const d = text.charCodeAt(i + 1)
      if (d >= 0xdc00 && d <= 0xdfff) n--, i++
    }
  }
  return n
}

/**
 * Names an arbitrary input value for an error message without serialising it: a hostile value
 * may be megabytes long or nested thousands of levels deep.
 */
export const describe = (value: unknown): string => {
  if (value === null) return "null"
  if (Array.isArray(value)) return value.length === 0 ? "an empty array" : "an array"
  switch (typeof value) {
    case "string":
      return `'${excerpt(value)}'`
    case "number":
    case "boolean":
      return String(value)
    case "undefined":
      return "nothing"
    case "object":
      return "an object"
    default:
      return `a ${typeof value}`
  }
}

/**
 * A leaf schema's message annotation: "must be <expected>, got <input>". It overrides Effect's
 * default messages, which serialise the whole (possibly hostile) input.
 */
export const mustBe = (expected: string) => ({
  message: (issue: ParseResult.ParseIssue) => ({
    message: `must be ${expected}, got ${describe(issue.actual)}`,
    override: true
  })
})

/** A dotted path as a client writes it: `paras.rb_nodes[0].port`. */
export const pathText = (path: ReadonlyArray<PropertyKey>): string =>
  path.map((key, i) => (typeof key === "number" ? `[${key}]` : i === 0 ? String(key) : `.${String(key)}`)).join("")

type Issue = ParseResult.ParseIssue
type AstIssue = Exclude<Issue, ParseResult.Pointer | ParseResult.Unexpected | ParseResult.Missing>

/** Effect's rule: a plain annotation on a wrapper yields to the inner issue's message. */
const wrapsInner = (issue: AstIssue): boolean =>
  issue._tag === "Composite" ||
  (issue._tag === "Refinement" && issue.kind === "From") ||
  (issue._tag === "Transformation" && issue.kind !== "Transformation")

/** The text of the issue's message annotation, if it has one that applies. */
const annotatedMessage = (issue: AstIssue): string | undefined => {
  const out = Option.getOrUndefined(SchemaAST.getMessageAnnotation(issue.ast))?.(issue)
  if (typeof out === "string") return wrapsInner(issue) ? undefined : out
  if (typeof out !== "object" || !("override" in out) || typeof out.message !== "string") return undefined
  return out.override || !wrapsInner(issue) ? out.message : undefined
}

const missingMessage = (issue: ParseResult.Missing): string => {
  const out = Option.getOrUndefined(SchemaAST.getMissingMessageAnnotation(issue.ast))?.()
  return typeof out === "string" ? out : "is missing"
}

type Leaf = { readonly path: ReadonlyArray<PropertyKey>; readonly message: string; readonly missing?: true }

const innerOf = (issue: AstIssue): Issue | undefined => {
  if (issue._tag === "Composite") return Array.isArray(issue.issues) ? issue.issues[0] : (issue.issues as Issue)
  return issue._tag === "Refinement" || issue._tag === "Transformation" ? issue.issue : undefined
}

/**
 * Follows the first failure down to its leaf. Effect's formatters render every issue, and their
 * default messages serialise the input recursively, which overflows the stack on a deeply nested
 * body; this walk renders one message, and the schemas here build theirs with `describe`.
 */
const firstLeaf = (issue: Issue, path: ReadonlyArray<PropertyKey>): Leaf => {
  switch (issue._tag) {
    case "Pointer":
      return firstLeaf(issue.issue, path.concat(issue.path))
    case "Missing":
      return { path, message: missingMessage(issue), missing: true }
    case "Unexpected":
      return { path, message: issue.message ?? "is not allowed" }
    default: {
      const message = annotatedMessage(issue)
      const inner = innerOf(issue)
      if (message !== undefined) return { path, message }
      if (inner !== undefined) return firstLeaf(inner, path)
      const own = issue._tag === "Type" || issue._tag === "Forbidden" ? issue.message : undefined
      return { path, message: own ?? `is invalid, got ${describe(issue.actual)}` }
    }
  }
}

/** The first issue of a failed decode, its path joined as a client writes it. */
export const firstIssue = (
  error: ParseResult.ParseError
): { readonly path: string; readonly message: string; readonly missing: boolean } => {
  const leaf = firstLeaf(error.issue, [])
  return { path: pathText(leaf.path), message: leaf.message, missing: leaf.missing === true }
}
