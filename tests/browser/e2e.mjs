// End-to-end test of the built site in the three engines shoppers use, all
// Debian's (never a downloaded browser): Chromium on the CPU wasm backend
// (no WebGPU adapter) and on WebGPU (SwiftShader's software adapter),
// Firefox ESR and WebKitGTK on the CPU backend (neither offers an adapter).
// `engines.mjs` drives each; a check an engine cannot run is skipped by name.
//
// It builds a 295-product catalog from the shared fashion data with the
// native tool, serves it on loopback, and checks in the page that:
//   - clicking a watch shows look-alikes that are mostly watches (labels.csv);
//   - the wasm forest agrees with labels across every watch in the sample;
//   - a photo upload is embedded in the page, on the expected backend, and
//     the page's vector matches the native build's (cosine >= 0.999);
//   - colour weighed at query time (wasm API, the page's slider, the widget's
//     `weights` attribute) finds more products of the same colour;
//   - a hostile product name renders as text;
//   - the same sample built as a paged site (`build --vectors --layout
//     paged`) is read by byte range: a product's look-alikes as the native
//     tool gives them, in three rounds, from chunk files too, and a photo.
// Every search goes through the wasm module, so a broken wasm path fails here.
//
// Environment: LOOKALIKE_BIN (native tool), LOOKALIKE_DATA (shared data),
// LOOKALIKE_CACHE (scratch and artifacts); E2E_ENGINES (a comma-separated
// subset of chromium, chromium-webgpu, firefox, webkit) while developing.

import { launch } from './engines.mjs';
import { spawn, execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import os from 'node:os';

const BIN = process.env.LOOKALIKE_BIN;
const DATA = process.env.LOOKALIKE_DATA;
const CACHE = process.env.LOOKALIKE_CACHE || path.join(os.homedir(), '.cache/lookalike');
const ARTIFACTS = path.join(path.dirname(new URL(import.meta.url).pathname), 'artifacts');
const HOSTILE_ID = 'hostile-1';
const HOSTILE_NAME = '<img src=x onerror="window.__xss=1">';

const results = { passed: 0, failed: 0, skipped: 0 };
function check(name, ok, detail = '') {
  if (ok) results.passed++;
  else results.failed++;
  console.log(`${ok ? 'ok  ' : 'FAIL'} ${name}${detail ? ` (${detail})` : ''}`);
}
function skip(name, why) {
  results.skipped++;
  console.log(`skip ${name} (${why})`);
}

// A tiny CSV reader for labels.csv (quoted fields, commas in quotes).
function parseCsv(text) {
  const rows = [];
  let row = [], field = '', quoted = false;
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (quoted) {
      if (c === '"' && text[i + 1] === '"') { field += '"'; i++; }
      else if (c === '"') quoted = false;
      else field += c;
    } else if (c === '"') quoted = true;
    else if (c === ',') { row.push(field); field = ''; }
    else if (c === '\n') { row.push(field.replace(/\r$/, '')); rows.push(row); row = []; field = ''; }
    else field += c;
  }
  if (field || row.length) { row.push(field); rows.push(row); }
  const [header, ...body] = rows;
  return { header, records: body.filter((r) => r.length === header.length).map((r) => Object.fromEntries(header.map((h, i) => [h, r[i]]))) };
}

const csvField = (v) => (/[",\n]/.test(v) ? `"${v.replace(/"/g, '""')}"` : v);

function makeCatalog(dir) {
  const source = path.join(DATA, 'fashion-product-images');
  const { header, records } = parseCsv(fs.readFileSync(path.join(source, 'labels.csv'), 'utf8'));
  // Every 7th product: a representative sample (16 watches, 47 t-shirts...).
  const sample = records.filter((_, i) => i % 7 === 0).map((r) => ({ ...r, file: path.join(source, r.file) }));
  sample.push({ ...sample[1], product_id: HOSTILE_ID, productDisplayName: HOSTILE_NAME });
  const lines = [header.join(','), ...sample.map((r) => header.map((h) => csvField(r[h])).join(','))];
  const file = path.join(dir, 'catalog.csv');
  fs.writeFileSync(file, lines.join('\n') + '\n');
  return { file, sample };
}

function startServer(site) {
  return new Promise((resolve, reject) => {
    const server = spawn(BIN, ['serve', site, '--port', '0'], { stdio: ['ignore', 'ignore', 'pipe'] });
    // The address may arrive split across chunks: match on all that came.
    let seen = '';
    server.stderr.on('data', (chunk) => {
      seen += chunk.toString();
      const match = /http:\/\/(127\.0\.0\.1:\d+)\//.exec(seen);
      if (match) resolve({ server, url: `http://${match[1]}/` });
    });
    setTimeout(() => reject(new Error(`the server did not start: ${seen}`)), 30_000);
    server.on('exit', (code) => reject(new Error(`server exited with ${code}`)));
  });
}

