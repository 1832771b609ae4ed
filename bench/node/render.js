// The reference MJML renderer, timed in one Node process: `node render.js INPUT.json`.
// INPUT: {"warmup": W, "batches": B, "per_batch": M, "sources": {"name": "<mjml>...</mjml>", ...}}
// Prints JSON {"versions": {...}, "results": {"name": {"batch_ms": [per-render ms of each batch], "html_bytes": n}}}.
// The options mirror the Python call mjml.mjml2html(source, fonts={}, disable_comments=True).
"use strict";
const fs = require("fs");
const path = require("path");
const mjml2html = require("mjml");

async function renderOnce(source) {
  const out = await mjml2html(source, { fonts: {}, keepComments: false });
  if (out.errors && out.errors.length && !out.html) throw new Error(JSON.stringify(out.errors));
  return out.html;
}

async function main() {
  const input = JSON.parse(fs.readFileSync(process.argv[2], "utf8"));
  const results = {};
  for (const [name, source] of Object.entries(input.sources)) {
    let html = "";
    for (let i = 0; i < input.warmup; i++) html = await renderOnce(source);
    const batchMs = [];
    for (let b = 0; b < input.batches; b++) {
      const start = process.hrtime.bigint();
      for (let i = 0; i < input.per_batch; i++) await renderOnce(source);
      batchMs.push(Number(process.hrtime.bigint() - start) / 1e6 / input.per_batch);
    }
    results[name] = { batch_ms: batchMs, html_bytes: Buffer.byteLength(html, "utf8") };
  }
  const mjmlVersion = JSON.parse(fs.readFileSync(path.join(__dirname, "node_modules", "mjml", "package.json"))).version;
  process.stdout.write(JSON.stringify({ versions: { node: process.version, mjml: mjmlVersion }, results }));
}

main().catch((err) => { console.error(err); process.exit(1); });
