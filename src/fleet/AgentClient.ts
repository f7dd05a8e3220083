import * as HttpClient from "@effect/platform/HttpClient"
import * as HttpClientRequest from "@effect/platform/HttpClientRequest"
import { Context, Data, Duration, Effect, Layer, Schema } from "effect"

/**
 * Talks to node_mgr agents: POST /HttpService/Emit with Klustron's node_mgr envelope. An agent
 * answers `status: success|failed` with `info`; anything else (no connection, a timeout, a body
 * that is not such a reply) means the agent could not be reached.
 */

export class AgentUnreachable extends Data.TaggedError("AgentUnreachable")<{
  readonly agent: string
  readonly reason: string
}> {}

/** The agent answered, and refused or failed the request; `info` says why. */
export class AgentFailed extends Data.TaggedError("AgentFailed")<{
  readonly agent: string
  readonly info: string
}> {}

export type AgentError = AgentUnreachable | AgentFailed

const AgentReplyBody = Schema.Struct({
  status: Schema.Literal("success", "failed"),
  info: Schema.optionalWith(Schema.Unknown, { default: () => null })
})
const decodeReply = Schema.decodeUnknownEither(AgentReplyBody)

export interface AgentCall {
  /** Klustron's cluster_mgr_request_id: the job id, or "" for pings. */
  readonly requestId?: string
  readonly timeoutMs: number
}

export interface AgentClientApi {
  /** Runs one node_mgr job on the agent at `agent` (host:port); succeeds with its `info`. */
  readonly call: (
    agent: string,
    jobType: string,
    paras: Record<string, string>,
    options: AgentCall
  ) => Effect.Effect<unknown, AgentError>
}

export class AgentClient extends Context.Tag("cluster_mgr/AgentClient")<AgentClient, AgentClientApi>() {}

const describeCause = (e: unknown): string => {
  const text = e instanceof Error ? e.message : String((e as { message?: unknown })?.message ?? e)
  return text.length > 200 ? `${text.slice(0, 200)}...` : text
}

export const make = Effect.gen(function* () {
  const client = yield* HttpClient.HttpClient
  const call: AgentClientApi["call"] = (agent, jobType, paras, options) =>
    HttpClientRequest.post(`http://${agent}/HttpService/Emit`).pipe(
      HttpClientRequest.bodyText(
        JSON.stringify({ cluster_mgr_request_id: options.requestId ?? "", task_spec_info: jobType, job_type: jobType, paras }),
        "application/json"
      ),
      client.execute,
      Effect.flatMap((res) => res.json),
      Effect.scoped,
      Effect.mapError((e): AgentError => new AgentUnreachable({ agent, reason: describeCause(e) })),
      Effect.timeoutFail({
        duration: Duration.millis(options.timeoutMs),
        onTimeout: (): AgentError => new AgentUnreachable({ agent, reason: `no answer within ${options.timeoutMs} ms` })
      }),
      Effect.flatMap((json): Effect.Effect<unknown, AgentError> => {
        const reply = decodeReply(json)
        if (reply._tag === "Left") return Effect.fail(new AgentUnreachable({ agent, reason: "the answer is not a node_mgr reply" }))
        if (reply.right.status === "success") return Effect.succeed(reply.right.info)
        const info = reply.right.info
        return Effect.fail(new AgentFailed({ agent, info: typeof info === "string" ? info : JSON.stringify(info) }))
      })
    )
  return { call } satisfies AgentClientApi
})

export const layer: Layer.Layer<AgentClient, never, HttpClient.HttpClient> = Layer.effect(AgentClient, make)
