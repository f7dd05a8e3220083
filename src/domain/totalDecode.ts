import { Either, ParseResult, Schema } from "effect"
import type { ParseOptions } from "effect/SchemaAST"

/**
 * `Schema.decodeUnknownEither` that never throws. Effect's parser for a union of tagged structs
 * reads the tag of its input with `String()`, which throws on an object such as
 * `{"toString": 1}`, and JSON can carry one: a hostile peer frame or request body would escape as
 * an exception (an uncaught one in a socket callback ends the process). Here the throw becomes a
 * ParseError on the input, refused like any other the schema does not accept.
 */
export const totalDecoder = <A, I>(schema: Schema.Schema<A, I>, options?: ParseOptions) => {
  const decode = Schema.decodeUnknownEither(schema, options)
  return (input: unknown): Either.Either<A, ParseResult.ParseError> => {
    try {
      return decode(input)
    } catch (error) {
      const reason = error instanceof Error ? error.message : "an exception"
      return Either.left(new ParseResult.ParseError({ issue: new ParseResult.Type(schema.ast, input, `cannot be read (${reason})`) }))
    }
  }
}
