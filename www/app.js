// The page's shell: fetch the site's manifest, index and model with progress,
// draw the catalog, and ask the wasm module for look-alikes. All search and
// embedding happens in Rust (www/pkg); this file only moves data and draws.
//
// Catalog strings are only ever assigned with textContent / attributes, never
// parsed as HTML, so a hostile product name stays text.

import init, { LookalikeIndex, loadEmbedder } from './pkg/lookalike.js';

const params = new URLSearchParams(location.search);
const $ = (id) => document.getElementById(id);

const state = {
  manifest: null,
  index: null,
  embedder: null,
  lastQuery: null, // what the last search was, for tests and debugging
};
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

/// Fetches a URL as bytes, reporting download progress.
async function fetchBytes(url, label) {
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
    setStatus(`Loading ${label}… ${(received / 1e6).toFixed(1)} MB`);
    if (total) setProgress(received / total);
  }
  const bytes = new Uint8Array(received);
  let offset = 0;
  for (const chunk of chunks) {
    bytes.set(chunk, offset);
    offset += chunk.length;
  }
  return bytes;
}

function productCard(product, { score, tag = 'button' } = {}) {
  const card = document.createElement(tag);
  card.className = 'product';
  card.dataset.id = product.id;
  if (tag === 'button') card.type = 'button';
  const img = document.createElement('img');
  img.src = product.thumb;
  img.alt = product.title || `Product ${product.id}`;
  img.loading = 'lazy';
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
    s.title = 'cosine similarity';
    card.append(s);
  }
  return card;
}

function renderCatalog() {
  const list = $('catalog');
  const fragment = document.createDocumentFragment();
  state.manifest.products.forEach((product, item) => {
    const li = document.createElement('li');
    const card = productCard(product);
    card.addEventListener('click', () => showLookalikes(item));
    li.append(card);
    fragment.append(li);
  });
  list.replaceChildren(fragment);
}

function options() {
  const k = Math.max(1, Math.min(50, Number($('k').value) || 10));
  return { k, sameLabel: $('same-label').checked };
}

function renderResults(title, hits, millis, extra) {
  $('results').hidden = false;
  $('results-title').textContent = title;
  $('results-meta').textContent = `${hits.length} look-alikes found in ${millis.toFixed(2)} ms`;
  const list = $('results-list');
  const fragment = document.createDocumentFragment();
  for (const hit of hits) {
    const li = document.createElement('li');
    const product = state.manifest.products[hit.item];
    const card = productCard(product, { score: hit.score });
    card.addEventListener('click', () => showLookalikes(hit.item));
    li.append(card);
    fragment.append(li);
  }
  list.replaceChildren(fragment);
  if (extra) $('results-meta').prepend(extra, document.createElement('br'));
  $('results').scrollIntoView({ block: 'nearest' });
}

function showLookalikes(item) {
  const { k, sameLabel } = options();
  const started = performance.now();
  const hits = state.index.queryItem(item, k, undefined, sameLabel);
  const millis = performance.now() - started;
  const product = state.manifest.products[item];
  state.lastQuery = { kind: 'item', item, id: product.id, hits, millis };
  const preview = document.createElement('img');
  preview.className = 'query-photo';
  preview.src = product.thumb;
  preview.alt = product.title || `Product ${product.id}`;
  renderResults(`Looks like: ${product.title || product.id}`, hits, millis, preview);
}

async function searchPhoto(file) {
  if (!state.embedder) {
    setStatus('The model is still loading; try again in a moment.');
    return;
  }
  const bytes = new Uint8Array(await file.arrayBuffer());
  const started = performance.now();
  setStatus(`Embedding your photo on ${state.embedder.backend}…`);
  const vector = await state.embedder.embedImage(bytes);
  const embedMillis = performance.now() - started;
  const { k } = options();
  const searchStarted = performance.now();
  const hits = state.index.queryVector(vector, k, undefined, undefined);
  const millis = performance.now() - searchStarted;
  state.lastQuery = { kind: 'photo', name: file.name, vector: Array.from(vector), hits, millis, embedMillis };
  const preview = document.createElement('img');
  preview.className = 'query-photo';
  preview.alt = 'your photo';
  preview.src = URL.createObjectURL(file);
  renderResults(`Looks like your photo`, hits, millis, preview);
  setStatus(`Photo embedded in ${embedMillis.toFixed(0)} ms on ${state.embedder.backend}.`);
}

async function loadModel() {
  const bytes = await fetchBytes(state.manifest.model.file, 'model');
  setStatus('Starting the model…');
  const prefer = params.get('backend') || 'auto';
  state.embedder = await loadEmbedder(bytes, prefer);
  const badge = $('backend');
  badge.hidden = false;
  badge.textContent = state.embedder.backend === 'webgpu' ? 'WebGPU' : 'CPU (wasm)';
  badge.dataset.backend = state.embedder.backend;
  $('photo').disabled = false;
  setProgress(null);
  setStatus(`Ready: ${state.index.length} products. Photo search runs on ${badge.textContent}.`);
}

async function main() {
  setStatus('Loading the search engine…');
  await init();
  const manifestResponse = await fetch('data/catalog.json');
  if (!manifestResponse.ok) throw new Error(`catalog: HTTP ${manifestResponse.status}`);
  state.manifest = await manifestResponse.json();
  const indexBytes = await fetchBytes(state.manifest.index, 'index');
  state.index = LookalikeIndex.fromBytes(indexBytes);
  renderCatalog();
  document.body.dataset.ready = 'index';
  $('photo').addEventListener('change', (event) => {
    const file = event.target.files[0];
    if (file) searchPhoto(file).catch(reportError);
  });
  await loadModel();
  document.body.dataset.ready = 'model';
}

function reportError(error) {
  console.error(error);
  setProgress(null);
  setStatus(`Error: ${error.message || error}`, { error: true });
  document.body.dataset.error = String(error.message || error);
}

main().catch(reportError);
