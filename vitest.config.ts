import { defineConfig } from "vitest/config"

export default defineConfig({
  test: {
    include: ["test/**/*.test.ts"],
    testTimeout: 60_000,
    hookTimeout: 60_000,
    pool: "forks",
    // One file at a time: the real-process suites (integration, chaos) are timing-sensitive, and
    // on 2 cores parallel files starved vitest's own worker RPC into timeouts.
    fileParallelism: false,
    reporters: ["default"]
  }
})
