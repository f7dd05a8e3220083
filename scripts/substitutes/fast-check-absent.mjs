// Bundled in place of `fast-check` where effect imports it (scripts/bundle.mjs). effect's Schema
// and Arbitrary reach fast-check only to generate arbitrary values (property tests), which no
// bin does, yet the bundle kept 70 KB of it (with pure-rand) to compile and run at every start.
// The tests import effect from node_modules, with the real fast-check.
export {}
