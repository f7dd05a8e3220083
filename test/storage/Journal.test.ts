import { describe, expect, it } from "@effect/vitest"
import Database from "better-sqlite3"
import { createHash } from "node:crypto"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { genesisHash, Journal, type JournalInput, rowHash } from "../../src/storage/Journal.js"
import { journalCheckpointPages, pageCacheKiB } from "../../src/storage/sqliteSettings.js"
import { accepted } from "../support/jobEvents.js"

const file = () => path.join(fs.mkdtempSync(path.join(os.tmpdir(), "cm-journal-")), "journal.db")
const image = JSON.stringify({ pad: "x".repeat(500_000) })
const rowsFrom = (first: number, count: number): Array<JournalInput> =>
  Array.from({ length: count }, (_, i) => ({ event: accepted(first + i), logIndex: first + i, logTerm: 1, at: 1, userName: "u" }))

describe("Journal storage", () => {
  it("a row's hash is SHA-256 of the previous hash and its fields, one per line (the chain audit checks)", () => {
    const row = { seq: 7, logIndex: 12, logTerm: 3, at: 1732636800000, jobId: null, userName: "ü", type: "LeaderElected", event: "{\"v\":1}" }
    const text = `${genesisHash}\n7\n12\n3\n1732636800000\n\nü\nLeaderElected\n{"v":1}`
    expect(rowHash(genesisHash, row)).toBe(createHash("sha256").update(text).digest("hex"))
  })


  it("runs in WAL mode with synchronous=NORMAL and SQLite's page cache, not better-sqlite3's 16 MB", () => {
    const journal = Journal.open(file())
    expect(journal.pragmas()).toMatchObject({ journalMode: "wal", synchronous: 1, cacheKiB: pageCacheKiB, walAutocheckpoint: journalCheckpointPages })
    journal.sync()
    expect(journal.pragmas().synchronous).toBe(1)
    journal.close()
  })

  it("an append writes its rows and the applied index, not the base image (sm_base)", () => {
    const f = file()
    const journal = Journal.open(f)
    journal.installBase({ seq: 0, hash: genesisHash, state: image }, 0)
    const db = new Database(f)
    db.pragma("wal_checkpoint(TRUNCATE)")
    for (let i = 0; i < 10; i++) journal.append(rowsFrom(i + 1, 1), i + 1)
    // About 125 overflow pages of 4 KB hold the image: rewritten with the applied index, ten
    // appends would add about 5 MB to the WAL.
    expect(fs.statSync(`${f}-wal`).size).toBeLessThan(200_000)
    expect(db.prepare("SELECT base_state FROM sm_state").get()).toEqual({ base_state: null })
    db.close()
    journal.close()
    const reopened = Journal.open(f)
    expect(reopened.journalBase().state).toBe(image)
    expect(reopened.appliedIndex()).toBe(10)
  })

  it("a journal of schema 3 keeps its base image when it is migrated", () => {
    const f = file()
    Journal.open(f).close()
    // Back to schema 3: the image in sm_state, no sm_base, no history_gap.
    const db = new Database(f)
    db.exec("DROP TABLE sm_base")
    db.exec("DROP TABLE history_gap")
    db.prepare("UPDATE sm_state SET base_seq = 7, base_hash = ?, base_state = ?, applied_index = 9").run("ab".repeat(32), image)
    db.prepare("UPDATE schema_version SET version = 3 WHERE component = 'journal'").run()
    db.close()
    const read = Journal.openReadOnly(f)
    expect(read.journalBase()).toEqual({ seq: 7, hash: "ab".repeat(32), state: image })
    read.close()
    const journal = Journal.open(f)
    expect(journal.journalBase()).toEqual({ seq: 7, hash: "ab".repeat(32), state: image })
    expect(journal.appliedIndex()).toBe(9)
  })
})
