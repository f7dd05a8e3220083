import { Context, Effect, Either, Layer, Schema, SynchronizedRef } from "effect"
import * as fs from "node:fs"
import * as path from "node:path"
import { AgentStartupError, errnoText, StateWriteError } from "./errors.js"
import { AgentState, emptyState } from "./state.js"

/**
 * The agent's state, durable: one JSON document in node_mgr_tmp_data_path, replaced atomically
 * (temporary file, fsync, rename, fsync of the directory) on every change. A change is visible
 * only once it is on disk; a failed write leaves the previous state in force.
 */

export interface StateStoreApi {
  readonly get: Effect.Effect<AgentState>
  /** Applies `f`, persists the result (unless unchanged) and returns what `f` computed. */
  readonly modify: <A>(f: (state: AgentState) => readonly [A, AgentState]) => Effect.Effect<A, StateWriteError>
  readonly update: (f: (state: AgentState) => AgentState) => Effect.Effect<AgentState, StateWriteError>
}

export class StateStore extends Context.Tag("node_mgr/StateStore")<StateStore, StateStoreApi>() {}

export const stateFileName = "node_mgr_state.json"

const decodeState = Schema.decodeUnknownEither(Schema.parseJson(AgentState))

const writeAtomically = (file: string, text: string): void => {
  const temp = `${file}.tmp`
  const fd = fs.openSync(temp, "w", 0o600)
  try {
    fs.writeSync(fd, text)
    fs.fsyncSync(fd)
  } finally {
    fs.closeSync(fd)
  }
  fs.renameSync(temp, file)
  const dir = fs.openSync(path.dirname(file), "r")
  try {
    fs.fsyncSync(dir)
  } finally {
    fs.closeSync(dir)
  }
}

const load = (file: string): Effect.Effect<AgentState, AgentStartupError> =>
  Effect.suspend(() => {
    let text: string
    try {
      text = fs.readFileSync(file, "utf8")
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === "ENOENT") return Effect.succeed(emptyState)
      return Effect.fail(new AgentStartupError({ message: `node_mgr_tmp_data_path: cannot read ${file} (${errnoText(e)})` }))
    }
    const decoded = decodeState(text)
    return Either.isRight(decoded)
      ? Effect.succeed(decoded.right)
      : Effect.fail(
          new AgentStartupError({
            message: `node_mgr_tmp_data_path: ${file} is not a node_mgr state file (damaged?); move it away to start afresh`
          })
        )
  })

export const make = (dataDir: string): Effect.Effect<StateStoreApi, AgentStartupError> =>
  Effect.gen(function* () {
    const file = path.join(dataDir, stateFileName)
    const ref = yield* SynchronizedRef.make(yield* load(file))
    const persist = (state: AgentState) =>
      Effect.try({
        try: () => writeAtomically(file, JSON.stringify(state, null, 1)),
        catch: (e) => new StateWriteError({ message: `cannot write ${file}: ${errnoText(e)}` })
      })
    const modify: StateStoreApi["modify"] = (f) =>
      SynchronizedRef.modifyEffect(ref, (state) => {
        const [result, next] = f(state)
        return next === state ? Effect.succeed([result, state] as const) : Effect.as(persist(next), [result, next] as const)
      })
    return {
      get: SynchronizedRef.get(ref),
      modify,
      update: (f) => modify((state) => {
        const next = f(state)
        return [next, next] as const
      })
    }
  })

export const layer = (dataDir: string): Layer.Layer<StateStore, AgentStartupError> => Layer.effect(StateStore, make(dataDir))
