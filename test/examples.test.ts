import { describe, expect, it } from "@effect/vitest"
import { execFile } from "node:child_process"
import * as path from "node:path"
import { promisify } from "node:util"

const root = path.resolve(__dirname, "..")

describe("examples", () => {
  it("embedded-group runs a 3-node group in one program, and its job ends done", async () => {
    // execFile rejects unless the program exits with code 0.
    const { stdout } = await promisify(execFile)("node", ["--import", "tsx", "examples/embedded-group.ts"], { cwd: root, timeout: 60_000 })
    expect(stdout).toMatch(/leader: node\d:1/)
    expect(stdout).toMatch(/node\d:1 applied JobDone/)
    expect(stdout).toMatch(/^job 1 done: \{.*"task_type":"transfer_leader"/m)
  })
})