/// Each run: an engine, and the backend the page should pick there.
const RUNS = {
  chromium: { engine: 'chromium', mode: 'cpu' },
  'chromium-webgpu': { engine: 'chromium', mode: 'webgpu' },
  firefox: { engine: 'firefox', mode: 'cpu' },
  webkit: { engine: 'webkit', mode: 'cpu' },
};

/// The native build's embedding of one image, from `lookalike embed`.
function nativeVector(image, dir, crops = 'whole') {
  const out = fs.mkdtempSync(path.join(dir, 'embed-'));
  const catalog = path.join(out, 'one.csv');
  fs.writeFileSync(catalog, `id,image\nphoto,${image}\n`);
  execFileSync(BIN, ['embed', '--catalog', catalog, '--out', out, '--crops', crops], { stdio: ['ignore', 'ignore', 'inherit'] });
  const bytes = fs.readFileSync(path.join(out, 'vectors.npy'));
  const headerLength = bytes.readUInt16LE(8);
  const data = bytes.subarray(10 + headerLength);
  return Array.from(new Float32Array(data.buffer.slice(data.byteOffset, data.byteOffset + data.length)));
}

const cosine = (a, b) => {
  let dot = 0, na = 0, nb = 0;
  for (let i = 0; i < a.length; i++) { dot += a[i] * b[i]; na += a[i] * a[i]; nb += b[i] * b[i]; }
  return dot / Math.sqrt(na * nb);
};

