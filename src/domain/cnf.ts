import { Data, Either, Option, Schema, SchemaAST } from "effect"
import { textWhere } from "./emit/commands.js"
import { excerpt } from "./emit/errors.js"

/**
 * Klustron's cnf syntax, shared by cluster_mgr.cnf and node_mgr.cnf: `name = value` lines, `#`
 * starts a comment, a value ends at the first whitespace, every key at most once.
 */

/** A cnf problem, in one line naming the key and, when there is one, the line. */
export class ConfigError extends Data.TaggedError("ConfigError")<{
  readonly message: string
  readonly key?: string
  readonly line?: number
}> {}

export interface CnfSetting<K extends string> {
  readonly key: K
  readonly value: string
  readonly line: number
}

const keyFormat = /^[A-Za-z_][A-Za-z0-9_]*$/

export const cnfErrorAt = (source: string, line: number | undefined, text: string, key?: string): ConfigError =>
  new ConfigError({ message: `${source}${line === undefined ? "" : ` line ${line}`}: ${text}`, key, line })

/** One line: nothing (blank or comment), a known key's setting, or an error. */
const lexLine = <K extends string>(
  source: string,
  raw: string,
  line: number,
  isKey: (key: string) => key is K
): Either.Either<CnfSetting<K> | undefined, ConfigError> => {
  const content = raw.split("#", 1)[0].trim()
  if (content === "") return Either.right(undefined)
  const eq = content.indexOf("=")
  if (eq < 0) return Either.left(cnfErrorAt(source, line, `expected \`name = value\`, got '${excerpt(content)}'`))
  const key = content.slice(0, eq).trim()
  const value = content.slice(eq + 1).trim().split(/\s/, 1)[0]
  if (!keyFormat.test(key)) return Either.left(cnfErrorAt(source, line, `invalid key name '${excerpt(key)}'`))
  if (!isKey(key)) return Either.left(cnfErrorAt(source, line, `unknown key \`${excerpt(key)}\``, key))
  if (value === "") return Either.left(cnfErrorAt(source, line, `\`${key}\` has no value`, key))
  return Either.right({ key, value, line })
}

/** Settings by key, each once; an unknown or repeated key is an error naming its line. */
export const lexCnf = <K extends string>(
  source: string,
  text: string,
  isKey: (key: string) => key is K
): Either.Either<Map<K, CnfSetting<K>>, ConfigError> => {
  const settings = new Map<K, CnfSetting<K>>()
  const lines = text.split(/\r?\n/)
  for (let i = 0; i < lines.length; i++) {
    const lexed = lexLine(source, lines[i], i + 1, isKey)
    if (Either.isLeft(lexed)) return Either.left(lexed.left)
    const setting = lexed.right
    if (setting === undefined) continue
    const first = settings.get(setting.key)
    if (first !== undefined) {
      return Either.left(
        cnfErrorAt(source, setting.line, `duplicate key \`${setting.key}\` (first set on line ${first.line})`, setting.key)
      )
    }
    settings.set(setting.key, setting)
  }
  return Either.right(settings)
}

/** A key's documentation: the description annotation of its field. */
export const fieldDoc = (field: Schema.Struct.Field): string => {
  // A field with a default is a transformation whose `to` side carries the annotations.
  const ast = field.ast as SchemaAST.Annotated & { readonly _tag: string; readonly to?: SchemaAST.Annotated }
  const annotated = ast._tag === "PropertySignatureTransformation" && ast.to !== undefined ? ast.to : ast
  return Option.getOrElse(SchemaAST.getDescriptionAnnotation(annotated), () => "")
}

// Key declarations: each key's description is its documentation.

export const documented = <S extends Schema.Schema.Any>(doc: string, schema: S) =>
  Schema.propertySignature(schema).annotations({ description: doc })

export const withDefault = <A, I>(doc: string, schema: Schema.Schema<A, I>, value: A) =>
  Schema.optionalWith(schema, { exact: true, default: () => value }).annotations({ description: doc })

export const optional = <A, I>(doc: string, schema: Schema.Schema<A, I>) =>
  Schema.optionalWith(schema, { exact: true }).annotations({ description: doc })

/** A value ends at the first whitespace and `#` starts a comment, so neither can be in one. */
export const Word = textWhere("a value without spaces or #", (text) => text.length > 0 && !/[\s#]/.test(text))
