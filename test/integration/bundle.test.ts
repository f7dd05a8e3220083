import * as fs from "node:fs"
import * as path from "node:path"
import { afterAll, afterEach, describe, expect, it } from "vitest"
import { bundleIsFresh } from "../../bin/launch.mjs"
import { Harness, killAllStarted, waitUp } from "./harness.js"

/**
 * What a node started from the bundle (dist/bin/, `npm run build`) loads: not the Node modules
 * that only the code scripts/bundle.mjs substitutes would load (ws: https, tls, zlib;
 * NodeContext's terminal: readline). Run only when the bins run the bundle (bin/launch.mjs's
 * own check): after an edit of src/ without a build they run the sources through tsx, which
 * load everything. `npm ci` builds, so CI always runs it.
 */

const bundleRuns = bundleIsFresh("dist/bin/cluster_mgr.mjs")

describe("the bundled node", () => {
  let h: Harness | undefined

  afterEach(async () => {
    await h?.cleanup()
    h = undefined
  })
  afterAll(killAllStarted)

  it.skipIf(!bundleRuns)("loads no https, tls, zlib or readline: what ws and NodeContext would bring", async () => {
    h = new Harness()
    const spec = await h.allocate("n1")
    h.writeCnf(spec, [spec.raft])
    const listFile = path.join(spec.dir, "modules.txt")
    const preload = path.join(spec.dir, "dump-modules.cjs")
    fs.writeFileSync(
      preload,
      `process.on("exit", () => require("node:fs").writeFileSync(${JSON.stringify(listFile)}, process.moduleLoadList.join("\\n")))\n`
    )
    const node = h.startNode(spec, ["--require", preload])
    await waitUp(node)
    expect(await h.sigterm(node)).toMatchObject({ code: 0 })
    const builtins = new Set(
      fs.readFileSync(listFile, "utf8").split("\n").filter((l) => l.startsWith("NativeModule ")).map((l) => l.slice("NativeModule ".length))
    )
    // The list is the real one: the node served HTTP over net, and RaftLog.ts imports worker_threads.
    expect(builtins).toContain("http")
    expect(builtins).toContain("net")
    expect(builtins).toContain("worker_threads")
    for (const absent of ["https", "tls", "zlib", "readline"]) expect(builtins, absent).not.toContain(absent)
  })
})
