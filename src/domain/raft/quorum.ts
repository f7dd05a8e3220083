import type { Configuration } from "./types.js"

/**
 * Quorum arithmetic for simple and joint configurations. In a joint configuration C(old,new)
 * every decision needs a majority of each half.
 */

/** The highest value that a majority of `ids` has reached (Infinity for an empty set). */
export const majorityValue = (ids: ReadonlyArray<string>, valueOf: (id: string) => number): number => {
  if (ids.length === 0) return Infinity
  const values = ids.map(valueOf).sort((x, y) => y - x)
  return values[Math.floor(ids.length / 2)]
}

/** The highest value that a quorum of the configuration has reached. */
export const quorumValue = (config: Configuration, valueOf: (id: string) => number): number =>
  Math.min(majorityValue(config.voters, valueOf), majorityValue(config.outgoing, valueOf))

export type VoteResult = "won" | "lost" | "pending"

const majorityVote = (ids: ReadonlyArray<string>, votes: ReadonlyMap<string, boolean>): VoteResult => {
  if (ids.length === 0) return "won"
  let granted = 0
  let rejected = 0
  for (const id of ids) {
    const v = votes.get(id)
    if (v === true) granted++
    else if (v === false) rejected++
  }
  const need = Math.floor(ids.length / 2) + 1
  if (granted >= need) return "won"
  if (ids.length - rejected < need) return "lost"
  return "pending"
}

export const voteResult = (config: Configuration, votes: ReadonlyMap<string, boolean>): VoteResult => {
  const a = majorityVote(config.voters, votes)
  const b = majorityVote(config.outgoing, votes)
  if (a === "lost" || b === "lost") return "lost"
  if (a === "won" && b === "won") return "won"
  return "pending"
}

/** Whether a quorum of the configuration satisfies `active` (CheckQuorum). */
export const quorumActive = (config: Configuration, active: (id: string) => boolean): boolean =>
  quorumValue(config, (id) => (active(id) ? 1 : 0)) >= 1

export const isVoter = (config: Configuration, id: string): boolean =>
  config.voters.includes(id) || config.outgoing.includes(id)

export const isJoint = (config: Configuration): boolean => config.outgoing.length > 0

/** Every node that must receive the log: voters of both halves and learners, once each. */
export const members = (config: Configuration): Array<string> => [
  ...new Set([...config.voters, ...config.outgoing, ...config.learners])
]

export const sameMembers = (a: ReadonlyArray<string>, b: ReadonlyArray<string>): boolean =>
  a.length === b.length && a.every((x) => b.includes(x))
