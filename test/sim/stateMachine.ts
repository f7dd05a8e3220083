/**
 * The simulated nodes' state machine: it folds every applied entry into a digest, counts the
 * commands and remembers the last few. Its snapshot image is that summary as JSON, small
 * enough to travel in a few chunks, yet two nodes agree on the image at an index only if they
 * applied the same entries up to it, so State Machine Safety holds across snapshot installs.
 */
import type { Entry } from "../../src/domain/raft/types.js"

/** What identifies an entry's content (index and term aside). */
export const entryKey = (e: Entry): string => {
  const p = e.payload
  switch (p._tag) {
    case "Command":
      return `C:${p.data}`
    case "Noop":
      return "N"
    case "Config":
      return `K:${p.config.voters.join(",")}|${p.config.outgoing.join(",")}|${p.config.learners.join(",")}`
  }
}

/** Two FNV-style 32-bit lanes over the key, chained on the previous digest. */
const foldA = (a: number, index: number, key: string): number => {
  let h = (a ^ index) >>> 0
  for (let i = 0; i < key.length; i++) h = Math.imul(h ^ key.charCodeAt(i), 0x01000193) >>> 0
  return h
}

const foldB = (b: number, index: number, key: string): number => {
  let h = (b + Math.imul(index, 0x9e3779b1)) >>> 0
  for (let i = 0; i < key.length; i++) {
    h = Math.imul(h + key.charCodeAt(i), 0x5bd1e995) >>> 0
    h = (h ^ (h >>> 15)) >>> 0
  }
  return h
}

const showDigest = (a: number, b: number): string => `${a.toString(36)}.${b.toString(36)}`

const parseDigest = (digest: string): [number, number] => {
  const [a, b] = digest.split(".")
  return [Number.parseInt(a, 36) >>> 0, Number.parseInt(b, 36) >>> 0]
}

export const emptyDigest = "0.0"

interface Image {
  readonly index: number
  readonly digest: string
  readonly commands: number
  readonly recent: ReadonlyArray<string>
}

const recentMax = 4

export class StateMachine {
  private a: number
  private b: number

  private constructor(
    public index: number,
    digest: string,
    public commands: number,
    private readonly recent: Array<string>
  ) {
    ;[this.a, this.b] = parseDigest(digest)
  }

  static empty(): StateMachine {
    return new StateMachine(0, emptyDigest, 0, [])
  }

  /** Names everything applied so far: equal digests at one index mean equal histories. */
  get digest(): string {
    return showDigest(this.a, this.b)
  }

  /** Loads a snapshot image; the empty bootstrap snapshot (data "") is the empty machine. */
  static restore(index: number, data: string): StateMachine {
    if (data === "") {
      if (index !== 0) throw new Error(`snapshot at ${index} carries no image`)
      return StateMachine.empty()
    }
    const image = JSON.parse(data) as Image
    if (image.index !== index) throw new Error(`snapshot at ${index} holds an image of ${image.index}`)
    return new StateMachine(image.index, image.digest, image.commands, [...image.recent])
  }

  apply(e: Entry): void {
    this.index = e.index
    const key = entryKey(e)
    this.a = foldA(this.a, e.index, key)
    this.b = foldB(this.b, e.index, key)
    if (e.payload._tag === "Command") {
      this.commands++
      this.recent.push(e.payload.data)
      if (this.recent.length > recentMax) this.recent.shift()
    }
  }

  image(): string {
    const image: Image = { index: this.index, digest: this.digest, commands: this.commands, recent: this.recent }
    return JSON.stringify(image)
  }
}
