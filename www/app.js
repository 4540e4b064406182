// The page's shell: load the browsing engine (engine.js: the small wasm,
// the manifest and the index) with progress, draw the catalog, and ask the
// engine for look-alikes. Photos go to the photo worker (worker.js), which
// loads the models with the first photo and runs them off this thread; the
// page only posts messages and ranks the vectors it gets back. All search
// and embedding happens in Rust (www/pkg); this file only moves data and
// draws.
//
// Catalog strings are only ever assigned with textContent / attributes, never
// parsed as HTML, so a hostile product name stays text.

import { fetchBytes as download, loadEngine, timed as timeStage } from './engine.js';
import { shopLink } from './links.js';

const params = new URLSearchParams(location.search);
const $ = (id) => document.getElementById(id);

const state = {
  manifest: null,
  index: null,
  paged: null, // a paged site's search (www/paged.js), instead of `index`
  backend: null, // where the photo worker runs the embedder: 'webgpu' or 'cpu'
  detectorBackend: null, // ... and the detector
  weights: undefined, // the shopper's weights of the similarity's parts
  rerun: null, // repeats the last search (when a weight changes)
  photo: null, // { bytes, width, height, items }
  labelNames: [], // the index's labels, read once
  lastQuery: null, // what the last search was, for tests and debugging
  timings: {}, // milliseconds each stage of loading the photo path took
};

/// Notes how long `work` took in `state.timings[name]` (where the first
/// photo's time goes: fetching, starting the models).
const timed = (name, work) => timeStage(state.timings, name, work);
// A small, stable hook for tests and embedding pages.
window.lookalike = state;

function setStatus(text, { error = false } = {}) {
  $('status-text').textContent = text;
  $('status-text').classList.toggle('error', error);
}

function setProgress(fraction) {
  const bar = $('progress');
  bar.hidden = fraction === null;
  if (fraction !== null) bar.value = fraction;
}

/// Fetches a URL as bytes, showing its progress and keeping it for offline use.
function fetchBytes(url, label) {
  return download(url, { label, ...pageDownload });
}

/// How the page follows a download: the status line, the progress bar and
/// the offline cache.
const pageDownload = {
  onProgress: (received, fraction, label) => {
    setStatus(`Loading ${label}… ${(received / 1e6).toFixed(1)} MB`);
    if (fraction !== null) setProgress(fraction);
  },
  onDownloaded: remember,
};

/// The service worker's cache (sw.js), shared with the page.
const OFFLINE_CACHE = 'lookalike-v3';
const caching = []; // puts in flight: the worker registers after them

/// Keeps a download in the offline cache, with the validators the service
/// worker revalidates it by, so the worker never downloads it again. Only
/// while no worker controls the page (the first visit): after that every
/// download passes through the worker, which caches it itself.
function remember(url, response, bytes) {
  if (!('caches' in window) || navigator.serviceWorker?.controller || response.status !== 200) return;
  const headers = {};
  for (const name of ['Content-Type', 'ETag', 'Last-Modified']) {
    const value = response.headers.get(name);
    if (value) headers[name] = value;
  }
  caching.push(caches.open(OFFLINE_CACHE)
    .then((cache) => cache.put(new URL(url, location.href).href, new Response(bytes, { headers })))
    .catch(() => {})); // no cache (private browsing): only offline use is lost
}

function productCard(product, { score, tag = 'button' } = {}) {
  const card = document.createElement(tag);
  card.className = 'product';
  card.dataset.id = product.id;
  if (tag === 'button') card.type = 'button';
  const img = document.createElement('img');
  // Lazy before src: WebKit starts fetching as soon as src is set, so the
  // other order downloaded every thumbnail of the catalog on the first visit.
  img.loading = 'lazy';
  img.alt = product.title || `Product ${product.id}`;
  img.src = product.thumb;
  const title = document.createElement('span');
  title.className = 'title';
  title.textContent = product.title || product.id;
  const meta = document.createElement('span');
  meta.className = 'meta';
  meta.textContent = product.label ? product.label : `#${product.id}`;
  card.append(img, title, meta);
  if (score !== undefined) {
    const s = document.createElement('span');
    s.className = 'score';
    s.textContent = score.toFixed(3);
    s.title = 'similarity (weighted mean of the parts below the search options)';
    card.append(s);
  }
  return card;
}

