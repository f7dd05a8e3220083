import { Context, Effect, Layer } from "effect"
import * as fs from "node:fs"
import * as path from "node:path"
import type { AgentConfig } from "./config.js"
import { errnoText, JobError } from "./errors.js"
import { Instances, type InstancesApi } from "./Instances.js"
import type { AgentJob, PathsSpaceInfo, PingInfo } from "./protocol.js"
import { ackReports } from "./state.js"
import { StateStore, type StateStoreApi } from "./StateStore.js"

/** Runs one decoded job; succeeds with the reply's `info`, fails with a JobError saying why. */
export interface JobsApi {
  readonly run: (job: AgentJob) => Effect.Effect<unknown, JobError>
}

export class Jobs extends Context.Tag("node_mgr/Jobs")<Jobs, JobsApi>() {}

/** Is `p` the root itself or below it (both already resolved)? */
export const isUnder = (p: string, root: string): boolean => p === root || p.startsWith(root.endsWith("/") ? root : root + "/")

const realpath = (p: string): string | undefined => {
  try {
    return fs.realpathSync(p)
  } catch {
    return undefined
  }
}

/**
 * Space of each path, which must be below a configured root (storage_data_root,
 * computer_data_root, node_mgr_tmp_data_path) once symbolic links are resolved.
 */
const pathsSpace = (config: AgentConfig, paths: ReadonlyArray<string>): Effect.Effect<PathsSpaceInfo, JobError> =>
  Effect.suspend(() => {
    const roots = [config.storage_data_root, config.computer_data_root, config.node_mgr_tmp_data_path]
    const realRoots = roots.flatMap((r) => realpath(r) ?? [])
    const out: Array<PathsSpaceInfo["paths"][number]> = []
    for (const p of paths) {
      const normal = path.resolve(p)
      if (!roots.some((r) => isUnder(normal, r))) {
        return Effect.fail(new JobError({ message: `path ${p} is not under a configured root (${roots.join(", ")})` }))
      }
      const real = realpath(normal)
      if (real === undefined) return Effect.fail(new JobError({ message: `path ${p} does not exist` }))
      if (!realRoots.some((r) => isUnder(real, r))) {
        return Effect.fail(new JobError({ message: `path ${p} leads outside the configured roots (to ${real})` }))
      }
      try {
        const s = fs.statfsSync(real)
        out.push({ path: p, total_bytes: s.blocks * s.bsize, free_bytes: s.bavail * s.bsize })
      } catch (e) {
        return Effect.fail(new JobError({ message: `cannot read the space of ${p}: ${errnoText(e)}` }))
      }
    }
    return Effect.succeed({ paths: out })
  })

export const make = (config: AgentConfig, version: string) =>
  Effect.gen(function* () {
    const instances: InstancesApi = yield* Instances
    const store: StateStoreApi = yield* StateStore

    const inRange = (port: number) =>
      port >= config.portRange.low && port <= config.portRange.high
        ? Effect.void
        : Effect.fail(
            new JobError({ message: `port ${port} is outside instance_port_range ${config.portRange.low}-${config.portRange.high}` })
          )

    const ping = (ack: number | undefined): Effect.Effect<PingInfo, JobError> =>
      Effect.gen(function* () {
        const state =
          ack === undefined
            ? yield* store.get
            : yield* store
                .update((s) => ackReports(s, ack))
                .pipe(Effect.mapError((e) => new JobError({ message: `cannot acknowledge reports: ${e.message}` })))
        return {
          node_mgr: version,
          hostaddr: config.local_ip,
          port: config.brpc_http_port,
          instances: yield* instances.list,
          reports: state.reports
        }
      })

    const run = (job: AgentJob): Effect.Effect<unknown, JobError> => {
      switch (job._tag) {
        case "ping_pong":
          return ping(job.ack_report_seq)
        case "list_instances":
          return Effect.map(instances.list, (list) => ({ instances: list }))
        case "check_port_idle":
          return Effect.zipRight(
            inRange(job.port),
            Effect.map(instances.portIdle(job.port), (idle) => ({ port: job.port, idle }))
          )
        case "get_paths_space":
          return pathsSpace(config, job.paths)
        case "install_storage":
          return instances.install("storage", job.port, { bufferPoolSize: job.innodb_buffer_pool_size })
        case "install_computer":
          return instances.install("computer", job.port, {})
        case "delete_storage":
          return instances.remove("storage", job.port)
        case "delete_computer":
          return instances.remove("computer", job.port)
        case "control_instance": {
          if (job.kind !== undefined && job.type !== undefined && job.kind !== job.type) {
            return Effect.fail(new JobError({ message: "paras.kind and paras.type disagree" }))
          }
          return instances.control(job.port, job.control, job.kind ?? job.type)
        }
        case "set_replica":
          return instances.setReplica(job.port, job.primary_host, job.primary_port)
        case "promote_replica":
          return instances.promote(job.port)
      }
    }

    return { run } satisfies JobsApi
  })

export const layer = (config: AgentConfig, version: string): Layer.Layer<Jobs, never, Instances | StateStore> =>
  Layer.effect(Jobs, make(config, version))