async function runMode(run, url, sample, catalogDir, stopServer) {
  const page = await launch(run.engine, run.mode);
  const { mode } = run;
  const tag = page.name;
  fs.mkdirSync(ARTIFACTS, { recursive: true });
  try {
    const opened = Date.now();
    await page.goto(url);
    await page.waitFor(() => document.body.dataset.ready === 'index' || document.body.dataset.ready === 'model' || document.body.dataset.error, null, 120_000);
    const indexReadyMs = Date.now() - opened;
    const loadError = await page.evaluate(() => document.body.dataset.error);
    check(`[${tag}] page loads the wasm index`, !loadError, loadError || `${indexReadyMs} ms`);
    if (loadError) throw new Error(`page failed to load: ${loadError}; ${(await page.errors()).join(' | ')}`);
    // Thumbnails load as they scroll into view, on every engine (WebKit
    // fetched all of them when a card set src before loading=lazy).
    await new Promise((r) => setTimeout(r, 1500));
    const thumbs = await page.evaluate(() => new Set(performance.getEntriesByType('resource').map((e) => e.name).filter((n) => n.includes('/thumbs/'))).size);
    check(`[${tag}] the first visit loads only the thumbnails near the view`, thumbs > 0 && thumbs < sample.length / 2,
      `${thumbs} of ${sample.length} thumbnails fetched`);

    const labelOf = new Map(sample.map((r) => [r.product_id, r.articleType]));
    const watches = sample.filter((r) => r.articleType === 'Watches');
    const watch = watches[0];

    // Click a watch as a shopper would.
    await page.click(`#catalog button.product[data-id="${watch.product_id}"]`);
    await page.waitFor(() => !document.querySelector('#results').hidden);
    const clicked = await page.evaluate(() => window.lookalike.lastQuery);
    const clickedWatches = clicked.hits.filter((h) => labelOf.get(h.id) === 'Watches').length;
    check(`[${tag}] a watch's top 10 are mostly watches`, clicked.hits.length === 10 && clickedWatches >= 6,
      `${clickedWatches}/10, query ${clicked.millis.toFixed(2)} ms`);
    const shownCards = await page.count('#results-list .product');
    check(`[${tag}] results are drawn`, shownCards === clicked.hits.length, `${shownCards} cards`);

    // Every watch, through the wasm forest.
    const perWatch = await page.evaluate((ids) => ids.map((id) => {
      const item = window.lookalike.index.itemOf(id);
      const started = performance.now();
      const hits = window.lookalike.index.queryItem(item, 10, undefined, false);
      return { hits: hits.map((h) => h.id), ms: performance.now() - started };
    }), watches.map((w) => w.product_id));
    const precision = perWatch.reduce((s, q) => s + q.hits.filter((id) => labelOf.get(id) === 'Watches').length / 10, 0) / perWatch.length;
    const meanMs = perWatch.reduce((s, q) => s + q.ms, 0) / perWatch.length;
    check(`[${tag}] precision@10 over all ${watches.length} watches >= 0.6`, precision >= 0.6,
      `${precision.toFixed(3)}, ${meanMs.toFixed(3)} ms/query in wasm`);

    // Colour and learned attributes are weighed at query time, in wasm: the
    // colour signature alone finds same-colour products far more often than
    // the embedding alone, over the whole sample.
    const colourShare = await page.evaluate(({ ids, colourOf }) => {
      const index = window.lookalike.index;
      const none = Object.fromEntries(index.appearance.parts.map((p) => [p.name, 0]));
      const share = (weights) => ids.reduce((sum, id) => {
        const hits = index.queryItem(index.itemOf(id), 10, undefined, false, undefined, weights);
        return sum + hits.filter((h) => colourOf[h.id] === colourOf[id]).length / hits.length;
      }, 0) / ids.length;
      return { visual: share({ ...none, visual: 1 }), colour: share({ ...none, visual: 0.5, colour: 0.5 }) };
    }, { ids: sample.map((r) => r.product_id), colourOf: Object.fromEntries(sample.map((r) => [r.product_id, r.baseColour])) });
    check(`[${tag}] weighing colour finds more products of the same colour`, colourShare.colour >= colourShare.visual + 0.1,
      `same baseColour ${colourShare.visual.toFixed(3)} by the embedding alone, ${colourShare.colour.toFixed(3)} half by colour`);
    // The page's colour slider re-runs the shown search with its weight.
    const slide = (value) => page.evaluate((v) => {
      const input = document.querySelector('#weights input[data-part="colour"]');
      input.value = v;
      input.dispatchEvent(new Event('input', { bubbles: true }));
    }, value);
    await slide('0.8');
    await page.waitFor(() => window.lookalike.lastQuery.weights && window.lookalike.lastQuery.weights.colour === 0.8);
    const slid = await page.evaluate(() => ({ kind: window.lookalike.lastQuery.kind, hits: window.lookalike.lastQuery.hits.length }));
    check(`[${tag}] moving the colour slider re-runs the search with its weight`, slid.kind === 'item' && slid.hits === 10, JSON.stringify(slid));
    await slide('0');

    // Nothing heavy before a photo: the models load with the first one.
    const modelEarly = await page.evaluate(() => ({
      backend: window.lookalike.backend,
      models: performance.getEntriesByType('resource').filter((e) => /lookalike_web_models|model\.bpk|worker\.js/.test(e.name)).map((e) => e.name),
    }));
    check(`[${tag}] browsing loads no model: no model wasm, worker or weights before a photo`, !modelEarly.backend && modelEarly.models.length === 0,
      modelEarly.models.join(' ') || 'none fetched');
    // ... but reaching for the photo control starts loading it.
    await page.hover('label.upload');
    const warmed = await page.waitFor(() => Boolean(window.lookalike.backend), null, 120_000).then(() => true, () => false);
    check(`[${tag}] pointing at the photo control loads the embedder ahead`, warmed);
    // From here on, the main thread must stay responsive: the models run in
    // the worker. Chromium reports long tasks (over 50 ms) of the page.
    const observesLongTasks = await page.evaluate(() => {
      window.longTasks = [];
      if (!PerformanceObserver.supportedEntryTypes?.includes('longtask')) return false;
      new PerformanceObserver((list) => window.longTasks.push(...list.getEntries().map((e) => Math.round(e.duration)))).observe({ type: 'longtask' });
      return true;
    });

    // Upload the watch's own photo: the page embeds it with Burn.
    const photo = path.join(catalogDir, 'upload.jpg');
    fs.copyFileSync(watch.file, photo);
    const started = Date.now();
    await page.setInputFiles('#photo', photo);
    // A packshot is one product: the page searches its foreground, as the
    // build indexed the catalog's own packshots.
    await page.waitFor(() => window.lookalike.lastQuery && window.lookalike.lastQuery.kind === 'crop' || document.body.dataset.error, null, 300_000);
    const photoQuery = await page.evaluate(() => {
      const q = window.lookalike.lastQuery;
      return q && q.kind === 'crop' ? q : { error: document.body.dataset.error };
    });
    // The model, on the backend this browser offers.
    const backend = await page.evaluate(() => window.lookalike.backend);
    check(`[${tag}] embedder runs on ${mode}`, backend === mode, `backend=${backend}, shown "${await page.text('#backend')}"`);
    if (photoQuery.error) {
      check(`[${tag}] photo search`, false, photoQuery.error);
    } else {
      check(`[${tag}] a packshot is searched as its foreground, one product`, photoQuery.what === 'product' && photoQuery.item === 0,
        `${photoQuery.what}, item ${photoQuery.item}`);
      const parity = cosine(photoQuery.vector, nativeVector(photo, catalogDir, 'foreground'));
      check(`[${tag}] wasm embedding matches the native build (cosine >= 0.999)`, parity >= 0.999, `cosine ${parity.toFixed(6)}`);
      check(`[${tag}] the photo finds its own product first`, photoQuery.hits[0].id === watch.product_id,
        `top hit ${photoQuery.hits[0].id}, embed ${photoQuery.embedMillis.toFixed(0)} ms, total ${Date.now() - started} ms`);
      // The page describes the photo as the build described the product (its
      // stored parts: the colour of its foreground crop, the learned kind).
      const described = await page.evaluate((id) => {
        const index = window.lookalike.index;
        const stored = index.itemParts(index.itemOf(id));
        const photo = window.lookalike.lastQuery.parts;
        const layout = index.appearance;
        const colour = layout.parts[0].dims;
        let bhattacharyya = 0;
        for (let i = 0; i < colour; i++) bhattacharyya += stored[i] * photo[i];
        const kind = (parts) => { const p = parts.slice(colour, colour + layout.parts[1].dims); return p.indexOf(Math.max(...p)); };
        return { bhattacharyya, sameKind: kind(stored) === kind(photo), length: photo.length, expected: stored.length };
      }, watch.product_id);
      check(`[${tag}] the page describes the photo's colour and kind as the build described the product`,
        described.length === described.expected && described.bhattacharyya >= 0.9 && described.sameKind, JSON.stringify(described));
    }

    // A street photo: items are detected in the page, outlined, and the best
    // one searched; clicking another box, or drawing one, searches that.
    const street = path.join(catalogDir, 'street.jpg');
    fs.copyFileSync(path.join(DATA, 'ccp-street-fashion/images/0003.jpg'), street);
    await page.evaluate(() => { window.lookalike.lastQuery = null; });
    await page.setInputFiles('#photo', street);
    await page.waitFor(() => (window.lookalike.lastQuery && window.lookalike.lastQuery.kind === 'crop') || document.body.dataset.error, null, 300_000);
    const first = await page.evaluate(() => ({ q: window.lookalike.lastQuery, items: window.lookalike.photo.items, error: document.body.dataset.error }));
    const boxes = await page.count('#photo-boxes .item-box');
    check(`[${tag}] items in a street photo are detected and outlined`, !first.error && boxes >= 2 && boxes === first.items.length,
      `${boxes} boxes (${first.items.map((i) => i.class).join(', ')}), detection ${first.q ? first.q.detectMillis.toFixed(0) : '?'} ms on ${await page.evaluate(() => window.lookalike.detectorBackend)}`);
    // Where two boxes overlap (a bag over a coat, a top inside the dress it
    // may be read as), the smaller is on top, so neither hides the other.
    const stacking = await page.evaluate(() => {
      document.querySelector('#photo-stage').scrollIntoView({ block: 'center' });
      const inView = (x, y) => x >= 0 && y >= 0 && x < window.innerWidth && y < window.innerHeight;
      const buttons = [...document.querySelectorAll('#photo-boxes .item-box')];
      const rects = buttons.map((b) => b.getBoundingClientRect());
      const out = [];
      for (let i = 0; i < rects.length; i++) {
        for (let j = 0; j < rects.length; j++) {
          const [a, b] = [rects[i], rects[j]];
          const x0 = Math.max(a.left, b.left), x1 = Math.min(a.right, b.right);
          const y0 = Math.max(a.top, b.top), y1 = Math.min(a.bottom, b.bottom);
          const [x, y] = [(x0 + x1) / 2, (y0 + y1) / 2];
          if (i === j || x1 - x0 < 4 || y1 - y0 < 4 || a.width * a.height >= b.width * b.height || !inView(x, y)) continue;
          const hit = document.elementFromPoint(x, y);
          out.push(hit && hit.closest('.item-box') === buttons[i]);
        }
      }
      return out;
    });
    check(`[${tag}] overlapping item boxes stack the smaller on top`, stacking.length > 0 && stacking.every(Boolean),
      `${stacking.filter(Boolean).length} of ${stacking.length} overlaps`);
    // The page's detector (wasm, on this backend) agrees with the native tool's.
    const overlayPath = path.join(catalogDir, `${tag}-overlay.png`);
    const native = JSON.parse(execFileSync(BIN, ['detect', street, '--overlay', overlayPath], { encoding: 'utf8' }));
    // The parser's masks, drawn by the wasm on a canvas over the photo, are
    // the native tool's overlay pixel for pixel (alpha compared).
    const masks = await page.evaluate(async (png) => {
      const canvas = document.querySelector('#photo-masks');
      const drawn = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data;
      const image = new Image();
      image.src = `data:image/png;base64,${png}`;
      await image.decode();
      const reference = new OffscreenCanvas(image.width, image.height).getContext('2d');
      reference.drawImage(image, 0, 0);
      const expected = reference.getImageData(0, 0, image.width, image.height).data;
      let covered = 0, same = 0;
      for (let i = 3; i < drawn.length; i += 4) {
        covered += drawn[i] > 0;
        same += (drawn[i] > 0) === (expected[i] > 0);
      }
      const pixels = canvas.width * canvas.height;
      return { size: [canvas.width, canvas.height, image.width, image.height], covered: covered / pixels, agree: same / pixels };
    }, fs.readFileSync(overlayPath).toString('base64'));
    check(`[${tag}] the parser's masks are drawn over the photo as the native tool draws them`,
      masks.size[0] === masks.size[2] && masks.size[1] === masks.size[3] && masks.covered > 0.02 && masks.agree >= 0.99,
      JSON.stringify(masks));
    const iou = (a, b) => {
      const w = Math.max(0, Math.min(a.x1, b.x1) - Math.max(a.x0, b.x0));
      const h = Math.max(0, Math.min(a.y1, b.y1) - Math.max(a.y0, b.y0));
      const area = (r) => (r.x1 - r.x0) * (r.y1 - r.y0);
      return (w * h) / (area(a) + area(b) - w * h);
    };
    const agree = native.length === first.items.length && native.every((n, i) => n.class === first.items[i].class && iou(n.bbox, first.items[i].bbox) >= 0.95);
    check(`[${tag}] detection in the page matches the native tool`, agree,
      first.items.map((it, i) => `${it.class} IoU ${native[i] ? iou(native[i].bbox, it.bbox).toFixed(3) : '-'}`).join(', '));
    const distinct = first.q ? new Set(first.q.hits.map((h) => h.id)).size : 0;
    check(`[${tag}] the best item is searched at once`, first.q && first.q.item === 0 && first.q.hits.length === 10 && distinct === 10,
      first.q ? `${first.q.what} -> ${first.q.prediction ? first.q.prediction.label : 'no label'}, embed ${first.q.embedMillis.toFixed(0)} ms` : 'no query');
    if (boxes >= 2) {
      await page.press('#photo-boxes .item-box', 1, 'Enter');
      await page.waitFor(() => window.lookalike.lastQuery && window.lookalike.lastQuery.item === 1, null, 120_000);
      const pressed = await page.count('#photo-boxes .item-box[aria-pressed=true]');
      check(`[${tag}] a box chosen with the keyboard searches its item`, pressed === 1);
    }
    await page.evaluate(() => document.querySelector('#photo-stage').scrollIntoView({ block: 'center' }));
    const stage = await page.box('#photo-stage');
    const at = (fx, fy) => ({ x: stage.x + stage.width * fx, y: stage.y + stage.height * fy });
    await page.drag([at(0.3, 0.7), at(0.5, 0.8), at(0.7, 0.95)]);
    await page.waitFor(() => window.lookalike.lastQuery && window.lookalike.lastQuery.drawn, null, 120_000);
    const drawn = await page.evaluate(() => ({ q: window.lookalike.lastQuery, w: window.lookalike.photo.width, h: window.lookalike.photo.height }));
    const b = drawn.q.box;
    const near = (v, want) => Math.abs(v - want) <= 0.03;
    check(`[${tag}] drawing a box searches what is inside it`,
      near(b.x / drawn.w, 0.3) && near(b.y / drawn.h, 0.7) && near((b.x + b.width) / drawn.w, 0.7) && near((b.y + b.height) / drawn.h, 0.95) && drawn.q.hits.length === 10,
      `box ${b.x},${b.y} ${b.width}x${b.height} of ${drawn.w}x${drawn.h}`);
    await page.screenshot(path.join(ARTIFACTS, `${tag}-photo.png`), '#photo-panel').catch(() => {});

    // A photo dropped on the page, or pasted, is searched the same way.
    if (mode === 'cpu') {
      const b64 = fs.readFileSync(path.join(DATA, 'ccp-street-fashion/images/0005.jpg')).toString('base64');
      for (const [how, name] of [['drop', 'dropped.jpg'], ['paste', 'pasted.jpg']]) {
        if (how === 'paste' && !page.can.syntheticPaste) {
          skip(`[${tag}] a pasted photo is searched`, `${page.engine} gives a script-made paste event an empty clipboard, and a real paste cannot be scripted here`);
          continue;
        }
        await page.evaluate(async ({ b64, how, name }) => {
          window.lookalike.lastQuery = null;
          const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
          const data = new DataTransfer();
          data.items.add(new File([bytes], name, { type: 'image/jpeg' }));
          const event = how === 'drop'
            ? new DragEvent('drop', { dataTransfer: data, bubbles: true, cancelable: true })
            : new ClipboardEvent('paste', { clipboardData: data, bubbles: true, cancelable: true });
          document.dispatchEvent(event);
        }, { b64, how, name });
        await page.waitFor(() => window.lookalike.lastQuery || document.body.dataset.error, null, 120_000);
        const got = await page.evaluate(() => ({ name: window.lookalike.photo.name, hits: window.lookalike.lastQuery.hits.length }));
        check(`[${tag}] a ${how === 'drop' ? 'dropped' : 'pasted'} photo is searched`, got.name === name && got.hits === 10, `${got.name}, ${got.hits} look-alikes`);
      }
    }

    // The photo queries are done: what the main thread did meanwhile is what
    // the long-task check judges (re-rendering the catalog for a category, or
    // a screenshot, is not photo work).
    const photoLongTasks = observesLongTasks ? await page.evaluate(() => window.longTasks.slice()) : [];

    // The category filter keeps results in one category.
    await page.selectOption('#category', 'Watches');
    await page.click(`#catalog button.product[data-id="${sample.find((r) => r.articleType === 'Tshirts').product_id}"]`);
    await page.waitFor(() => window.lookalike.lastQuery && window.lookalike.lastQuery.kind === 'item');
    const filtered = await page.evaluate(() => window.lookalike.lastQuery.hits.map((h) => h.id));
    check(`[${tag}] a category filter keeps only that category`, filtered.length > 0 && filtered.every((id) => labelOf.get(id) === 'Watches'),
      `${filtered.filter((id) => labelOf.get(id) === 'Watches').length}/${filtered.length} watches for a t-shirt; others: ${filtered.filter((id) => labelOf.get(id) !== 'Watches').map((id) => `${id}=${labelOf.get(id)}`).join(' ')}`);
    await page.selectOption('#category', '');

    // A hostile name is text, not markup.
    const hostile = await page.evaluate((id) => {
      const card = document.querySelector(`#catalog button.product[data-id="${id}"] .title`);
      return { text: card && card.textContent, injected: window.__xss === 1, imgs: card ? card.querySelectorAll('img').length : -1 };
    }, HOSTILE_ID);
    check(`[${tag}] hostile product name renders as text`, hostile.text === HOSTILE_NAME && !hostile.injected && hostile.imgs === 0);

    await page.screenshot(path.join(ARTIFACTS, `${tag}.png`));
    const pageErrors = await page.errors();
    check(`[${tag}] no errors in the page`, pageErrors.length === 0, pageErrors.slice(0, 3).join(' | '));

    // Two photos detected, embedded and searched: the models ran in the
    // worker. Running them on the page would block it for 0.5 to several
    // seconds per photo; the page's own work (hand-offs, drawing, ranking)
    // stays under 50 ms when the machine is idle, but on a loaded 2-core CI
    // machine a preempted 20 ms task is reported at 60 ms. So the check
    // fails on what only model work on the page could cause, and prints
    // every long task for the record.
    if (observesLongTasks) {
      const longTasks = photoLongTasks;
      const blocking = longTasks.filter((ms) => ms > 200);
      check(`[${tag}] the main thread is never blocked by model work while photos are detected and searched (no task over 200 ms)`, blocking.length === 0,
        longTasks.length ? `tasks over 50 ms: ${longTasks.join(', ')} ms` : 'no task over 50 ms');
    }

    // The storefront widget: one script tag and one element, under a strict CSP.
    const widgetProduct = sample[0].product_id;
    await page.goto(new URL(`www/storefront.html`, url).href);
    await page.evaluate((id) => document.getElementById('similar').setAttribute('product', id), widgetProduct);
    await page.waitFor(() => ['ready', 'error'].includes(document.getElementById('similar').dataset.state), null, 120_000);
    const widget = await page.evaluate(() => {
      const el = document.getElementById('similar');
      const links = [...el.shadowRoot.querySelectorAll('a')];
      return { state: el.dataset.state, ids: links.map((a) => a.dataset.id), hrefs: links.map((a) => a.href), text: el.shadowRoot.textContent };
    });
    check(`[${tag}] the storefront widget renders 6 look-alikes`, widget.state === 'ready' && widget.ids.length === 6 && new Set(widget.ids).size === 6 && !widget.ids.includes(widgetProduct),
      `${widget.state}: ${widget.ids.join(' ')}${widget.state === 'error' ? ` ${widget.text}` : ''}`);
    const widgetCode = await page.evaluate(() => performance.getEntriesByType('resource')
      .filter((e) => /\.(js|wasm)$/.test(new URL(e.name).pathname)).map((e) => new URL(e.name).pathname.split('/').pop()));
    check(`[${tag}] the widget loads the browsing wasm only, never the models`,
      widgetCode.includes('lookalike_web_bg.wasm') && !widgetCode.some((name) => name.includes('models')), widgetCode.join(' '));
    // Its `weights` attribute re-weighs the parts: by colour, the rows of 12
    // products share their product's colour more than by the embedding alone.
    const colourOf = Object.fromEntries(sample.map((r) => [r.product_id, r.baseColour]));
    const sameColour = async (weights) => {
      let same = 0;
      for (const product of sample.slice(0, 12).map((r) => r.product_id)) {
        const row = await page.evaluate(async ({ product, weights }) => {
          const el = document.getElementById('similar');
          const done = new Promise((resolve) => el.addEventListener('lookalike-ready', (e) => resolve(e.detail.hits.map((h) => h.id)), { once: true }));
          el.setAttribute('weights', weights);
          el.setAttribute('product', product);
          return done;
        }, { product, weights });
        same += row.filter((id) => colourOf[id] === colourOf[product]).length;
      }
      return same;
    };
    const byColour = await sameColour('visual=0.2, colour=0.8, articleType=0, baseColour=0');
    const byEmbedding = await sameColour('visual=1, colour=0, articleType=0, baseColour=0');
    const badWeights = await page.evaluate(async () => {
      const el = document.getElementById('similar');
      el.setAttribute('weights', 'size=1');
      await new Promise((resolve) => setTimeout(resolve, 200));
      return { state: el.dataset.state, text: el.shadowRoot.textContent };
    });
    check(`[${tag}] the widget's weights attribute re-weighs colour, and a bad one is named`,
      byColour >= byEmbedding + 6 && badWeights.state === 'error' && badWeights.text.includes('size'),
      `${byColour}/72 look-alikes share their product's colour by colour, ${byEmbedding}/72 by the embedding; bad: ${badWeights.text}`);
    await page.evaluate((id) => document.getElementById('similar').setAttribute('product', id), widgetProduct);
    await page.evaluate(() => document.getElementById('similar').removeAttribute('weights'));
    await page.screenshot(path.join(ARTIFACTS, `${tag}-storefront.png`));
    await page.goto(widget.hrefs[0] || url);
    await page.waitFor(() => window.lookalike && window.lookalike.lastQuery, null, 120_000);
    const deep = await page.evaluate(() => window.lookalike.lastQuery.id);
    check(`[${tag}] a widget link opens its product's look-alikes`, deep === widget.ids[0], `opened ${deep}`);

    // Offline: with the server gone, a reload is served by the service worker.
    const workerReady = await page.evaluate(async () => Boolean((await navigator.serviceWorker.ready).active));
    stopServer();
    await page.reload();
    await page.waitFor(() => document.body.dataset.ready === 'index' || document.body.dataset.error, null, 120_000);
    const offline = await page.evaluate(() => ({
      error: document.body.dataset.error, cards: document.querySelectorAll('#catalog .product').length,
      controlled: Boolean(navigator.serviceWorker.controller),
    }));
    await page.click(`#catalog button.product[data-id="${watch.product_id}"]`);
    const offlineHits = await page.evaluate(() => window.lookalike.lastQuery && window.lookalike.lastQuery.hits.length);
    check(`[${tag}] the site works offline after the first visit`, workerReady && offline.controlled && !offline.error && offline.cards === sample.length && offlineHits === 10,
      `${offline.cards} products, ${offlineHits} look-alikes${offline.error ? `, error ${offline.error}` : ''}`);
    await page.screenshot(path.join(ARTIFACTS, `${tag}-offline.png`));
  } finally {
    await page.close();
  }
}