/// A link to the product's own page in the shop, when the catalog has one.
function productLink(product) {
  const href = shopLink(product);
  if (!href) return null;
  const a = document.createElement('a');
  a.className = 'product-link';
  a.href = href;
  a.rel = 'noopener';
  a.textContent = 'View product';
  a.setAttribute('aria-label', `View ${product.title || product.id} in the shop`);
  return a;
}

/// A catalog entry: its card, which opens its look-alikes.
function catalogEntry(product, open) {
  const li = document.createElement('li');
  const card = productCard(product);
  card.addEventListener('click', open);
  li.append(card);
  return li;
}

/// A paged site's catalog is too large to list: the first products are shown.
async function renderPagedCatalog() {
  const { hits } = await state.paged.browse(0, 60);
  const fragment = document.createDocumentFragment();
  for (const hit of hits) {
    fragment.append(catalogEntry(hit.product, () => showPagedLookalikes(hit.product).catch(reportError)));
  }
  $('catalog').replaceChildren(fragment);
}

function renderCatalog() {
  const fragment = document.createDocumentFragment();
  const shown = new Set();
  state.manifest.products.forEach((product, item) => {
    // A product indexed from several crops is listed once, by its first.
    if (shown.has(product.id)) return;
    shown.add(product.id);
    fragment.append(catalogEntry(product, () => showLookalikes(item)));
  });
  $('catalog').replaceChildren(fragment);
}

function options() {
  const k = Math.max(1, Math.min(50, Number($('k').value) || 10));
  return { k, sameLabel: $('same-label').checked, category: $('category').value || undefined };
}

function renderCategories() {
  const select = $('category');
  for (const name of state.labelNames) {
    const option = document.createElement('option');
    option.value = name;
    option.textContent = name;
    select.append(option);
  }
  select.disabled = select.options.length <= 1;
}

function renderResults(title, hits, millis, extra) {
  $('results').hidden = false;
  $('results-title').textContent = title;
  $('results-meta').textContent = `${hits.length} look-alikes found in ${millis.toFixed(2)} ms`;
  const list = $('results-list');
  const fragment = document.createDocumentFragment();
  for (const hit of hits) {
    const li = document.createElement('li');
    const product = hit.product || state.manifest.products[hit.item];
    const card = productCard(product, { score: hit.score });
    card.addEventListener('click', () => (state.paged ? showPagedLookalikes(product).catch(reportError) : showLookalikes(hit.item)));
    li.append(card);
    const link = productLink(product);
    if (link) li.append(link);
    fragment.append(li);
  }
  list.replaceChildren(fragment);
  if (extra) $('results-meta').prepend(extra, document.createElement('br'));
  $('results').scrollIntoView({ block: 'nearest' });
}

/// One slider per part of the similarity (shape, colour, learned
/// attributes), starting at the index's defaults; moving one re-runs the
/// last search with the new weights.
function renderWeights() {
  const appearance = state.index && state.index.appearance;
  const fieldset = $('weights');
  if (!appearance) return;
  const parts = [{ name: 'visual', weight: appearance.visual_weight }, ...appearance.parts];
  const current = {};
  for (const part of parts) {
    current[part.name] = part.weight;
    const label = document.createElement('label');
    const input = document.createElement('input');
    Object.assign(input, { type: 'range', min: '0', max: '1', step: '0.05', value: String(part.weight) });
    input.dataset.part = part.name;
    const value = document.createElement('output');
    value.textContent = part.weight.toFixed(2);
    input.addEventListener('input', () => {
      current[part.name] = Number(input.value);
      value.textContent = Number(input.value).toFixed(2);
      state.weights = { ...current };
      if (state.rerun) state.rerun().catch(reportError);
    });
    label.append(part.name === 'visual' ? 'shape (image)' : part.name, input, value);
    fieldset.append(label);
  }
  fieldset.hidden = false;
}

