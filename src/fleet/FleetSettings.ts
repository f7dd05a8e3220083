import { Context } from "effect"
import type { Config } from "../domain/config.js"

/** How the leader watches and drives the fleet (cluster_mgr.cnf: machine_*, node_mgr_*). */
export interface FleetSettingsApi {
  readonly pingIntervalMs: number
  readonly deadAfterMisses: number
  /** Longest wait for one agent request of a job. */
  readonly requestTimeoutMs: number
}

export class FleetSettings extends Context.Tag("cluster_mgr/FleetSettings")<FleetSettings, FleetSettingsApi>() {}

export const fleetSettingsOf = (c: Config): FleetSettingsApi => ({
  pingIntervalMs: c.machine_ping_interval_ms,
  deadAfterMisses: c.machine_dead_after_misses,
  requestTimeoutMs: c.node_mgr_request_timeout_ms
})

export const defaultFleetSettings: FleetSettingsApi = { pingIntervalMs: 5000, deadAfterMisses: 3, requestTimeoutMs: 120_000 }