/// A paged site (the same sample, embedded by `embed` and built with
/// `build --vectors --layout paged`): the page reads it by byte range.
function buildPaged(file, work) {
  const vectors = path.join(work, 'vectors');
  execFileSync(BIN, ['embed', '--catalog', file, '--out', vectors, '--id-col', 'product_id', '--image-col', 'file', '--crops', 'foreground'], { stdio: 'inherit' });
  const site = path.join(work, 'paged-site');
  execFileSync(BIN, ['build', '--catalog', file, '--out', site, '--id-col', 'product_id', '--image-col', 'file',
    '--label-col', 'articleType', '--vectors', path.join(vectors, 'vectors.npy'), '--ids', path.join(vectors, 'ids.txt'),
    '--layout', 'paged', '--list-size', '8', '--chunk-size', '8192'], { stdio: 'inherit' });
  return site;
}

async function runPaged(run, url, site, sample, stopServer) {
  const page = await launch(run.engine, run.mode);
  const tag = `${page.name} paged`;
  try {
    const labelOf = new Map(sample.map((r) => [r.product_id, r.articleType]));
    const watch = sample.find((r) => r.articleType === 'Watches');
    await page.goto(`${url}?sw=off&product=${watch.product_id}`);
    await page.waitFor(() => (document.body.dataset.ready && !document.querySelector('#results').hidden) || document.body.dataset.error, null, 120_000);
    const loaded = await page.evaluate(() => ({
      error: document.body.dataset.error, cards: document.querySelectorAll('#catalog .product').length,
      q: window.lookalike.lastQuery, ranged: performance.getEntriesByType('resource').filter((e) => e.name.endsWith('/pages.lkp')).length,
      whole: performance.getEntriesByType('resource').some((e) => e.name.endsWith('.lkf')),
    }));
    check(`[${tag}] the page loads a paged site and shows its first products`, !loaded.error && loaded.cards > 0 && !loaded.whole, loaded.error || `${loaded.cards} products`);
    if (loaded.error) return;
    const watches = loaded.q.hits.filter((h) => labelOf.get(h.id) === 'Watches').length;
    check(`[${tag}] a watch's look-alikes come by byte range, mostly watches, in 3 rounds`,
      loaded.q.hits.length === 10 && watches >= 6 && loaded.q.stats.rounds <= 3 && loaded.ranged > 0,
      `${watches}/10 watches, ${loaded.q.stats.rounds} rounds, ${loaded.q.stats.requests} requests, ${loaded.q.stats.bytes} bytes`);
    const native = JSON.parse(execFileSync(BIN, ['query', '--site', site, '--id', watch.product_id, '-k', '10']).toString());
    const same = JSON.stringify(native.map((r) => r.similar_product_id)) === JSON.stringify(loaded.q.hits.map((h) => h.id));
    check(`[${tag}] the page and the native tool give the same look-alikes`, same);
    const again = await page.evaluate(async (id) => {
      const search = window.lookalike.paged;
      const warm = await search.item(id, { k: 10 });
      search.clearCache();
      search.useChunks = true; // as on a host that ignores ranges
      const chunked = await search.item(id, { k: 10 });
      search.useChunks = false;
      return { warm: warm.stats.requests, warmIds: warm.hits.map((h) => h.id), chunkIds: chunked.hits.map((h) => h.id), chunkRequests: chunked.stats.requests };
    }, watch.product_id);
    const ids = loaded.q.hits.map((h) => h.id).join();
    check(`[${tag}] a repeated query fetches nothing; chunk files give the same answer`,
      again.warm === 0 && again.warmIds.join() === ids && again.chunkIds.join() === ids && again.chunkRequests > 0, JSON.stringify({ warm: again.warm, chunks: again.chunkRequests }));
    const missing = await page.evaluate(async () => (await window.lookalike.paged.item('no-such-product', { k: 5 })).hits);
    check(`[${tag}] an unknown product id answers none`, missing === null);
    if (run.engine === 'chromium') {
      // A photo: the projection page, the cells' centroids, the lists.
      await page.evaluate(() => { window.lookalike.lastQuery = null; });
      await page.setInputFiles('#photo', watch.file);
      await page.waitFor(() => window.lookalike.lastQuery || document.body.dataset.error, null, 300_000);
      const photo = await page.evaluate(() => ({ error: document.body.dataset.error, hits: window.lookalike.lastQuery && window.lookalike.lastQuery.hits.map((h) => h.id) }));
      check(`[${tag}] a photo of a product finds that product first`, !photo.error && photo.hits && photo.hits[0] === watch.product_id,
        photo.error || `first ${photo.hits && photo.hits[0]}`);
    }
    const errors = await page.errors();
    check(`[${tag}] no errors in the page`, errors.length === 0, errors.slice(0, 3).join(' | '));
    if (run.engine === 'chromium') {
      // Offline: what a visit read by range is kept in the Cache API (by
      // the page before the service worker controls it, then by the worker).
      const other = sample.filter((r) => r.articleType === 'Tshirts')[0];
      await page.goto(`${url}?product=${other.product_id}`);
      await page.waitFor(() => (document.body.dataset.ready && !document.querySelector('#results').hidden) || document.body.dataset.error, null, 120_000);
      const workerReady = await page.evaluate(async () => Boolean((await navigator.serviceWorker.ready).active));
      await new Promise((r) => setTimeout(r, 500)); // the cache puts settle
      stopServer();
      await page.reload();
      await page.waitFor(() => (document.body.dataset.ready && !document.querySelector('#results').hidden) || document.body.dataset.error, null, 120_000);
      const offline = await page.evaluate(() => ({ error: document.body.dataset.error, q: window.lookalike.lastQuery,
        failed: performance.getEntriesByType('resource').filter((e) => e.responseStatus >= 400 || e.transferSize === 0 && e.decodedBodySize === 0).map((e) => e.name.split('/').pop()).slice(0, 8) }));
      check(`[${tag}] a paged site's visited parts work offline`, workerReady && !offline.error && offline.q && offline.q.hits.length === 10,
        offline.error ? `${offline.error}; ${offline.failed.join(' ')}; ${(await page.errors()).slice(-2).join(' | ')}` : `${offline.q && offline.q.hits.length} look-alikes`);
    }
  } finally {
    await page.close();
  }
}