function showLookalikes(item) {
  state.rerun = async () => showLookalikes(item);
  const { k, sameLabel, category } = options();
  const started = performance.now();
  const hits = state.index.queryItem(item, k, undefined, sameLabel, category, state.weights);
  const millis = performance.now() - started;
  const product = state.manifest.products[item];
  state.lastQuery = { kind: 'item', item, id: product.id, hits, millis, weights: state.weights };
  renderProductResults(product, hits, millis);
}

/// A product query's results, under the product's picture.
function renderProductResults(product, hits, millis) {
  const preview = document.createElement('img');
  preview.className = 'query-photo';
  preview.alt = product.title || `Product ${product.id}`;
  if (product.thumb) preview.src = product.thumb;
  renderResults(`Looks like: ${product.title || product.id}`, hits, millis, preview);
}

/// A paged site's product query: fetches what it needs (three rounds of
/// byte-range requests when cold, none when warm).
async function showPagedLookalikes(product) {
  state.rerun = async () => showPagedLookalikes(product);
  const { k, sameLabel, category } = options();
  const { hits, stats } = await state.paged.item(product.id, { k, sameLabel, label: category });
  if (!hits) throw new Error(`no product '${product.id}' in this catalog`);
  state.lastQuery = { kind: 'item', id: product.id, hits, millis: stats.ms, stats };
  renderProductResults(product, hits, stats.ms);
}

/// Look-alikes of a vector, from the whole index or the paged one.
async function queryVector(vector, k, label, parts) {
  if (state.paged) return (await state.paged.vector(vector, { k, label })).hits;
  return state.index.queryVector(vector, k, undefined, label, parts, state.weights);
}

/// The photo worker (worker.js), started with the first photo: it owns the
/// models and the decoded photo; `call` posts one operation and resolves
/// with its result.
let worker = null;
const pending = new Map();
let nextCall = 0;
function call(op, payload = {}, transfer = []) {
  if (!worker) {
    worker = new Worker(new URL('worker.js', import.meta.url), { type: 'module' });
    worker.onmessage = ({ data: { id, result, error } }) => {
      const { resolve, reject } = pending.get(id);
      pending.delete(id);
      if (error !== undefined) reject(new Error(error)); else resolve(result);
    };
    worker.onerror = (event) => {
      const error = new Error(`the photo worker failed: ${event.message || 'it could not start'}`);
      for (const { reject } of pending.values()) reject(error);
      pending.clear();
    };
  }
  const id = nextCall++;
  return new Promise((resolve, reject) => {
    pending.set(id, { resolve, reject });
    worker.postMessage({ id, op, ...payload }, transfer);
  });
}

/// Fetches the detector's TF.js files on first use and starts it in the worker.
let detectorLoading = null;
function ensureDetector() {
  if (!detectorLoading) detectorLoading = loadDetectorFiles();
  return detectorLoading;
}

async function loadDetectorFiles() {
  const info = state.manifest.detector;
  if (!info) return null;
  const concat = async (paths, label) => {
    const parts = [];
    for (const p of paths) parts.push(await fetchBytes(p, label));
    const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
    let offset = 0;
    for (const p of parts) { out.set(p, offset); offset += p.length; }
    return out;
  };
  // The garment parser runs on the embedder already loaded; the pose model
  // ships only with sites built without the parser.
  const [objectsJson, objects, poseJson, pose, parser] = await timed('detector_fetch_ms', (async () => [
    await fetchBytes(info.objects, 'detector'), await concat(info.objects_shards, 'detector'),
    info.pose ? await fetchBytes(info.pose, 'pose model') : undefined,
    info.pose ? await concat(info.pose_shards, 'pose model') : undefined,
    info.parser ? await fetchBytes(info.parser, 'garment parser') : undefined,
  ])());
  setStatus('Starting the detector…');
  const prefer = params.get('backend') || 'auto';
  const buffers = [objectsJson, objects, poseJson, pose, parser].filter(Boolean).map((b) => b.buffer);
  const { backend } = await timed('detector_start_ms', call('loadDetector', { objectsJson, objects, poseJson, pose, parser, options: info.options, prefer }, buffers));
  state.detectorBackend = backend;
  setProgress(null);
  return true;
}

