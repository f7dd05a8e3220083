import { afterEach, describe, expect, it } from "@effect/vitest"
import Database from "better-sqlite3"
import { PersistenceError, StorageInvariantViolation } from "../../src/storage/PersistenceError.js"
import { decodePayload, encodePayload, encodePayloadBySchema } from "../../src/storage/codec.js"
import { pageCacheKiB } from "../../src/storage/sqliteSettings.js"
import { openRaftStorage, type RaftStorage } from "../../src/storage/RaftStorage.js"
import { command, commands, config, CRASH_BATCH, fresh, makeTempDirs, nothing, writeUntilKilled } from "./fixtures.js"

const temp = makeTempDirs()
const opened: Array<RaftStorage> = []
afterEach(() => {
  for (const s of opened.splice(0)) s.close()
  temp.cleanup()
})

const open = (file = temp.dbPath(), options?: Parameters<typeof openRaftStorage>[1]) => {
  const storage = openRaftStorage(file, options)
  opened.push(storage)
  return storage
}

const bootstrapped = (file?: string) => {
  const storage = open(file)
  storage.bootstrap(fresh)
  return storage
}

describe("payload codec", () => {
  it("a payload written as it is equals its Schema encoding, and decodes back, for every kind", () => {
    const payloads = [
      { _tag: "Command", data: "{\"_tag\":\"SubmitJob\"} héllo \u0000 ☃" },
      { _tag: "Noop" },
      { _tag: "Config", config: { voters: ["a:1", "b:1"], outgoing: ["c:1"], learners: [] } }
    ] as const
    for (const payload of payloads) {
      expect(encodePayload(payload)).toBe(encodePayloadBySchema(payload))
      expect(decodePayload(encodePayload(payload), 1)).toEqual(payload)
    }
  })
})

describe("bootstrap and load", () => {
  it("a store never bootstrapped loads as undefined", () => {
    expect(open().load()).toBeUndefined()
  })

  it("loads exactly what was bootstrapped", () => {
    const storage = open()
    const noop = { index: 2, term: 1, payload: { _tag: "Noop" as const } }
    const persisted = { ...fresh, entries: [command(1, 1), noop] }
    storage.bootstrap(persisted)
    expect(storage.load()).toEqual(persisted)
  })

  it("refuses a second bootstrap, even after a reopen", () => {
    const file = temp.dbPath()
    bootstrapped(file).close()
    expect(() => open(file).bootstrap(fresh)).toThrow(PersistenceError)
  })

  it("works the same on :memory:", () => {
    const storage = bootstrapped(":memory:")
    storage.persist({ ...nothing, entries: commands(1, 3, 1) })
    expect(storage.load()?.entries).toEqual(commands(1, 3, 1))
  })

  it("refuses to persist before bootstrap", () => {
    const storage = open()
    expect(() => storage.persist({ ...nothing, entries: [command(1, 1)] })).toThrow(PersistenceError)
  })
})

describe("restart", () => {
  it("a reopened file loads the hard state and entries persisted before close", () => {
    const file = temp.dbPath()
    const first = bootstrapped(file)
    const hardState1 = { term: 1, vote: "n1:1", commit: 3 }
    first.persist({ ...nothing, entries: commands(1, 5, 1), hardState: hardState1 })
    const hardState2 = { term: 2, vote: "n2:1", commit: 7 }
    first.persist({ ...nothing, entries: commands(6, 9, 2), hardState: hardState2 })
    first.close()
    const loaded = open(file).load()
    expect(loaded?.hardState).toEqual(hardState2)
    expect(loaded?.entries).toEqual([...commands(1, 5, 1), ...commands(6, 9, 2)])
    expect(loaded?.snapshot).toEqual(fresh.snapshot)
  })

  it("reopening keeps the schema and refuses one written by a newer build", () => {
    const file = temp.dbPath()
    bootstrapped(file).close()
    expect(open(file).load()).toEqual(fresh)
    opened.splice(0).forEach((s) => s.close())
    const raw = new Database(file)
    raw.prepare("UPDATE schema_version SET version = 99 WHERE component = 'raft'").run()
    raw.close()
    expect(() => open(file)).toThrow(/newer than this build/)
  })

  it("a database keeps the identity of the node that first opened it", () => {
    const file = temp.dbPath()
    open(file, { identity: { group: "g", node: "n1:1" } }).close()
    expect(() => open(file, { identity: { group: "g", node: "n2:1" } })).toThrow(PersistenceError)
    expect(open(file, { identity: { group: "g", node: "n1:1" } }).meta("node")).toBe("n1:1")
  })
})

