/**
 * A small seeded PRNG (sfc32) so that every random choice of the core (election jitter) is
 * reproducible from a seed, as the simulator requires. Never Math.random in src/domain.
 */
export class Prng {
  private a: number
  private b: number
  private c: number
  private d: number

  constructor(seed: number) {
    this.a = 0x9e3779b9
    this.b = 0x243f6a88
    this.c = 0xb7e15162
    this.d = seed >>> 0
    for (let i = 0; i < 15; i++) this.next()
  }

  /** A uniform 32-bit unsigned integer. */
  next(): number {
    const t = (((this.a + this.b) >>> 0) + this.d) >>> 0
    this.d = (this.d + 1) >>> 0
    this.a = this.b ^ (this.b >>> 9)
    this.b = (this.c + (this.c << 3)) >>> 0
    this.c = ((this.c << 21) | (this.c >>> 11)) >>> 0
    this.c = (this.c + t) >>> 0
    return t
  }

  /** A uniform float in [0, 1). */
  float(): number {
    return this.next() / 4294967296
  }

  /** A uniform integer in [0, n). */
  int(n: number): number {
    return Math.floor(this.float() * n)
  }

  chance(p: number): boolean {
    return this.float() < p
  }

  pick<A>(items: ReadonlyArray<A>): A {
    return items[this.int(items.length)]
  }

  /** A new independent generator, for a sub-component, drawn from this one. */
  derive(): Prng {
    return new Prng(this.next())
  }
}