/// Opens a photo from any source (file, camera, drop, paste): finds its
/// items, outlines them, and searches the best one (or the whole photo).
async function openPhoto(file) {
  await ensureModel();
  const bytes = new Uint8Array(await file.arrayBuffer());
  const view = $('photo-view');
  const loaded = new Promise((resolve, reject) => { view.onload = resolve; view.onerror = () => reject(new Error('this file is not an image the browser can show')); });
  if (view.src) URL.revokeObjectURL(view.src);
  view.src = URL.createObjectURL(file);
  await loaded;
  state.photo = { name: file.name, width: view.naturalWidth, height: view.naturalHeight, items: [] };
  $('photo-panel').hidden = false;
  $('photo-boxes').replaceChildren();
  clearMasks();
  // The worker decodes the photo once and keeps it for every region.
  await call('open', { bytes }, [bytes.buffer]);
  let detectMillis = 0;
  if (state.manifest.detector) {
    setStatus('Finding the items in your photo…');
    await ensureDetector();
    const started = performance.now();
    state.photo.items = await call('detect');
    detectMillis = performance.now() - started;
    drawBoxes(state.photo.items);
    if (state.photo.items.length) await drawMasks();
  }
  state.photo.detectMillis = detectMillis;
  if (state.photo.items.length) await searchItem(0);
  else await searchWhole();
}

/// The parser's masks and outlines, drawn by the wasm (the same pixels as
/// `lookalike detect --overlay`), on a canvas over the photo.
async function drawMasks() {
  const { width, height, pixels } = await call('overlay');
  const canvas = $('photo-masks');
  canvas.width = width;
  canvas.height = height;
  canvas.getContext('2d').putImageData(new ImageData(pixels, width, height), 0, 0);
}

function clearMasks() {
  const canvas = $('photo-masks');
  canvas.getContext('2d').clearRect(0, 0, canvas.width, canvas.height);
}

function drawBoxes(items) {
  const layer = $('photo-boxes');
  const { width, height } = state.photo;
  const fragment = document.createDocumentFragment();
  // Smaller boxes stack above larger ones, so a box inside another (a top
  // inside the dress it may be read as, a bag over a coat) stays clickable;
  // the order of the buttons, and so of the keyboard, stays best first.
  const area = (b) => (b.x1 - b.x0) * (b.y1 - b.y0);
  const bySize = items.map((item, i) => i).sort((a, b) => area(items[b].bbox) - area(items[a].bbox));
  items.forEach((item, i) => {
    const b = item.bbox;
    const button = document.createElement('button');
    button.type = 'button';
    button.className = 'item-box';
    button.style.zIndex = String(1 + bySize.indexOf(i));
    button.style.left = `${(100 * b.x0) / width}%`;
    button.style.top = `${(100 * b.y0) / height}%`;
    button.style.width = `${(100 * (b.x1 - b.x0)) / width}%`;
    button.style.height = `${(100 * (b.y1 - b.y0)) / height}%`;
    button.setAttribute('aria-pressed', 'false');
    button.setAttribute('aria-label', `Search for the ${item.class} (score ${item.score.toFixed(2)})`);
    const tag = document.createElement('span');
    tag.textContent = item.class;
    button.append(tag);
    button.addEventListener('click', (event) => { event.stopPropagation(); searchItem(i).catch(reportError); });
    button.addEventListener('pointerdown', (event) => event.stopPropagation());
    fragment.append(button);
  });
  layer.replaceChildren(fragment);
}

function markSelected(index) {
  document.querySelectorAll('#photo-boxes .item-box').forEach((b, i) => b.setAttribute('aria-pressed', String(i === index)));
}

async function searchItem(i) {
  const item = state.photo.items[i];
  const b = item.bbox;
  markSelected(i);
  const box = { x: Math.max(0, Math.floor(b.x0)), y: Math.max(0, Math.floor(b.y0)), width: Math.ceil(b.x1 - b.x0), height: Math.ceil(b.y1 - b.y0) };
  await searchRegion(box, item.class, { item: i });
}

