import type Database from "better-sqlite3"
import { PersistenceError } from "./PersistenceError.js"

/** One schema step; `version`s count up from 1 without gaps. */
export interface Migration {
  readonly version: number
  readonly statements: ReadonlyArray<string>
}

/**
 * `schema_version` is keyed by component so other stores (the event journal) can keep their
 * own migration lists in the same database file without stepping on each other.
 */
const createVersionTable = `CREATE TABLE IF NOT EXISTS schema_version (
  component TEXT PRIMARY KEY,
  version INTEGER NOT NULL
) STRICT`

/**
 * Brings `component`'s schema up to the last migration, all in one transaction so a crash
 * leaves either the old or the new schema. Returns the resulting version.
 */
export const migrate = (
  db: Database,
  component: string,
  migrations: ReadonlyArray<Migration>
): number =>
  db.transaction(() => {
    db.exec(createVersionTable)
    const current = currentVersion(db, component)
    const latest = migrations.length === 0 ? 0 : migrations[migrations.length - 1].version
    if (current > latest) {
      // Written by a newer build: running on would misread its tables.
      throw new PersistenceError({
        operation: "migrate",
        reason: `${component} schema version ${current} is newer than this build's ${latest}`
      })
    }
    for (const m of migrations) if (m.version > current) apply(db, component, m)
    return latest
  }).immediate()

const currentVersion = (db: Database, component: string): number =>
  db
    .prepare<[string], { version: number }>(
      "SELECT version FROM schema_version WHERE component = ?"
    )
    .get(component)?.version ?? 0

const apply = (db: Database, component: string, m: Migration): void => {
  for (const statement of m.statements) db.exec(statement)
  db.prepare(
    `INSERT INTO schema_version (component, version) VALUES (?, ?)
     ON CONFLICT (component) DO UPDATE SET version = excluded.version`
  ).run(component, m.version)
}
