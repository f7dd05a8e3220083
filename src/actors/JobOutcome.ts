/** The outcome of one run of a job on this leader. */
export type Outcome =
  | { readonly _tag: "Done"; readonly memo: Record<string, unknown> }
  | { readonly _tag: "Failed"; readonly memo: Record<string, unknown>; readonly code: string; readonly info: string }
  /** Leadership moved on: the next leader resumes the job. */
  | { readonly _tag: "Handover" }

/** error_code of a job that ran and failed (docs/http-api.md). */
export const jobFailedCode = "70007"

export const done = (memo: Record<string, unknown>): Outcome => ({ _tag: "Done", memo })
export const failed = (memo: Record<string, unknown>, info: string): Outcome => ({ _tag: "Failed", memo, code: jobFailedCode, info })