/// Embeds a region of the photo and searches it; the label head (when the
/// site ships one) names it, and that name filters when asked to.
async function searchRegion(box, what, extra = {}) {
  const { k, sameLabel, category } = options();
  setStatus(`Looking for the ${what}…`);
  const started = performance.now();
  const { vector, parts, prediction } = await call('describe', { box, item: extra.item });
  const embedMillis = performance.now() - started;
  const known = prediction && state.labelNames.includes(prediction.label);
  const label = category || (sameLabel && known ? prediction.label : undefined);
  const searchStarted = performance.now();
  const hits = await queryVector(vector, k, label, parts);
  const millis = performance.now() - searchStarted;
  state.rerun = async () => searchRegion(box, what, extra);
  state.lastQuery = { kind: 'crop', what, box, vector: Array.from(vector), parts: Array.from(parts), prediction, label, hits, millis, embedMillis, detectMillis: state.photo.detectMillis, weights: state.weights, ...extra };
  const named = prediction ? `${what} (${prediction.label}, ${(100 * prediction.confidence).toFixed(0)}%)` : what;
  renderResults(`Looks like the ${named} in your photo`, hits, millis);
  setStatus(`Found ${state.photo.items.length} items in ${state.photo.detectMillis.toFixed(0)} ms; embedded the ${what} in ${embedMillis.toFixed(0)} ms on ${state.backend}.`);
}

async function searchWhole() {
  markSelected(-1);
  const { k, category } = options();
  const started = performance.now();
  setStatus(`Embedding your photo on ${state.backend}…`);
  const { vector, parts } = await call('describe', { box: null });
  const embedMillis = performance.now() - started;
  const searchStarted = performance.now();
  const hits = await queryVector(vector, k, category, parts);
  const millis = performance.now() - searchStarted;
  state.rerun = searchWhole;
  state.lastQuery = { kind: 'photo', name: state.photo.name, vector: Array.from(vector), parts: Array.from(parts), hits, millis, embedMillis, weights: state.weights };
  renderResults(`Looks like your photo`, hits, millis);
  setStatus(`Photo embedded in ${embedMillis.toFixed(0)} ms on ${state.backend}.`);
}

/// Drag on the photo to draw a box and search what is inside it.
function enableDrawing() {
  const stage = $('photo-stage');
  let start = null;
  let outline = null;
  const point = (event) => {
    const r = stage.getBoundingClientRect();
    return { x: Math.min(Math.max(event.clientX - r.left, 0), r.width), y: Math.min(Math.max(event.clientY - r.top, 0), r.height), r };
  };
  stage.addEventListener('pointerdown', (event) => {
    if (!state.photo) return;
    start = point(event);
    outline = document.createElement('div');
    outline.className = 'draw-box';
    stage.append(outline);
    stage.setPointerCapture(event.pointerId);
  });
  stage.addEventListener('pointermove', (event) => {
    if (!start) return;
    const p = point(event);
    Object.assign(outline.style, {
      left: `${Math.min(start.x, p.x)}px`, top: `${Math.min(start.y, p.y)}px`,
      width: `${Math.abs(p.x - start.x)}px`, height: `${Math.abs(p.y - start.y)}px`,
    });
  });
  stage.addEventListener('pointerup', (event) => {
    if (!start) return;
    const p = point(event);
    const scale = state.photo.width / p.r.width;
    const box = {
      x: Math.round(Math.min(start.x, p.x) * scale), y: Math.round(Math.min(start.y, p.y) * scale),
      width: Math.round(Math.abs(p.x - start.x) * scale), height: Math.round(Math.abs(p.y - start.y) * scale),
    };
    start = null;
    if (box.width >= 8 && box.height >= 8) {
      markSelected(-1);
      searchRegion(box, 'area you drew', { drawn: true }).catch(reportError).finally(() => outline.remove());
    } else {
      outline.remove();
    }
  });
}

/// A shopper reaching for the photo controls will likely use them: start
/// loading the embedder and detector then, not on the first visit.
function warmUpOnIntent() {
  const warm = () => {
    ensureModel().then(() => state.manifest.detector && ensureDetector()).catch(reportError);
  };
  for (const id of ['photo', 'camera']) {
    const label = $(id).closest('label');
    label.addEventListener('pointerenter', warm, { once: true });
    $(id).addEventListener('focus', warm, { once: true });
  }
}

