// `lookalike bench web`: what a shopper's browser pays, measured in each
// engine shoppers use (Debian's Chromium on the CPU and on WebGPU, Firefox
// ESR, WebKitGTK; tests/browser/engines.mjs drives them) against the built
// demo site served by `lookalike serve`, one engine after another.
//
//   - bytes on the first visit (counted by the server, so the service
//     worker's requests count too) and on a second, warm visit;
//   - time from opening the page to the first look-alikes drawn (cold, warm);
//   - product click to results drawn (synchronous: query + DOM);
//   - photo query on the CPU backend (and on WebGPU where an adapter exists;
//     here SwiftShader's software one): first photo (loads the embedder and
//     detector) and a later photo (detection + embedding + search).
//
// Usage: LOOKALIKE_BIN=... node bench/web.mjs SITE_DIR PHOTO1 PHOTO2
// (BENCH_ENGINES: a comma-separated subset of chromium, chromium-webgpu,
// firefox, webkit). Prints one JSON array, an object per engine.
import path from 'node:path';
import { fileURLToPath } from 'node:url';

// The drivers are installed for the browser tests (tests/browser).
const here = path.dirname(fileURLToPath(import.meta.url));
const { launch } = await import(path.join(here, '../tests/browser/engines.mjs'));
const { serve: serveSite } = await import(path.join(here, 'serve.mjs'));

const [site, photoA, photoB] = process.argv.slice(2);
const RUNS = {
  chromium: ['chromium', 'cpu'],
  'chromium-webgpu': ['chromium', 'webgpu'],
  firefox: ['firefox', 'cpu'],
  webkit: ['webkit', 'cpu'],
};

const serve = () => serveSite(process.env.LOOKALIKE_BIN, site);

const settle = (ms) => new Promise((r) => setTimeout(r, ms));

async function firstResults(page, url) {
  const opened = Date.now();
  await page.goto(url);
  await page.waitFor(() => document.body.dataset.ready || document.body.dataset.error, null, 120_000);
  await page.click('#catalog button.product');
  await page.waitFor(() => !document.querySelector('#results').hidden);
  return Date.now() - opened;
}

async function photoQuery(page, photo) {
  await page.evaluate(() => { window.lookalike.lastQuery = null; });
  const started = Date.now();
  await page.setInputFiles('#photo', photo);
  await page.waitFor(() => window.lookalike.lastQuery || document.body.dataset.error, null, 600_000);
  const q = await page.evaluate(() => window.lookalike.lastQuery);
  return { ms: Date.now() - started, detect_ms: q.detectMillis ?? null, embed_ms: q.embedMillis, search_ms: q.millis, kind: q.kind,
    // Where the first photo's time goes: the page's own timings of loading
    // the model module, the weights and the first inference.
    stages: await page.evaluate(() => window.lookalike.timings || null) };
}

async function run(name) {
  const [engine, mode] = RUNS[name];
  const { server, url, counter } = await serve();
  const page = await launch(engine, mode);
  try {
    const out = { engine: name, mode };
    if (mode === 'cpu') {
      // A storefront page with the widget, in a fresh browser: the scripts
      // and wasm it downloads (gzipped as served), without the index and
      // catalog it queries.
      const shop = await launch(engine, mode);
      try {
        await shop.goto(new URL('www/storefront.html', url).href);
        await shop.waitFor(() => ['ready', 'error'].includes(document.getElementById('similar')?.dataset.state), null, 120_000);
        await settle(500);
        out.widget_first_load_code_bytes = counter.code;
        out.widget_first_load_bytes = counter.bytes;
      } finally {
        await shop.close();
      }
      counter.bytes = 0;
      counter.requests = 0;
      counter.code = 0;
      out.cold_first_results_ms = await firstResults(page, url);
      await settle(3000); // the service worker's precache and lazy thumbnails
      out.first_load_bytes = counter.bytes;
      out.first_load_requests = counter.requests;
      counter.bytes = 0;
      out.warm_first_results_ms = await firstResults(page, url);
      await settle(1000);
      out.warm_load_bytes = counter.bytes;
      const clicks = await page.evaluate(() => {
        const buttons = [...document.querySelectorAll('#catalog button.product')].slice(0, 50);
        return buttons.map((b) => { const t = performance.now(); b.click(); return performance.now() - t; });
      });
      clicks.sort((a, b) => a - b);
      out.click_to_results_ms = { median: clicks[clicks.length >> 1], p95: clicks[Math.floor(clicks.length * 0.95)] };
    } else {
      await page.goto(url);
      await page.waitFor(() => document.body.dataset.ready, null, 120_000);
    }
    out.first_photo = await photoQuery(page, photoA);
    out.backend = await page.evaluate(() => window.lookalike.backend);
    out.later_photo = await photoQuery(page, photoB);
    return out;
  } finally {
    await page.close();
    server.kill();
  }
}

const results = [];
for (const name of (process.env.BENCH_ENGINES || Object.keys(RUNS).join(',')).split(',')) results.push(await run(name));
console.log(JSON.stringify(results));
