const isRecord = (v: unknown): v is Record<string, unknown> => typeof v === "object" && v !== null && !Array.isArray(v)

const show = (v: unknown): string => {
  if (v === undefined) return "nothing"
  const text = JSON.stringify(v)
  return text.length > 80 ? text.slice(0, 77) + "..." : text
}

/** Array elements with an `id` (jobs) are named by it: more use to an operator than a position. */
const elementLabel = (v: unknown, i: number): string => (isRecord(v) && typeof v.id === "string" ? `id=${v.id}` : String(i))

/**
 * The first place where two JSON values differ, as `path: expected X, found Y`, or undefined
 * when they are equal. Object keys are compared in sorted order, so key order does not matter.
 */
export const firstDifference = (expected: unknown, found: unknown, path = "state"): string | undefined => {
  if (Array.isArray(expected) && Array.isArray(found)) {
    for (let i = 0; i < Math.max(expected.length, found.length); i++) {
      const d = firstDifference(expected[i], found[i], `${path}[${elementLabel(expected[i] ?? found[i], i)}]`)
      if (d !== undefined) return d
    }
    return undefined
  }
  if (isRecord(expected) && isRecord(found)) {
    for (const key of [...new Set([...Object.keys(expected), ...Object.keys(found)])].sort()) {
      const d = firstDifference(expected[key], found[key], `${path}.${key}`)
      if (d !== undefined) return d
    }
    return undefined
  }
  return expected === found ? undefined : `${path}: expected ${show(expected)}, found ${show(found)}`
}
