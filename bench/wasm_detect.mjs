// Times detection + embedding of one photo through the wasm build on the
// CPU backend (Flex, SIMD128), as the page runs them for a shopper's photo.
// Usage: node bench/wasm_detect.mjs MODELS_DIR EMBEDDER.bpk PHOTO [RUNS]
// Prints medians as JSON: ms_detect, ms_first (detection + embedding the best
// item: what the page does before showing results), ms_embed (every item),
// ms_total, and the number of items.
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const { initSync, LookalikePhoto, loadDetector, loadEmbedder } = await import(path.join(here, '../www/pkg/lookalike_web_models.js'));
initSync({ module: fs.readFileSync(path.join(here, '../www/pkg/lookalike_web_models_bg.wasm')) });

const [models, embedderPath, photoPath, runsArg] = process.argv.slice(2);
const read = (name) => fs.readFileSync(path.join(models, name));
const detector = await loadDetector(
  read('nanodet.json'), read('nanodet.bin'), read('movenet-lightning.json'), read('movenet-lightning.bin'), undefined, 'cpu');
const embedder = await loadEmbedder(fs.readFileSync(embedderPath), 'cpu');
const bytes = fs.readFileSync(photoPath);

async function once() {
  const started = performance.now();
  // Decoded once per photo, as the page's worker does.
  const photo = LookalikePhoto.decode(bytes);
  const items = await detector.detect(photo);
  const detected = performance.now();
  let first = detected;
  for (const item of items) {
    const b = item.bbox;
    await embedder.describe(photo, Math.floor(b.x0), Math.floor(b.y0), Math.ceil(b.x1 - b.x0), Math.ceil(b.y1 - b.y0));
    if (first === detected) first = performance.now();
  }
  const done = performance.now();
  photo.free();
  return { detect: detected - started, first: first - started, embed: done - detected, total: done - started, items: items.length };
}

await once(); // warm-up: first-use allocations
const runs = [];
for (let i = 0; i < Number(runsArg || 5); i++) runs.push(await once());
const median = (key) => runs.map((r) => r[key]).sort((a, b) => a - b)[Math.floor(runs.length / 2)];
console.log(JSON.stringify({ ms_detect: median('detect'), ms_first: median('first'), ms_embed: median('embed'), ms_total: median('total'), items: runs[0].items }));
