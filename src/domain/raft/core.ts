// The pure Raft core. (Being written: the public surface below is the contract.)
import type { Message } from "./messages.js"
import type { RaftOptions } from "./options.js"
import type { Persisted, ProposeResult, RaftStatus, Ready, Refusal } from "./ready.js"
import type { Configuration } from "./types.js"

export const bootstrapPersisted = (config: Configuration): Persisted => ({
  hardState: { term: 0, vote: null, commit: 0 },
  snapshot: { meta: { index: 0, term: 0, config }, data: "" },
  entries: []
})

export declare class RaftCore {
  constructor(options: RaftOptions, persisted: Persisted, appliedIndex?: number)
  tick(): void
  receive(message: Message): void
  propose(data: ReadonlyArray<string>): ProposeResult
  changeMembership(id: string, voters: ReadonlyArray<string>): Refusal | undefined
  transferLeadership(id: string, target: string): Refusal | undefined
  readIndex(id: string): Refusal | undefined
  persisted(index: number, term: number): void
  snapshotTaken(index: number, data: string): void
  peerUnreachable(peer: string): void
  hasReady(): boolean
  ready(): Ready
  status(): RaftStatus
}
