#!/usr/bin/env node
// cluster_mgr: the bundle when it is fresh, else the sources (bin/launch.mjs).
import { launch } from "./launch.mjs"

await launch("dist/bin/cluster_mgr.mjs", "src/cli.ts")
