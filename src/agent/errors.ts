import { Data } from "effect"

/** A job that cannot be done: its message becomes the reply's `info` (status failed). */
export class JobError extends Data.TaggedError("JobError")<{ readonly message: string }> {}

/** A start-up problem an operator must fix; the CLI prints the message and exits with code 2. */
export class AgentStartupError extends Data.TaggedError("AgentStartupError")<{ readonly message: string }> {}

/** The state file could not be written: the change it carried did not happen. */
export class StateWriteError extends Data.TaggedError("StateWriteError")<{ readonly message: string }> {}

export const errnoText = (e: unknown): string =>
  (e as NodeJS.ErrnoException)?.code ?? (e instanceof Error ? e.message : String(e))
