import type { Entry } from "./types.js"

/**
 * The in-memory Raft log: entries after `offset`, where `offset` is the last compacted index
 * and `offsetTerm` its term. The core keeps the whole uncompacted log in memory (snapshots keep
 * it short), so it never reads storage; the driver persists what Ready tells it.
 */
export class RaftLog {
  private entries: Array<Entry>
  private offset: number
  private offsetTerm: number

  constructor(offset: number, offsetTerm: number, entries: ReadonlyArray<Entry>) {
    this.offset = offset
    this.offsetTerm = offsetTerm
    this.entries = [...entries]
    entries.forEach((e, i) => {
      if (e.index !== offset + 1 + i) throw new Error(`log gap at ${e.index}, expected ${offset + 1 + i}`)
    })
  }

  firstIndex(): number {
    return this.offset + 1
  }

  lastIndex(): number {
    return this.offset + this.entries.length
  }

  lastTerm(): number {
    return this.entries.length === 0 ? this.offsetTerm : this.entries[this.entries.length - 1].term
  }

  /** The term at `index`, or undefined when it is compacted away or beyond the end. */
  term(index: number): number | undefined {
    if (index === this.offset) return this.offsetTerm
    if (index < this.offset || index > this.lastIndex()) return undefined
    return this.entries[index - this.offset - 1].term
  }

  entry(index: number): Entry | undefined {
    if (index <= this.offset || index > this.lastIndex()) return undefined
    return this.entries[index - this.offset - 1]
  }

  /** Entries in [lo, hi], at most `maxCount` and about `maxBytes` (at least one). */
  slice(lo: number, hi: number, maxCount = Infinity, maxBytes = Infinity): Array<Entry> {
    const from = Math.max(lo, this.offset + 1)
    const to = Math.min(hi, this.lastIndex(), from + maxCount - 1)
    if (to < from) return []
    const out = this.entries.slice(from - this.offset - 1, to - this.offset)
    if (maxBytes === Infinity) return out
    let bytes = 0
    for (let i = 0; i < out.length; i++) {
      bytes += entrySize(out[i])
      if (bytes > maxBytes && i > 0) return out.slice(0, i)
    }
    return out
  }

  append(entries: ReadonlyArray<Entry>): void {
    for (const e of entries) {
      if (e.index !== this.lastIndex() + 1) throw new Error(`append at ${e.index}, last is ${this.lastIndex()}`)
      this.entries.push(e)
    }
  }

  /** Drop every entry with index >= from. */
  truncateFrom(from: number): void {
    if (from <= this.offset) throw new Error(`truncate at ${from} below offset ${this.offset}`)
    this.entries.length = Math.max(0, from - this.offset - 1)
  }

  /** Forget entries up to and including `index`, which must be in the log. */
  compactTo(index: number): void {
    if (index <= this.offset) return
    const t = this.term(index)
    if (t === undefined) throw new Error(`compact to ${index} beyond last ${this.lastIndex()}`)
    this.entries = this.entries.slice(index - this.offset)
    this.offset = index
    this.offsetTerm = t
  }

  /** Replace the whole log by a snapshot point, keeping the suffix when it agrees with it. */
  restore(index: number, term: number): "kept-suffix" | "discarded" {
    if (this.term(index) === term) {
      this.compactTo(index)
      return "kept-suffix"
    }
    this.entries = []
    this.offset = index
    this.offsetTerm = term
    return "discarded"
  }

  /** The first index of the run of entries with `term` that contains `index`. */
  firstIndexOfTermRun(index: number): number {
    const t = this.term(index)
    let i = index
    while (i - 1 > this.offset && this.term(i - 1) === t) i--
    return i
  }

  /** The last index whose term is `term`, at or below `upTo`, or undefined. */
  lastIndexOfTerm(term: number, upTo: number): number | undefined {
    for (let i = Math.min(upTo, this.lastIndex()); i > this.offset; i--) {
      const t = this.term(i)!
      if (t === term) return i
      if (t < term) return undefined
    }
    return undefined
  }

  /** The newest Config entry in (floor, upTo], or undefined. */
  lastConfigEntry(floor: number, upTo: number): Entry | undefined {
    for (let i = Math.min(upTo, this.lastIndex()); i > Math.max(floor, this.offset); i--) {
      const e = this.entries[i - this.offset - 1]
      if (e.payload._tag === "Config") return e
    }
    return undefined
  }

  isUpToDate(lastIndex: number, lastTerm: number): boolean {
    const myTerm = this.lastTerm()
    return lastTerm > myTerm || (lastTerm === myTerm && lastIndex >= this.lastIndex())
  }
}

/** An estimate of an entry's wire size, for batching limits. */
export const entrySize = (e: Entry): number =>
  32 + (e.payload._tag === "Command" ? e.payload.data.length : e.payload._tag === "Config" ? 128 : 0)
