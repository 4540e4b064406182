// Times detection of one photo through the wasm build on the CPU backend
// (Flex, SIMD128), as the page's worker runs it for a shopper's photo.
// Usage: node bench/wasm_detect.mjs MODELS_DIR EMBEDDER.bpk PHOTO [RUNS]
// Prints medians as JSON: ms_parse (the garment parser alone, from the
// decoded photo to its items), ms_detect (the parser with the person
// detector, as the page runs it), ms_cut_embed (cutting out and embedding
// the best item), ms_composed (the composed NanoDet + MoveNet detector it
// replaced), the photo's size and the number of items.
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const { initSync, LookalikePhoto, loadDetector, loadEmbedder } = await import(path.join(here, '../www/pkg/lookalike_web_models.js'));
initSync({ module: fs.readFileSync(path.join(here, '../www/pkg/lookalike_web_models_bg.wasm')) });

const [models, embedderPath, photoPath, runsArg] = process.argv.slice(2);
const read = (name) => fs.readFileSync(path.join(models, name));
const embedder = await loadEmbedder(fs.readFileSync(embedderPath), 'cpu');
const objects = () => [read('nanodet.json'), read('nanodet.bin')];
const parsing = await loadDetector(...objects(), undefined, undefined, undefined, 'cpu');
parsing.useParser(embedder, read('parser.bpk'));
const parserOnly = await loadDetector(undefined, undefined, undefined, undefined, undefined, 'cpu');
parserOnly.useParser(embedder, read('parser.bpk'));
const composed = await loadDetector(...objects(), read('movenet-lightning.json'), read('movenet-lightning.bin'), undefined, 'cpu');
const bytes = fs.readFileSync(photoPath);
const photo = LookalikePhoto.decode(bytes);

async function time(fn) {
  const started = performance.now();
  const out = await fn();
  return [performance.now() - started, out];
}

async function once() {
  const [detect, items] = await time(() => parsing.detect(photo));
  const [cutEmbed] = await time(async () => {
    if (!items.length) return;
    const item = parsing.cutOut(photo, 0);
    await embedder.describe(item);
    item.free();
  });
  const [parse] = await time(() => parserOnly.detect(photo));
  const [composedMs] = await time(() => composed.detect(photo));
  return { detect, parse, cutEmbed, composed: composedMs, items: items.length };
}

await once(); // warm-up: first-use allocations
const runs = [];
for (let i = 0; i < Number(runsArg || 5); i++) runs.push(await once());
const median = (key) => runs.map((r) => r[key]).sort((a, b) => a - b)[Math.floor(runs.length / 2)];
console.log(JSON.stringify({
  width: photo.width, height: photo.height,
  ms_parse: median('parse'), ms_detect: median('detect'), ms_cut_embed: median('cutEmbed'),
  ms_composed: median('composed'), items: runs[0].items,
}));
