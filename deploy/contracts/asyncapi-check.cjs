// Parses an AsyncAPI document with the official parser (@asyncapi/parser, pinned in
// package-lock.json) and prints its diagnostics; exits 1 on any error-severity diagnostic.
//   node deploy/contracts/asyncapi-check.cjs docs/asyncapi.json
// check.sh installs the parser under .cache/contracts/ and points NODE_PATH at it.
"use strict";
const fs = require("node:fs");
const path = require("node:path");
const { Parser, DiagnosticSeverity } = require("@asyncapi/parser");

const SEVERITY = {
  [DiagnosticSeverity.Error]: "error",
  [DiagnosticSeverity.Warning]: "warning",
  [DiagnosticSeverity.Information]: "info",
  [DiagnosticSeverity.Hint]: "hint",
};

async function main() {
  const file = process.argv[2] || "docs/asyncapi.json";
  const source = fs.readFileSync(file, "utf8");
  const { document, diagnostics } = await new Parser().parse(source, { source: path.resolve(file) });
  const counts = { error: 0, warning: 0, info: 0, hint: 0 };
  for (const d of diagnostics) {
    const level = SEVERITY[d.severity] || "error";
    counts[level] += 1;
    const where = d.path && d.path.length ? d.path.join("/") : "(document)";
    console.log(`[asyncapi] ${level} ${d.code}: ${d.message} at ${where}`);
  }
  const version = require("@asyncapi/parser/package.json").version;
  const summary = `${counts.error} errors, ${counts.warning} warnings, ${counts.info} infos, ${counts.hint} hints`;
  if (document === undefined || counts.error > 0) {
    console.log(`[asyncapi] ${file}: INVALID (@asyncapi/parser ${version}: ${summary})`);
    process.exit(1);
  }
  const channels = document.channels().length;
  const operations = document.operations().length;
  const messages = document.allMessages().length;
  const replies = document.operations().filter((o) => o.reply() !== undefined).length;
  console.log(
    `[asyncapi] ${file}: valid AsyncAPI ${document.version()} (@asyncapi/parser ${version}: ${summary}; ` +
      `${channels} channels, ${operations} operations, ${replies} with replies, ${messages} messages)`,
  );
}

main().catch((err) => {
  console.error(err && err.stack ? err.stack : err);
  process.exit(1);
});
