// Types of bin/launch.mjs, for the TypeScript that imports it (test/integration/bundle.test.ts).
/** Whether the bins run `bundle` (a path from the package root) rather than the sources. */
export declare const bundleIsFresh: (bundle: string) => boolean
/** Runs `bundle` when it is fresh, else `source` through tsx (paths from the package root). */
export declare const launch: (bundle: string, source: string) => Promise<void>
