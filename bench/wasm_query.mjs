// Times queries by vector through the wasm build, as the page runs them.
// Usage: node bench/wasm_query.mjs INDEX.lkf QUERIES.npy K SEARCH_K
// Prints {"ms_per_query", "neighbors"} as JSON.
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const { initSync, LookalikeIndex } = await import(path.join(here, '../www/pkg/lookalike_web.js'));
initSync({ module: fs.readFileSync(path.join(here, '../www/pkg/lookalike_web_bg.wasm')) });

const [indexPath, queryPath, k, searchK] = process.argv.slice(2);
const index = LookalikeIndex.fromBytes(fs.readFileSync(indexPath));
const npy = fs.readFileSync(queryPath);
const headerLength = npy.readUInt16LE(8);
const shape = /'shape': \((\d+), (\d+)\)/.exec(npy.subarray(10, 10 + headerLength).toString());
const [rows, cols] = [Number(shape[1]), Number(shape[2])];
const data = npy.subarray(10 + headerLength);
const all = new Float32Array(data.buffer.slice(data.byteOffset, data.byteOffset + data.length));
const queries = Array.from({ length: rows }, (_, i) => all.subarray(i * cols, (i + 1) * cols));

// Warm up, then time.
for (const q of queries.slice(0, 10)) index.queryVector(q, Number(k), Number(searchK), undefined);
const started = performance.now();
const neighbors = queries.map((q) => index.queryVector(q, Number(k), Number(searchK), undefined).map((h) => h.item));
const ms = (performance.now() - started) / rows;
console.log(JSON.stringify({ ms_per_query: ms, neighbors }));
