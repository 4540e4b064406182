// `lookalike-bench scale`, in the browser: a paged site in headless Chromium
// over an emulated network (DevTools: 40 ms round trip, 20 Mbit/s down and
// up), and the demo's one-file site the same way for reference.
//
//   - first visit: the page opened on `?product=ID` until its look-alikes
//     are drawn: time, and bytes served (thumbnails excluded);
//   - product queries (the page's paged search, by id) and vector queries
//     (vectors in the index's space): each cold (its pages fetched) then
//     warm (again, from the wasm's page cache): latency, bytes, requests.
//
// Usage: LOOKALIKE_BIN=... node bench/scale.mjs PAGED_SITE QUERIES.json [DEMO_SITE DEMO_ID]
// QUERIES.json: { "products": [id...], "vectors": [[f32...]...] }.
// Prints one JSON object.
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const { launch } = await import(path.join(here, '../tests/browser/engines.mjs'));
const { serve } = await import(path.join(here, 'serve.mjs'));

const [siteDir, queriesFile, demoDir, demoId] = process.argv.slice(2);
const queries = JSON.parse(fs.readFileSync(queriesFile, 'utf8'));
const NETWORK = { offline: false, latency: 40, downloadThroughput: 20e6 / 8, uploadThroughput: 20e6 / 8 };

const quantile = (values, q) => {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted.length ? sorted[Math.round((sorted.length - 1) * q)] : null;
};
const summary = (values) => ({ median: quantile(values, 0.5), p95: quantile(values, 0.95) });
const withoutThumbnails = (served) => served.filter(([p]) => !p.includes('/thumbs/')).reduce((n, [, b]) => n + b, 0);

async function throttled(browser) {
  const cdp = await browser.raw.context().newCDPSession(browser.raw);
  await cdp.send('Network.enable');
  await cdp.send('Network.emulateNetworkConditions', NETWORK);
  // Cold means cold: no query is answered from the browser's HTTP cache.
  await cdp.send('Network.setCacheDisabled', { cacheDisabled: true });
  return cdp;
}

/// Opens `url` until the look-alikes are drawn; returns ms and bytes.
async function firstVisit(browser, url, served) {
  served.length = 0;
  const opened = Date.now();
  await browser.goto(url);
  await browser.waitFor(() => (document.body.dataset.ready && !document.querySelector('#results').hidden) || document.body.dataset.error, null, 300_000);
  const ms = Date.now() - opened;
  const error = await browser.evaluate(() => document.body.dataset.error || null);
  if (error) throw new Error(`the page failed: ${error}`);
  return { ms, bytes: withoutThumbnails(served), requests: served.length };
}

async function pagedRuns(browser, kind, items) {
  const cold = { ms: [], bytes: [], requests: [], rounds: [], round_ms: [] };
  const warm = { ms: [] };
  for (const item of items) {
    const run = await browser.evaluate(async ([kind, item]) => {
      const search = window.lookalike.paged;
      search.clearCache(); // the pages earlier queries fetched
      const ask = () => (kind === 'product' ? search.item(item, { k: 10 }) : search.vector(new Float32Array(item), { k: 10 }));
      const first = await ask();
      const again = await ask();
      return { cold: first.stats, warm: again.stats, ids: first.hits.map((h) => h.id), same: JSON.stringify(first.hits.map((h) => h.id)) === JSON.stringify(again.hits.map((h) => h.id)) };
    }, [kind, item]);
    if (!run.same || run.warm.requests !== 0) throw new Error(`a warm ${kind} query differed or fetched`);
    cold.ms.push(run.cold.ms);
    cold.bytes.push(run.cold.bytes);
    cold.requests.push(run.cold.requests);
    cold.rounds.push(run.cold.rounds);
    run.cold.round_ms.forEach((ms, i) => { (cold.round_ms[i] ||= []).push(ms); });
    warm.ms.push(run.warm.ms);
  }
  return {
    cold_ms: summary(cold.ms), cold_bytes: summary(cold.bytes), cold_requests: summary(cold.requests),
    cold_rounds: summary(cold.rounds), warm_ms: summary(warm.ms),
    // Median time of each round of requests, in order.
    cold_round_ms_median: cold.round_ms.map((values) => quantile(values, 0.5)),
  };
}

const result = {};
const browser = await launch('chromium', 'cpu');
try {
  await throttled(browser);
  {
    const { server, url, served } = await serve(process.env.LOOKALIKE_BIN, siteDir);
    try {
      // ?sw=off: the first visit alone, without the worker's own fetches.
      result.first_visit = await firstVisit(browser, `${url}?sw=off&product=${encodeURIComponent(queries.products[0])}`, served);
      result.product = await pagedRuns(browser, 'product', queries.products.slice(1));
      result.vector = await pagedRuns(browser, 'vector', queries.vectors);
    } finally {
      server.kill();
    }
  }
  if (demoDir) {
    const { server, url, served } = await serve(process.env.LOOKALIKE_BIN, demoDir);
    try {
      result.demo_first_visit = await firstVisit(browser, `${url}?sw=off&product=${encodeURIComponent(demoId)}`, served);
      result.demo_click_ms = await browser.evaluate(async () => {
        const times = [];
        for (const button of [...document.querySelectorAll('#catalog button.product')].slice(0, 20)) {
          const started = performance.now();
          button.click();
          await new Promise((r) => requestAnimationFrame(() => r()));
          times.push(performance.now() - started);
        }
        times.sort((a, b) => a - b);
        return times[Math.floor(times.length / 2)];
      });
    } finally {
      server.kill();
    }
  }
} finally {
  await browser.close();
}
console.log(JSON.stringify(result));
