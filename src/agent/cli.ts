import * as fs from "node:fs"
import { runDaemon } from "../daemon.js"
import { agentLayer } from "./Agent.js"
import { agentAddress, parseAgentConfig } from "./config.js"
import { AgentStartupError } from "./errors.js"

/**
 * `node_mgr <node_mgr.cnf>`: the per-machine agent, in the foreground. Exit codes: 0 stopped by
 * SIGTERM/SIGINT (instances keep running), 2 bad configuration or start-up failure, 1 crash.
 */
const usage = "usage: node_mgr <path/to/node_mgr.cnf>"

const versionOf = (): string => {
  try {
    const pkg = JSON.parse(fs.readFileSync(new URL("../../package.json", import.meta.url), "utf8")) as { version?: unknown }
    return typeof pkg.version === "string" ? pkg.version : "unknown"
  } catch {
    return "unknown"
  }
}

const runAgent = (cnfPath: string) =>
  runDaemon(
    {
      name: "node_mgr",
      parse: (text) => parseAgentConfig(text, cnfPath, process.cwd()),
      logFile: (config) => config.log_file,
      layer: (config) => agentLayer(config, versionOf()),
      isStartupError: (e): e is AgentStartupError => e instanceof AgentStartupError,
      annotations: (config) => ({ agent: agentAddress(config) })
    },
    cnfPath
  )

const args = process.argv.slice(2)
if (args.length === 1 && args[0] !== "--help" && args[0] !== "-h") {
  runAgent(args[0])
} else {
  process.stdout.write(usage + "\n")
  process.exit(args.length === 1 ? 0 : 2)
}
