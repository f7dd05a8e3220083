// @types/better-sqlite3 is not installed (and package.json is fixed), so this declares the
// small part of better-sqlite3 12 that src/storage uses. Extend it here when using more.
declare module "better-sqlite3" {
  namespace Database {
    interface Options {
      readonly readonly?: boolean
      readonly fileMustExist?: boolean
      /** Milliseconds to wait on a locked database (sets busy_timeout). */
      readonly timeout?: number
    }

    interface RunResult {
      readonly changes: number
      readonly lastInsertRowid: number | bigint
    }

    /** A prepared statement; `P` are its positional parameters, `R` a result row. */
    interface Statement<P extends ReadonlyArray<unknown> = ReadonlyArray<unknown>, R = unknown> {
      run(...params: P): RunResult
      get(...params: P): R | undefined
      all(...params: P): Array<R>
    }

    /** A function wrapped in BEGIN/COMMIT (ROLLBACK if it throws); nested calls use savepoints. */
    interface Transaction<F extends (...args: Array<any>) => unknown> {
      (...args: Parameters<F>): ReturnType<F>
      deferred(...args: Parameters<F>): ReturnType<F>
      immediate(...args: Parameters<F>): ReturnType<F>
      exclusive(...args: Parameters<F>): ReturnType<F>
    }

    interface PragmaOptions {
      /** Return the first column of the first row instead of an array of rows. */
      readonly simple?: boolean
    }
  }

  class Database {
    constructor(filename: string, options?: Database.Options)
    readonly open: boolean
    readonly inTransaction: boolean
    readonly name: string
    readonly memory: boolean
    prepare<P extends ReadonlyArray<unknown> = ReadonlyArray<unknown>, R = unknown>(
      source: string
    ): Database.Statement<P, R>
    exec(source: string): this
    pragma(source: string, options?: Database.PragmaOptions): unknown
    transaction<F extends (...args: Array<any>) => unknown>(fn: F): Database.Transaction<F>
    close(): this
  }

  export = Database
}
