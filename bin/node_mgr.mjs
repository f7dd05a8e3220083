#!/usr/bin/env node
// The node_mgr agent. Like bin/cluster_mgr.mjs: runs the compiled build (dist/agent/cli.js, made
// by `npm run build`) when it exists and is at least as new as every source file, otherwise the
// TypeScript sources through tsx, so an edited tree never runs stale code.
import { existsSync, readdirSync, statSync } from "node:fs"
import { fileURLToPath } from "node:url"

const root = fileURLToPath(new URL("..", import.meta.url))
const stamp = `${root}dist/.built`
const built = `${root}dist/agent/cli.js`

const newestMtimeMs = (dir) => {
  let newest = 0
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = `${dir}/${entry.name}`
    newest = Math.max(newest, entry.isDirectory() ? newestMtimeMs(path) : statSync(path).mtimeMs)
  }
  return newest
}

const fresh = existsSync(stamp) && existsSync(built) && statSync(stamp).mtimeMs >= newestMtimeMs(`${root}src`)
if (fresh) {
  await import("../dist/agent/cli.js")
} else {
  const { register } = await import("tsx/esm/api")
  register()
  await import("../src/agent/cli.ts")
}
