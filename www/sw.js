// The site's service worker: after the first visit the page works offline.
//
// The page puts what it downloads on the first visit (the wasm, the index,
// the catalog) into this worker's cache itself, and registers the worker
// only after it has loaded, so installing precaches just the small shell
// files still missing: no engine downloads the big files twice (WebKit's
// worker does not share the page's HTTP cache, and fetched everything
// again). Everything else the page fetches (thumbnails, the embedder and
// detector with the first photo) is cached as it is used.
//
// Requests go to the network first, so a rebuilt site is picked up at once
// when online, and fall back to the cache when offline. The worker
// revalidates with the validators of its own cached copy (If-None-Match,
// If-Modified-Since), so an unchanged file costs a 304 on every engine,
// whatever the engine's HTTP cache does with a worker's requests.

const CACHE = 'lookalike-v3';
const SHELL = [
  './', 'index.html', 'www/app.js', 'www/engine.js', 'www/paged.js', 'www/links.js', 'www/style.css',
  'www/pkg/lookalike_web.js', 'www/pkg/lookalike_web_bg.wasm', 'data/catalog.json',
];

self.addEventListener('install', (event) => {
  event.waitUntil((async () => {
    const cache = await caches.open(CACHE);
    const missing = [];
    for (const path of SHELL) if (!(await cache.match(path))) missing.push(path);
    await cache.addAll(missing);
    await self.skipWaiting();
  })());
});

self.addEventListener('activate', (event) => {
  event.waitUntil((async () => {
    for (const name of await caches.keys()) if (name !== CACHE) await caches.delete(name);
    await self.clients.claim();
  })());
});

self.addEventListener('fetch', (event) => {
  const request = event.request;
  if (request.method !== 'GET' || new URL(request.url).origin !== self.location.origin) return;
  if (request.headers.has('Range')) event.respondWith(rangeThrough(request));
  else event.respondWith(request.mode === 'navigate' ? passThrough(request) : revalidate(request));
});

/// Byte ranges (a paged index's pages): network first; each range fetched
/// is kept under its own key (the Cache API stores no 206 responses), so
/// the parts of a catalog a shopper visited answer offline.
async function rangeThrough(request) {
  const range = request.headers.get('Range').replace(/[^a-z0-9=,-]/gi, '');
  const url = new URL(request.url);
  url.hash = '';
  url.searchParams.set('lookalike-range', range);
  try {
    const response = await fetch(request);
    if (response.status === 206) {
      const copy = response.clone();
      const contentRange = response.headers.get('Content-Range') || '';
      copy.arrayBuffer().then(async (body) => {
        const cache = await caches.open(CACHE);
        await cache.put(url.href, new Response(body, { headers: { 'Content-Range': contentRange, 'Content-Type': 'application/octet-stream' } }));
      }).catch(() => {});
    }
    return response;
  } catch {
    const cached = await caches.match(url.href);
    if (!cached) return Response.error();
    return new Response(await cached.arrayBuffer(), { status: 206, headers: { 'Content-Range': cached.headers.get('Content-Range') } });
  }
}

/// Network first, the cache when offline (pages).
async function passThrough(request) {
  try {
    const response = await fetch(request);
    if (response.ok && response.status === 200) {
      const copy = response.clone();
      caches.open(CACHE).then((cache) => cache.put(request, copy));
    }
    return response;
  } catch {
    return (await caches.match(request, { ignoreSearch: true })) || Response.error();
  }
}

/// Network first, asking the server whether the cached copy is current.
async function revalidate(request) {
  const cache = await caches.open(CACHE);
  const cached = await cache.match(request, { ignoreSearch: true });
  const headers = new Headers(request.headers);
  const etag = cached && cached.headers.get('ETag');
  const modified = cached && cached.headers.get('Last-Modified');
  if (etag) headers.set('If-None-Match', etag);
  else if (modified) headers.set('If-Modified-Since', modified);
  let response;
  try {
    // no-store: the 304 comes back to this worker, not to a cache of the engine's.
    response = await fetch(request.url, { headers, cache: cached ? 'no-store' : 'default', credentials: 'same-origin' });
  } catch {
    return cached || Response.error();
  }
  if (response.status === 304 && cached) return cached;
  if (response.status === 200) await cache.put(request, response.clone());
  return response;
}
