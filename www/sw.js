// The site's service worker: after the first visit the page works offline.
//
// Install precaches the shell and the data browsing needs (the wasm, the
// index, the catalog); everything else the page fetches (thumbnails, and the
// embedder and detector with the first photo) is cached as it is used.
// Requests go to the network first, so a rebuilt site is picked up at once
// when online, and fall back to the cache when offline.

const CACHE = 'lookalike-v1';
const SHELL = [
  './', 'index.html', 'www/app.js', 'www/style.css', 'www/pkg/lookalike.js', 'www/pkg/lookalike_bg.wasm',
  'data/catalog.json', 'data/index.lkf',
];

self.addEventListener('install', (event) => {
  event.waitUntil(caches.open(CACHE).then((cache) => cache.addAll(SHELL)).then(() => self.skipWaiting()));
});

self.addEventListener('activate', (event) => {
  event.waitUntil(self.clients.claim());
});

self.addEventListener('fetch', (event) => {
  const request = event.request;
  if (request.method !== 'GET' || new URL(request.url).origin !== self.location.origin) return;
  event.respondWith(
    fetch(request)
      .then((response) => {
        if (response.ok) {
          const copy = response.clone();
          caches.open(CACHE).then((cache) => cache.put(request, copy));
        }
        return response;
      })
      .catch(() => caches.match(request, { ignoreSearch: true }).then((hit) => hit || Response.error())),
  );
});
