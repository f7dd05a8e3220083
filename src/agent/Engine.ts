import type { Effect } from "effect"
import type { JobError } from "./errors.js"
import type { Kind } from "./protocol.js"
import type { InstanceRecord } from "./state.js"

/** What an install may ask for beyond the port. */
export interface InstallOptions {
  readonly bufferPoolSize?: string
}

/**
 * One kind of database (MariaDB for storage, PostgreSQL for computer): how its instances are
 * made, started, probed and found. The Instances service decides when; an Engine only knows how.
 */
export interface Engine {
  readonly kind: Kind
  /** `<root>/<port>` holds each instance. */
  readonly root: string
  /** Makes `dir` (a new, empty instance directory) usable by the database's OS user. */
  readonly prepareDir: (dir: string) => Effect.Effect<void, JobError>
  /** Writes the configuration and initialises the data directory; nothing runs afterwards. */
  readonly initialize: (dir: string, port: number, options: InstallOptions) => Effect.Effect<void, JobError>
  /** Once, after the first start: accounts and grants. */
  readonly setup: (record: InstanceRecord) => Effect.Effect<void, JobError>
  /** Starts the server detached; its pid. */
  readonly spawn: (record: InstanceRecord) => Effect.Effect<number, JobError>
  /** Did `select 1` answer (bounded time)? */
  readonly probe: (record: InstanceRecord) => Effect.Effect<boolean>
  /** The instance's live server process: the recorded pid, else its pid file's, if either is it. */
  readonly findPid: (record: InstanceRecord) => number | null
  /** The signal for a clean, prompt shutdown. */
  readonly stopSignal: NodeJS.Signals
  /** Kills what a dead server left behind (PostgreSQL backends of a killed postmaster). */
  readonly reapOrphans: (record: InstanceRecord) => Effect.Effect<void>
  /** The end of the server's log, for failure replies. */
  readonly logTail: (dir: string) => string
}