describe("persist", () => {
  it("truncateFrom removes the conflicting suffix before the new entries are appended", () => {
    const storage = bootstrapped()
    storage.persist({ ...nothing, entries: commands(1, 6, 1) })
    storage.persist({ ...nothing, truncateFrom: 4, entries: commands(4, 5, 2) })
    expect(storage.load()?.entries).toEqual([...commands(1, 3, 1), ...commands(4, 5, 2)])
    expect(storage.lastIndex()).toBe(5)
  })

  it("compactTo drops only what a snapshot covers, which storing the snapshot already dropped", () => {
    // ready.ts: a stored snapshot replaces the log up to its index, and load() returns only
    // entries after the snapshot, so a valid compactTo never finds anything left to delete.
    const storage = bootstrapped()
    storage.persist({ ...nothing, entries: commands(1, 10, 1) })
    storage.persist({ ...nothing, compactTo: 1 })
    expect(storage.entries(0, 100)).toEqual(commands(1, 10, 1))
    const snapshot = { meta: { index: 6, term: 1, config }, data: "image@6" }
    storage.persist({ ...nothing, snapshot, compactTo: 7 })
    expect(storage.entries(0, 100)).toEqual(commands(7, 10, 1))
    expect(() => storage.persist({ ...nothing, compactTo: 8 })).toThrow(StorageInvariantViolation)
  })

  it("a snapshot from the leader replaces the log up to its index", () => {
    const storage = bootstrapped()
    storage.persist({ ...nothing, entries: commands(1, 4, 1) })
    const snapshot = { meta: { index: 20, term: 3, config }, data: "image@20" }
    storage.persist({ ...nothing, snapshot, hardState: { term: 3, vote: null, commit: 20 } })
    const hardState = { term: 3, vote: null, commit: 20 }
    expect(storage.load()).toEqual({ hardState, snapshot, entries: [] })
    expect(storage.lastIndex()).toBe(20)
    storage.persist({ ...nothing, entries: commands(21, 22, 3) })
    expect(storage.load()?.entries).toEqual(commands(21, 22, 3))
  })

  it("a snapshot keeps the entries after it unless truncateFrom says they do not follow", () => {
    const storage = bootstrapped()
    storage.persist({ ...nothing, entries: commands(1, 8, 1) })
    const at5 = { meta: { index: 5, term: 1, config }, data: "image@5" }
    storage.persist({ ...nothing, snapshot: at5 })
    expect(storage.load()?.entries).toEqual(commands(6, 8, 1))
    const at7 = { meta: { index: 7, term: 2, config }, data: "image@7" }
    storage.persist({ ...nothing, snapshot: at7, truncateFrom: 8 })
    expect(storage.load()).toMatchObject({ snapshot: at7, entries: [] })
  })

  it("all steps of one Ready land in one transaction or none do", () => {
    const storage = bootstrapped()
    const before = { term: 1, vote: null, commit: 1 }
    storage.persist({ ...nothing, entries: commands(1, 3, 1), hardState: before })
    const broken = {
      ...nothing,
      truncateFrom: 2,
      entries: [command(2, 2), command(4, 2)],
      hardState: { term: 2, vote: null, commit: 2 }
    }
    expect(() => storage.persist(broken)).toThrow(StorageInvariantViolation)
    expect(storage.load()).toMatchObject({ hardState: before, entries: commands(1, 3, 1) })
  })

  it("rejects writes that would leave a log a restart could not load", () => {
    const storage = bootstrapped()
    storage.persist({ ...nothing, entries: commands(1, 3, 2) })
    const attempts = [
      { ...nothing, entries: [command(3, 2)] },
      { ...nothing, entries: [command(5, 2)] },
      { ...nothing, entries: [command(4, 1)] },
      { ...nothing, compactTo: 2 },
      { ...nothing, hardState: { term: 2, vote: null, commit: 4 } }
    ]
    for (const attempt of attempts) {
      expect(() => storage.persist(attempt)).toThrow(StorageInvariantViolation)
    }
    expect(storage.entries(0, 100)).toEqual(commands(1, 3, 2))
  })

  it("reads a half-open range of entries", () => {
    const storage = bootstrapped()
    storage.persist({ ...nothing, entries: commands(1, 10, 1) })
    expect(storage.entries(3, 6)).toEqual(commands(3, 5, 1))
  })

  it("reports a row that does not decode as corruption", () => {
    const file = temp.dbPath()
    const storage = bootstrapped(file)
    storage.persist({ ...nothing, entries: commands(1, 2, 1) })
    storage.close()
    const raw = new Database(file)
    raw.prepare("UPDATE raft_log SET payload = ? WHERE idx = 2").run(`{"_tag":"Bogus"}`)
    raw.close()
    expect(() => open(file).load()).toThrow(/corrupt payload of entry 2/)
  })
})

describe("durability settings", () => {
  it("runs in WAL mode with synchronous=FULL, foreign keys, a busy timeout and SQLite's page cache", () => {
    const file = temp.dbPath()
    const storage = open(file, { busyTimeoutMs: 1234 })
    expect(storage.pragmas()).toEqual({
      journalMode: "wal",
      synchronous: 2,
      foreignKeys: true,
      busyTimeoutMs: 1234,
      cacheKiB: pageCacheKiB,
      walAutocheckpoint: 1000
    })
    // WAL is a property of the file: another connection sees it too.
    const other = new Database(file, { readonly: true })
    expect(other.pragma("journal_mode", { simple: true })).toBe("wal")
    other.close()
  })
})

describe("crash", () => {
  it("everything acknowledged before a SIGKILL is there after reopening, whole batches only", async () => {
    const file = temp.dbPath()
    const acked = await writeUntilKilled("crashWriter.ts", file, 200)
    const loaded = open(file).load()
    const last = loaded?.entries.at(-1)?.index ?? 0
    expect(last).toBeGreaterThanOrEqual(acked)
    expect(last % CRASH_BATCH).toBe(0)
    expect(loaded?.entries).toEqual(commands(1, last, 1))
    expect(loaded?.hardState).toEqual({ term: 1, vote: "n1:1", commit: last })
  })
})
