import { expect } from "@effect/vitest"
import { Either, FastCheck as fc } from "effect"

/** An object written as its key-value pairs, in order, duplicates allowed (see objectText). */
export interface Pairs {
  readonly pairs: ReadonlyArray<readonly [string, unknown]>
}

/**
 * JSON values whose objects are Pairs with keys from `keys` or any string, and whose scalars are
 * strings, numbers, booleans, null and `constants`: input for a decoder's plain path.
 */
export const jsonValues = (keys: ReadonlyArray<string>, constants: ReadonlyArray<fc.Arbitrary<unknown>> = []) =>
  fc.letrec((tie) => ({
    value: fc.oneof(
      { depthSize: "small" },
      fc.string(),
      ...constants,
      fc.double(),
      fc.integer(),
      fc.boolean(),
      fc.constant(null),
      fc.array(tie("value"), { maxLength: 3 }),
      tie("object")
    ),
    object: fc
      .array(fc.tuple(fc.oneof(fc.constantFrom(...keys), fc.string()), tie("value")), { maxLength: 4 })
      .map((pairs): Pairs => ({ pairs }))
  })).value

/**
 * The JSON text of an object's pairs, rendered by hand so that duplicate keys and an own
 * `__proto__` key reach a decoder as they would from the network.
 */
export const objectText = (entries: Pairs["pairs"]): string => {
  const render = (v: unknown): string =>
    v !== null && typeof v === "object" && "pairs" in v
      ? objectText((v as Pairs).pairs)
      : Array.isArray(v)
      ? `[${v.map(render).join(",")}]`
      : (JSON.stringify(v) ?? "null")
  return `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${render(v)}`).join(",")}}`
}

/**
 * A plain decoding path against its schema's: the same value, key order included (JSON text), or
 * a failure with the same message.
 */
export const expectSameDecoding = <A, E>(plain: Either.Either<A, E>, bySchema: Either.Either<A, E>, messageOf: (e: E) => string): void => {
  if (Either.isRight(bySchema)) {
    expect(Either.isRight(plain)).toBe(true)
    const got = Either.getOrThrow(plain)
    expect(got).toStrictEqual(bySchema.right)
    expect(JSON.stringify(got)).toBe(JSON.stringify(bySchema.right))
  } else {
    expect(Either.isLeft(plain)).toBe(true)
    if (Either.isLeft(plain)) expect(messageOf(plain.left)).toBe(messageOf(bySchema.left))
  }
}
