import { Effect, Metric, MetricState } from "effect"
import { getHeapSpaceStatistics } from "node:v8"
import type { MetricPair } from "effect/MetricPair"

/** Renders every registered Effect metric in the Prometheus text exposition format. */
export const renderPrometheus: Effect.Effect<string> = Effect.map(Metric.snapshot, (pairs) => {
  const byName = new Map<string, Array<MetricPair.Untyped>>()
  for (const p of pairs) {
    const list = byName.get(p.metricKey.name) ?? []
    list.push(p)
    byName.set(p.metricKey.name, list)
  }
  const lines: Array<string> = []
  // Code-unit order, not localeCompare: the same order under every locale, and no ICU collation
  // data paged in (about 3 MB of RSS) by the first scrape.
  for (const [name, list] of [...byName.entries()].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))) {
    const help = list[0].metricKey.description
    if (help !== undefined && help._tag === "Some") lines.push(`# HELP ${name} ${help.value}`)
    lines.push(`# TYPE ${name} ${typeOf(list[0].metricState)}`)
    for (const p of list) lines.push(...render(name, labels(p), p.metricState))
  }
  lines.push(...processLines())
  return lines.join("\n") + "\n"
})

/**
 * The process's memory, in the names Prometheus client libraries use, read when scraped: RSS
 * beside the V8 heap tells a JS leak from native growth (SQLite caches, allocator arenas), and
 * the heap's spaces tell live data (old space) from a young generation sized for the load.
 */
const processLines = (): Array<string> => {
  const m = process.memoryUsage()
  const gauge = (name: string, help: string, value: number) => [`# HELP ${name} ${help}`, `# TYPE ${name} gauge`, `${name} ${value}`]
  const spaces = getHeapSpaceStatistics()
  const bySpace = (name: string, help: string, value: (s: (typeof spaces)[number]) => number) => [
    `# HELP ${name} ${help}`,
    `# TYPE ${name} gauge`,
    ...spaces.map((s) => `${name}{space="${s.space_name.replace(/_space$/, "")}"} ${value(s)}`)
  ]
  return [
    ...gauge("process_resident_memory_bytes", "Resident memory size in bytes.", m.rss),
    ...gauge("nodejs_heap_size_total_bytes", "V8 heap size reserved, in bytes.", m.heapTotal),
    ...gauge("nodejs_heap_size_used_bytes", "V8 heap size in use, in bytes.", m.heapUsed),
    ...gauge("nodejs_external_memory_bytes", "Memory of C++ objects bound to JS objects, in bytes.", m.external),
    ...bySpace("nodejs_heap_space_size_total_bytes", "V8 heap space size reserved, in bytes.", (s) => s.space_size),
    ...bySpace("nodejs_heap_space_size_used_bytes", "V8 heap space size in use, in bytes.", (s) => s.space_used_size)
  ]
}

const typeOf = (s: MetricState.MetricState.Untyped): string =>
  MetricState.isCounterState(s) ? "counter" : MetricState.isGaugeState(s) ? "gauge" : MetricState.isHistogramState(s) ? "histogram" : "untyped"

const labels = (p: MetricPair.Untyped): Array<[string, string]> => p.metricKey.tags.map((t) => [t.key, t.value])

const fmt = (ls: ReadonlyArray<[string, string]>): string =>
  ls.length === 0 ? "" : `{${ls.map(([k, v]) => `${k}="${v.replace(/\\/g, "\\\\").replace(/"/g, '\\"')}"`).join(",")}}`

const num = (n: number | bigint): string => (typeof n === "bigint" ? n.toString() : Number.isFinite(n) ? String(n) : n > 0 ? "+Inf" : "-Inf")

const render = (name: string, ls: Array<[string, string]>, s: MetricState.MetricState.Untyped): Array<string> => {
  if (MetricState.isCounterState(s) || MetricState.isGaugeState(s)) return [`${name}${fmt(ls)} ${num((MetricState.isCounterState(s) ? s.count : (s as MetricState.MetricState.Gauge<number>).value) as number)}`]
  if (MetricState.isHistogramState(s)) {
    const out: Array<string> = []
    for (const [le, count] of s.buckets) out.push(`${name}_bucket${fmt([...ls, ["le", num(le)]])} ${count}`)
    out.push(`${name}_bucket${fmt([...ls, ["le", "+Inf"]])} ${s.count}`)
    out.push(`${name}_sum${fmt(ls)} ${s.sum}`)
    out.push(`${name}_count${fmt(ls)} ${s.count}`)
    return out
  }
  return []
}
