// The wasm half of `lookalike-bench ann`: our browsing wasm (www/pkg, as
// the page loads it) against the wasm ANN libraries npm carries, in node,
// one thread, on the same files. Benchmark-only: never a dependency.
//
// Usage: node bench/wasm_ann.mjs INDEX.lkf BASE.npy QUERIES.npy METRIC K EF,EF,...
// Prints one JSON object per index, one a line:
// {"peer", "config", "build_s", "bytes", "runs": [{"param", "qps", "neighbors"}]}.
// Peers load from NODE_PATH's folder (`./build.sh bench ann` installs them);
// a peer that is missing or fails is reported on stderr and left out.
import fs from 'node:fs';
import path from 'node:path';
import { createRequire } from 'node:module';
import { fileURLToPath, pathToFileURL } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const [indexPath, basePath, queryPath, metric, kArg, sweepArg] = process.argv.slice(2);
const k = Number(kArg);
const sweep = sweepArg.split(',').map(Number);
const peersDir = process.env.NODE_PATH;
// LOOKALIKE_WASM_PEERS=0: ours only (the peers build in one wasm thread,
// minutes on a large set).
const withPeers = process.env.LOOKALIKE_WASM_PEERS !== '0';

function readNpy(file) {
  const npy = fs.readFileSync(file);
  const headerLength = npy.readUInt16LE(8);
  const shape = /'shape': \((\d+), (\d+)\)/.exec(npy.subarray(10, 10 + headerLength).toString());
  const [rows, cols] = [Number(shape[1]), Number(shape[2])];
  const data = npy.subarray(10 + headerLength);
  const all = new Float32Array(data.buffer.slice(data.byteOffset, data.byteOffset + data.length));
  return Array.from({ length: rows }, (_, i) => all.subarray(i * cols, (i + 1) * cols));
}

/// Times `search(query, ef)` over all queries (after a warm-up) for each ef.
function curve(queries, search) {
  return sweep.filter((ef) => ef >= k).map((ef) => {
    for (const q of queries.slice(0, 20)) search(q, ef);
    const started = performance.now();
    const neighbors = queries.map((q) => search(q, ef));
    const qps = queries.length / ((performance.now() - started) / 1000);
    return { param: ef, qps, neighbors };
  });
}

function report(peer, config, buildS, bytes, runs) {
  console.log(JSON.stringify({ peer, config, build_s: buildS, bytes, runs }));
}

const queries = readNpy(queryPath);

// Ours: the index file as the page fetches it, searched by the browsing wasm.
{
  const { initSync, LookalikeIndex } = await import(path.join(here, '../www/pkg/lookalike_web.js'));
  initSync({ module: fs.readFileSync(path.join(here, '../www/pkg/lookalike_web_bg.wasm')) });
  const bytes = fs.readFileSync(indexPath);
  const started = performance.now();
  const index = LookalikeIndex.fromBytes(bytes);
  const loadS = (performance.now() - started) / 1000;
  const runs = curve(queries, (q, ef) => index.queryVector(q, k, ef, undefined).map((h) => h.item));
  report('lookalike', `lookalike wasm (index loaded in ${loadS.toFixed(2)}s)`, 0, bytes.length, runs);
}

const base = readNpy(basePath);
const dims = base[0].length;

async function peer(name, run) {
  if (!withPeers) return;
  try {
    await run();
  } catch (error) {
    console.error(`  wasm ${name}: not run (${String(error).split('\n')[0]})`);
  }
}

// hnswlib-wasm: Emscripten built for the web; node needs a window and an
// IndexedDB (fake-indexeddb) for its file system.
await peer('hnswlib-wasm', async () => {
  const require = createRequire(path.join(peersDir, 'x.js'));
  globalThis.window ??= globalThis;
  await import(pathToFileURL(require.resolve('fake-indexeddb/auto')).href);
  const realFetch = globalThis.fetch;
  globalThis.fetch = async (url, options) =>
    String(url).startsWith('file:')
      ? new Response(fs.readFileSync(new URL(String(url))), { headers: { 'content-type': 'application/wasm' } })
      : realFetch(url, options);
  const entry = path.join(peersDir, 'hnswlib-wasm/dist/hnswlib.js');
  const { loadHnswlib } = await import(pathToFileURL(entry).href);
  const lib = await loadHnswlib();
  const index = new lib.HierarchicalNSW(metric === 'euclidean' ? 'l2' : 'cosine', dims, '');
  const started = performance.now();
  index.initIndex(base.length, 16, 200, 100);
  base.forEach((v, i) => index.addPoint(v, i, false));
  const buildS = (performance.now() - started) / 1000;
  const runs = curve(queries, (q, ef) => {
    index.setEfSearch(ef);
    return index.searchKnn(q, k, undefined).neighbors;
  });
  // Its saved form is hnswlib's (the same as natively): 4 bytes a value, links and labels.
  const bytes = base.length * (dims * 4 + 16 * 2 * 4 + 8 + 4);
  report('hnswlib-wasm', 'hnswlib-wasm 0.8.2 (M 16, ef_construction 200; ef)', buildS, bytes, runs);
});

// EdgeVec (Rust HNSW compiled to wasm): ef_search is fixed when the index
// is made, so it is built once per point of a short sweep.
await peer('edgevec', async () => {
  const entry = path.join(peersDir, 'edgevec/edgevec.js');
  const edgevec = await import(pathToFileURL(entry).href);
  await edgevec.default({ module_or_path: fs.readFileSync(path.join(peersDir, 'edgevec/edgevec_bg.wasm')) });
  const runs = [];
  let buildS = 0;
  for (const ef of sweep.filter((e) => [16, 48].includes(e))) {
    const config = new edgevec.EdgeVecConfig(dims);
    config.metric = metric === 'euclidean' ? 'l2' : 'cosine';
    config.m = 16;
    config.ef_construction = 200;
    config.ef_search = ef;
    const started = performance.now();
    const index = new edgevec.EdgeVec(config);
    const itemOf = [];
    base.forEach((v, i) => {
      itemOf[index.insert(v)] = i;
    });
    buildS = (performance.now() - started) / 1000;
    for (const q of queries.slice(0, 20)) index.search(q, k);
    const t0 = performance.now();
    const neighbors = queries.map((q) => index.search(q, k).map((hit) => itemOf[hit.id]));
    runs.push({ param: ef, qps: queries.length / ((performance.now() - t0) / 1000), neighbors });
    index.free?.();
  }
  const bytes = base.length * (dims * 4 + 16 * 2 * 4 + 8);
  report('edgevec', 'edgevec 0.9.0 (m 16, ef_construction 200; ef_search)', buildS, bytes, runs);
});
