#!/usr/bin/env node
// The node_mgr agent: the bundle when it is fresh, else the sources (bin/launch.mjs).
import { launch } from "./launch.mjs"

await launch("dist/bin/node_mgr.mjs", "src/agent/cli.ts")