async function main() {
  if (!BIN || !DATA) throw new Error('set LOOKALIKE_BIN and LOOKALIKE_DATA (./build.sh test does)');
  const work = fs.mkdtempSync(path.join(os.tmpdir(), 'lookalike-e2e-'));
  const { file, sample } = makeCatalog(work);
  const site = path.join(work, 'site');
  const built = Date.now();
  execFileSync(BIN, ['build', '--catalog', file, '--out', site, '--id-col', 'product_id', '--image-col', 'file',
    '--label-col', 'articleType', '--pca-dims', '64', '--learn', 'articleType=0.4', '--learn', 'baseColour=0.2'], { stdio: 'inherit' });
  console.log(`built a ${sample.length}-product site in ${((Date.now() - built) / 1000).toFixed(1)} s`);
  const pagedSite = buildPaged(file, work);
  try {
    const runs = (process.env.E2E_ENGINES || Object.keys(RUNS).join(',')).split(',');
    for (const name of runs.filter((n) => n !== 'chromium-webgpu')) {
      const { server, url } = await startServer(pagedSite);
      try {
        await runPaged(RUNS[name], url, pagedSite, sample, () => server.kill());
      } catch (error) {
        check(`[${name} paged] the run completes`, false, String(error && error.stack || error).split('\n').slice(0, 3).join(' '));
      } finally {
        server.kill();
      }
    }
    for (const name of runs) {
      if (!RUNS[name]) throw new Error(`unknown engine ${name}; E2E_ENGINES takes ${Object.keys(RUNS).join(', ')}`);
      // A server per run: the offline check stops it.
      const { server, url } = await startServer(site);
      try {
        await runMode(RUNS[name], url, sample, work, () => server.kill());
      } catch (error) {
        check(`[${name}] the run completes`, false, String(error && error.stack || error).split('\n').slice(0, 3).join(' '));
      } finally {
        server.kill();
      }
    }
  } finally {
    fs.rmSync(work, { recursive: true, force: true });
  }
  console.log(`browser: ${results.passed} passed, ${results.failed} failed, ${results.skipped} skipped`);
  process.exit(results.failed ? 1 : 0);
}

main().catch((error) => {
  console.error(error);
  console.log(`browser: ${results.passed} passed, ${results.failed + 1} failed`);
  process.exit(1);
});
