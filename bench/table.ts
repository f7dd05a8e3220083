/**
 * The emit bench's one table (issue 7): figure, cluster_mgr, etcd, ratio, target with ok/MISSED.
 * bench/emit.ts and bench/ops.ts build rows; `renderTable` lays them out.
 */

export const fmt = (x: number, digits = 1): string => (Number.isFinite(x) ? x.toFixed(digits) : "—")

export interface Row {
  figure: string
  ours: number
  theirs: number | undefined
  unit: string
  /** higher: ratio ours/etcd; lower: ratio etcd/ours. */
  better: "higher" | "lower"
  target: string
  /** Whether the target is met, given ours, etcd's and the ratio; undefined: no target/unknown. */
  met?: (ours: number, theirs: number | undefined, ratio: number | undefined) => boolean | undefined
  digits?: number
}

/** A time in ms, lower being better (failovers, transfers, restarts). */
export const msRow = (
  figure: string,
  ours: number | undefined,
  theirs: number | undefined,
  target = "—",
  met?: (ours: number) => boolean,
  digits = 0
): Row => ({ figure, ours: ours ?? NaN, theirs, unit: "ms", better: "lower", target, ...(met === undefined ? {} : { met }), digits })

/** The table as lines (header, alignment row, one line per row), Markdown-shaped. */
export const renderTable = (rows: ReadonlyArray<Row>, etcdAvailable: boolean): Array<string> => {
  const lines = rows.map((r) => {
    const d = r.digits ?? 1
    const ratio =
      r.theirs === undefined || !Number.isFinite(r.theirs) || !Number.isFinite(r.ours) || r.ours === 0
        ? undefined
        : r.better === "higher"
          ? r.ours / r.theirs
          : r.theirs / r.ours
    const met = r.met?.(r.ours, r.theirs, ratio)
    return [
      r.figure,
      `${fmt(r.ours, d)} ${r.unit}`,
      r.theirs === undefined ? "—" : `${fmt(r.theirs, d)} ${r.unit}`,
      ratio === undefined ? "—" : `${ratio.toFixed(2)}x`,
      `${r.target}${met === undefined ? "" : met ? "  ok" : "  MISSED"}`
    ]
  })
  const header = ["figure", "cluster_mgr", etcdAvailable ? "etcd" : "etcd (unavailable)", "ratio", "target (issue 7)"]
  const widths = header.map((h, i) => Math.max(h.length, ...lines.map((l) => l[i].length)))
  const row = (cells: Array<string>) => `| ${cells.map((c, i) => (i === 0 || i === 4 ? c.padEnd(widths[i]) : c.padStart(widths[i]))).join(" | ")} |`
  return [row(header), `|${widths.map((w, i) => (i === 0 || i === 4 ? "-".repeat(w + 2) : `${"-".repeat(w + 1)}:`)).join("|")}|`, ...lines.map(row)]
}
