// Paged sites (a catalog too large to download whole): the wasm's
// PagedLookalike says which byte ranges of the pages file a query needs,
// this file fetches them (HTTP Range requests, or fixed-size chunk files
// for hosts that ignore ranges), hands them back, and asks again. A
// product query takes three rounds (its lookup page, its lists, its
// results' metadata); pages stay in the wasm's bounded cache, so a warm
// query needs no request, and the service worker keeps the fetched ranges
// in the Cache API for offline use.
//
//   const search = new PagedSearch(new PagedLookalike(head, 32 << 20), site, manifest.paged);
//   const { hits, stats } = await search.item('P0000042', { k: 10 });
//   // hits: [{ item, id, score, product: {id, label, thumb, title, metadata} }]

/// The service worker's cache (sw.js).
const OFFLINE_CACHE = 'lookalike-v3';
/// Rounds after which a query is abandoned (a well-formed index needs 4).
const MAX_ROUNDS = 12;

export class PagedSearch {
  constructor(index, site, info) {
    this.index = index;
    this.pagesUrl = new URL(info.pages, site).href;
    this.chunks = info.chunks ? { url: new URL(`${info.chunks.dir}/`, site).href, size: info.chunks.size } : null;
    this.useChunks = false;
    this.totals = { requests: 0, bytes: 0 };
  }

  get length() { return this.index.length; }
  labelNames() { return this.index.labelNames(); }

  /// The look-alikes of product `id` (`null` when the index has no such id).
  item(id, { k = 10, sameLabel = false, label } = {}) {
    return this.run(() => this.index.stepItem(id, k, sameLabel, label));
  }

  /// The look-alikes of a vector (the photo worker's, or in the index's space).
  vector(vector, { k = 10, label } = {}) {
    return this.run(() => this.index.stepVector(vector, k, label));
  }

  /// Products `first..first+count`, to show the catalog before a query.
  browse(first, count) {
    return this.run(() => this.index.stepBrowse(first, count));
  }

  /// Forgets the pages fetched so far (the next query is cold again).
  clearCache() { this.index.clearCache(); }

  async run(step) {
    const stats = { rounds: 0, requests: 0, bytes: 0, round_ms: [], started: performance.now() };
    for (let round = 0; round <= MAX_ROUNDS; round++) {
      const out = step();
      if (out.missing) return { hits: null, stats: this.finish(stats) };
      if (out.hits) {
        const hits = out.hits.map((hit) => ({ ...hit, product: JSON.parse(hit.record) }));
        return { hits, stats: this.finish(stats) };
      }
      stats.rounds++;
      const roundStarted = performance.now();
      await Promise.all(out.need.map(async ([start, end]) => {
        const bytes = await this.fetchRange(start, end, stats);
        this.index.accept(start, bytes);
      }));
      stats.round_ms.push(Math.round(performance.now() - roundStarted));
    }
    throw new Error(`a paged query needed more than ${MAX_ROUNDS} rounds of requests`);
  }

  finish(stats) {
    stats.ms = performance.now() - stats.started;
    delete stats.started;
    this.totals.requests += stats.requests;
    this.totals.bytes += stats.bytes;
    return stats;
  }

  /// Bytes `start..end` of the pages file.
  async fetchRange(start, end, stats) {
    if (this.useChunks) return this.fromChunks(start, end, stats);
    const controller = new AbortController();
    const response = await fetch(this.pagesUrl, { headers: { Range: `bytes=${start}-${end - 1}` }, signal: controller.signal });
    if (response.status === 206) {
      const bytes = new Uint8Array(await response.arrayBuffer());
      stats.requests++;
      stats.bytes += bytes.length;
      if (bytes.length !== end - start) throw new Error(`${this.pagesUrl}: ${bytes.length} bytes for range ${start}-${end - 1}`);
      this.keepOffline(start, end, bytes, response);
      return bytes;
    }
    // The host sent the whole file (it ignores ranges): stop reading it,
    // and use the chunk files when the site has them.
    controller.abort();
    if (response.ok && this.chunks) {
      this.useChunks = true;
      return this.fromChunks(start, end, stats);
    }
    throw new Error(`${this.pagesUrl}: HTTP ${response.status} to a byte-range request${response.ok ? ' (the host ignores ranges; build the site with --chunk-size)' : ''}`);
  }

  /// Before a service worker controls the page (the first visit), keeps a
  /// range in the worker's cache under the key the worker uses (sw.js,
  /// `rangeThrough`), so what the first visit read also answers offline.
  keepOffline(start, end, bytes, response) {
    if (!('caches' in globalThis) || !globalThis.navigator?.serviceWorker || navigator.serviceWorker.controller) return;
    const key = new URL(this.pagesUrl);
    key.searchParams.set('lookalike-range', `bytes=${start}-${end - 1}`);
    const headers = { 'Content-Range': response.headers.get('Content-Range') || '', 'Content-Type': 'application/octet-stream' };
    caches.open(OFFLINE_CACHE).then((cache) => cache.put(key.href, new Response(bytes, { headers }))).catch(() => {});
  }

  async fromChunks(start, end, stats) {
    const { url, size } = this.chunks;
    const first = Math.floor(start / size);
    const last = Math.floor((end - 1) / size);
    const parts = await Promise.all(Array.from({ length: last - first + 1 }, async (_, i) => {
      const name = `${url}${String(first + i).padStart(6, '0')}.bin`;
      const response = await fetch(name);
      if (!response.ok) throw new Error(`${name}: HTTP ${response.status}`);
      const bytes = new Uint8Array(await response.arrayBuffer());
      stats.requests++;
      stats.bytes += bytes.length;
      return bytes;
    }));
    const joined = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
    parts.reduce((offset, p) => { joined.set(p, offset); return offset + p.length; }, 0);
    const from = start - first * size;
    if (joined.length < from + (end - start)) throw new Error(`${url}: chunks end before byte ${end}`);
    return joined.subarray(from, from + (end - start));
  }
}
