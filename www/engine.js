// The loader the page and the storefront widget share: downloads with
// progress and status checks, and one browsing engine per site (the small
// wasm with the index, the forest and the ranking; no model). Whatever
// loads first, page or widget, the other reuses.
//
//   import { loadEngine } from './engine.js';
//   const { index, manifest } = await loadEngine('https://shop.example/lookalike/');
//   const hits = index.queryItem(index.itemOf('15970'), 6, undefined, false);

/// Fetches `url` as bytes. `label` names it in errors and progress;
/// `onProgress(receivedBytes, fraction|null, label)` follows the download, and
/// `onDownloaded(url, response, bytes)` sees the finished one (the page
/// keeps it for offline use). A non-2xx status is an error naming the URL.
export async function fetchBytes(url, { label = String(url), onProgress, onDownloaded } = {}) {
  const response = await fetch(url);
  if (!response.ok) throw new Error(`${label}: HTTP ${response.status} for ${url}`);
  const total = Number(response.headers.get('Content-Length')) || 0;
  const reader = response.body.getReader();
  const chunks = [];
  let received = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    chunks.push(value);
    received += value.length;
    // Content-Length counts compressed bytes when the host gzips.
    onProgress?.(received, total && received <= total ? received / total : null, label);
  }
  const bytes = new Uint8Array(received);
  let offset = 0;
  for (const chunk of chunks) {
    bytes.set(chunk, offset);
    offset += chunk.length;
  }
  onDownloaded?.(url, response, bytes);
  return bytes;
}

/// Awaits `work`, noting how long it took in `timings[name]` (milliseconds):
/// where the time of loading goes, for the page's status and the benchmark.
export async function timed(timings, name, work) {
  const started = performance.now();
  try {
    return await work;
  } finally {
    timings[name] = Math.round(performance.now() - started);
  }
}

const engines = new Map(); // site URL -> Promise<{ index, manifest, site }>

/// The browsing engine of the site at `site` (a URL ending in `/`): the
/// wasm module, the manifest (`data/catalog.json`) and the parsed index,
/// loaded once per site and page. A paged site (`manifest.paged`) gives
/// `paged` (www/paged.js) instead of `index`: its queries are async. `download` options go to `fetchBytes`.
export function loadEngine(site, download = {}) {
  if (!engines.has(site)) {
    const promise = (async () => {
      const at = (path) => new URL(path, site).href;
      const timings = {};
      const pkg = await import(at('www/pkg/lookalike_web.js'));
      const module = await timed(timings, 'engine_fetch_ms', fetchBytes(at('www/pkg/lookalike_web_bg.wasm'), { label: 'search engine', ...download }));
      await timed(timings, 'engine_start_ms', pkg.default({ module_or_path: module }));
      const manifestBytes = await fetchBytes(at('data/catalog.json'), { label: 'catalog', ...download });
      const manifest = JSON.parse(new TextDecoder().decode(manifestBytes));
      if (manifest.paged) {
        // A paged site: the head now, pages as queries need them.
        const { PagedSearch } = await import(at('www/paged.js'));
        const head = await fetchBytes(at(manifest.paged.head), { label: 'index head', ...download });
        const paged = new PagedSearch(new pkg.PagedLookalike(head, 32 << 20), site, manifest.paged);
        return { paged, manifest, site, timings };
      }
      const indexBytes = await fetchBytes(at(manifest.index), { label: 'index', ...download });
      return { index: pkg.LookalikeIndex.fromBytes(indexBytes), manifest, site, timings };
    })();
    // A failed load is not kept: the next caller tries again.
    promise.catch(() => engines.delete(site));
    engines.set(site, promise);
  }
  return engines.get(site);
}
