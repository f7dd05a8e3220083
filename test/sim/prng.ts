/**
 * The simulator's seeded randomness: the core's sfc32 generator, plus label-derived
 * sub-streams. Every component (network, faults, clients, each node's core) draws from its own
 * stream named by the run's seed and a label, so one more draw in one component never shifts
 * the choices of another, and a seed keeps replaying the same schedule.
 */
import { Prng as CorePrng } from "../../src/domain/raft/prng.js"

/** FNV-1a of a label mixed into the parent seed, then avalanched (murmur3 finaliser). */
const mixLabel = (seed: number, label: string): number => {
  let h = (0x811c9dc5 ^ seed) >>> 0
  for (let i = 0; i < label.length; i++) h = Math.imul(h ^ label.charCodeAt(i), 0x01000193) >>> 0
  h = Math.imul(h ^ (h >>> 16), 0x85ebca6b)
  h = Math.imul(h ^ (h >>> 13), 0xc2b2ae35)
  return (h ^ (h >>> 16)) >>> 0
}

export class Prng {
  private readonly g: CorePrng

  constructor(readonly seed: number) {
    this.g = new CorePrng(seed >>> 0)
  }

  /** A uniform 32-bit unsigned integer. */
  next(): number {
    return this.g.next()
  }

  /** Uniform in [0, 1). */
  float(): number {
    return this.g.float()
  }

  /** Uniform integer in [0, n). */
  int(n: number): number {
    if (n <= 0) throw new Error(`Prng.int: bound must be positive, got ${n}`)
    return this.g.int(n)
  }

  /** Uniform integer in [lo, hi], both included. */
  range(lo: number, hi: number): number {
    return lo + this.int(hi - lo + 1)
  }

  /** Uniform real in [lo, hi). */
  between(lo: number, hi: number): number {
    return lo + this.float() * (hi - lo)
  }

  chance(p: number): boolean {
    return p > 0 && this.g.chance(p)
  }

  pick<A>(items: ReadonlyArray<A>): A {
    if (items.length === 0) throw new Error("Prng.pick: empty array")
    return this.g.pick(items)
  }

  /** A shuffled copy (Fisher-Yates). */
  shuffle<A>(items: ReadonlyArray<A>): Array<A> {
    const out = items.slice()
    for (let i = out.length - 1; i > 0; i--) {
      const j = this.int(i + 1)
      const tmp = out[i]
      out[i] = out[j]
      out[j] = tmp
    }
    return out
  }

  /** The seed of a component's stream: fixed by this stream's seed and the label alone. */
  deriveSeed(label: string): number {
    return mixLabel(this.seed, label)
  }

  derive(label: string): Prng {
    return new Prng(this.deriveSeed(label))
  }
}