/// Photos can also be dropped anywhere on the page, or pasted.
function enablePhotoSources() {
  for (const id of ['photo', 'camera']) {
    $(id).addEventListener('change', (event) => {
      const file = event.target.files[0];
      if (file) openPhoto(file).catch(reportError);
    });
  }
  document.addEventListener('dragover', (event) => { event.preventDefault(); document.body.classList.add('dragging'); });
  document.addEventListener('dragleave', () => document.body.classList.remove('dragging'));
  document.addEventListener('drop', (event) => {
    event.preventDefault();
    document.body.classList.remove('dragging');
    const file = [...(event.dataTransfer?.files || [])].find((f) => f.type.startsWith('image/'));
    if (file) openPhoto(file).catch(reportError);
  });
  document.addEventListener('paste', (event) => {
    const file = [...(event.clipboardData?.files || [])].find((f) => f.type.startsWith('image/'));
    if (file) openPhoto(file).catch(reportError);
  });
}

/// The embedder loads with the first photo: browsing and product clicks
/// never need it, and it is most of the site's bytes.
let modelLoading = null;
function ensureModel() {
  if (!modelLoading) modelLoading = loadModel().then(() => { document.body.dataset.ready = 'model'; });
  return modelLoading;
}

async function loadModel() {
  const model = await timed('model_fetch_ms', fetchBytes(state.manifest.model.file, 'model'));
  // The learned attributes describe a photo like the catalog's items; the
  // label head names what it shows.
  const attributes = state.manifest.attributes ? await fetchBytes(state.manifest.attributes, 'attributes') : new TextEncoder().encode('[]');
  const labels = state.manifest.labels ? await fetchBytes(state.manifest.labels, 'labels') : null;
  setStatus('Starting the model…');
  const prefer = params.get('backend') || 'auto';
  const transfer = [model.buffer, attributes.buffer, ...(labels ? [labels.buffer] : [])];
  const { backend } = await timed('model_start_ms', call('loadEmbedder', { model, attributes, labels, prefer }, transfer));
  state.backend = backend;
  const badge = $('backend');
  badge.hidden = false;
  badge.textContent = backend === 'webgpu' ? 'WebGPU' : 'CPU (wasm)';
  badge.dataset.backend = backend;
  setProgress(null);
  setStatus(`Photo search runs on ${badge.textContent}.`);
}

async function main() {
  setStatus('Loading the search engine…');
  // The small browsing wasm, the manifest and the index; the models wait
  // for the first photo.
  const site = new URL('.', location.href).href;
  const engine = await loadEngine(site, pageDownload);
  Object.assign(state.timings, engine.timings);
  state.manifest = engine.manifest;
  state.index = engine.index;
  state.paged = engine.paged;
  const search = state.paged || state.index;
  state.labelNames = search.labelNames(); // fixed for the index's life
  if (state.paged) await renderPagedCatalog(); else renderCatalog();
  renderCategories();
  renderWeights();
  document.body.dataset.ready = 'index';
  // Deep links (the widget's default target): ?product=ID shows its look-alikes.
  if (state.paged && params.get('product')) {
    await showPagedLookalikes({ id: params.get('product') });
  } else {
    const linked = params.get('product') && state.index.itemOf(params.get('product'));
    if (linked !== undefined && linked !== null && linked !== '') showLookalikes(linked);
  }
  enablePhotoSources();
  enableDrawing();
  warmUpOnIntent();
  $('photo').disabled = false;
  $('camera').disabled = false;
  setProgress(null);
  setStatus(`Ready: ${search.length} items. Choose a product, or search by photo.`);
}

function reportError(error) {
  console.error(error);
  setProgress(null);
  setStatus(`Error: ${error.message || error}`, { error: true });
  document.body.dataset.error = String(error.message || error);
}

/// Offline use: the service worker (copied to the site's root by the
/// builder, so its scope is the whole site) caches what the page loads.
function registerServiceWorker() {
  if (!('serviceWorker' in navigator) || params.get('sw') === 'off') return;
  navigator.serviceWorker.register('sw.js').then(
    (registration) => { state.serviceWorker = registration; },
    (error) => console.info('lookalike: no offline cache:', error.message),
  );
}

// The worker registers once the page has loaded what it needs (and put it
// in the offline cache), so its install does not download it all again.
main().then(() => Promise.all(caching)).then(registerServiceWorker, reportError);
