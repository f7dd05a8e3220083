import type { JournalRow } from "../storage/Journal.js"

/** One row for tools: the columns, with the event as a JSON value rather than a string. */
export const rowJson = (row: JournalRow) => ({
  seq: row.seq,
  log_index: row.logIndex,
  log_term: row.logTerm,
  at: row.at,
  job_id: row.jobId,
  user_name: row.userName,
  type: row.type,
  event: parseOrText(row.event),
  hash: row.hash
})

const parseOrText = (text: string): unknown => {
  try {
    return JSON.parse(text)
  } catch {
    return text
  }
}

const isoTime = (ms: number): string => {
  const d = new Date(ms)
  return Number.isNaN(d.getTime()) ? String(ms) : d.toISOString()
}

/** The event's own fields, less those the other columns already show. */
const detail = (row: JournalRow): string => {
  const event = parseOrText(row.event)
  if (typeof event !== "object" || event === null) return String(event)
  const { _tag, v, jobId, at, ...rest } = event as Record<string, unknown>
  void [_tag, v, jobId, at]
  return Object.keys(rest).length === 0 ? "" : JSON.stringify(rest)
}

const columns = [
  ["SEQ", 7],
  ["AT", 24],
  ["INDEX/TERM", 12],
  ["JOB", 6],
  ["USER", 12],
  ["TYPE", 16]
] as const

const line = (cells: ReadonlyArray<string>, last: string): string =>
  cells.map((c, i) => c.padEnd(columns[i][1])).join(" ") + " " + last

/** Fixed widths, so rows can be printed as they are read, without a pass to measure them. */
export const tableHeader = line(columns.map(([name]) => name), "DETAIL")

export const tableRow = (row: JournalRow): string =>
  line(
    [String(row.seq), isoTime(row.at), `${row.logIndex}/${row.logTerm}`, row.jobId ?? "-", row.userName ?? "-", row.type],
    detail(row)
  ).trimEnd()
