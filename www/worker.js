// The photo worker: runs the models (www/pkg/lookalike_web_models) off the
// page's main thread, so finding the items in a photo and embedding them
// never freezes the page. The page only posts messages:
//
//   { id, op: 'loadEmbedder', model, attributes, labels, prefer } -> { backend }
//   { id, op: 'loadDetector', objectsJson, objects, poseJson, pose, parser, options, prefer } -> { backend }
//   { id, op: 'open', bytes }          -> { width, height }   (decoded once, kept)
//   { id, op: 'detect' }               -> [{ class, score, bbox }]
//   { id, op: 'overlay' }              -> { width, height, pixels }  (the items' masks, RGBA)
//   { id, op: 'describe', box, item }  -> { vector, colour, parts, prediction }
//
// The garment parser (`parser`: its head's bytes) runs on the embedder's
// backbone, so loadEmbedder comes first. `describe` with an `item` (an
// index into the last detection) embeds that item cut out by its mask.
//
// and gets `{ id, result }` or `{ id, error }` back. Byte buffers are
// transferred, not copied.

import init, { LookalikeAttributes, LookalikeLabels, LookalikePhoto, loadDetector, loadEmbedder } from './pkg/lookalike_web_models.js';

const ready = init({ module_or_path: new URL('./pkg/lookalike_web_models_bg.wasm', import.meta.url) });
const state = { embedder: null, detector: null, attributes: null, labels: null, photo: null };

const ops = {
  async loadEmbedder({ model, attributes, labels, prefer }) {
    state.embedder = await loadEmbedder(model, prefer);
    state.attributes = LookalikeAttributes.fromJson(attributes);
    state.labels = labels ? LookalikeLabels.fromJson(labels) : null;
    return { backend: state.embedder.backend };
  },
  async loadDetector({ objectsJson, objects, poseJson, pose, parser, options, prefer }) {
    state.detector = await loadDetector(objectsJson, objects, poseJson, pose, options, prefer);
    if (parser) {
      if (!state.embedder) throw new Error('the parser runs on the embedder: load it first');
      state.detector.useParser(state.embedder, parser);
    }
    return { backend: state.detector.backend };
  },
  async overlay() {
    if (!state.detector) throw new Error('the detector is not loaded');
    const pixels = state.detector.overlay(photo());
    return { width: photo().width, height: photo().height, pixels };
  },
  async open({ bytes }) {
    state.photo?.free();
    state.photo = LookalikePhoto.decode(bytes);
    return { width: state.photo.width, height: state.photo.height };
  },
  async detect() {
    if (!state.detector) throw new Error('the detector is not loaded');
    return state.detector.detect(photo());
  },
  /// A region's vector and colour, the appearance parts the index blends
  /// (from the site's learned attributes), and the label head's guess.
  async describe({ box, item }) {
    if (!state.embedder) throw new Error('the embedder is not loaded');
    const { vector, colour } = await describeRegion(box, item);
    const parts = state.attributes.describe(vector, colour);
    const prediction = state.labels ? state.labels.predict(vector) : null;
    return { vector, colour, parts, prediction };
  },
};

/// A detected item (cut out by its mask), a drawn box, or the whole photo.
async function describeRegion(box, item) {
  if (Number.isInteger(item) && state.detector) {
    const cut = state.detector.cutOut(photo(), item);
    try { return await state.embedder.describe(cut); } finally { cut.free(); }
  }
  return box
    ? state.embedder.describe(photo(), box.x, box.y, box.width, box.height)
    : state.embedder.describe(photo());
}

function photo() {
  if (!state.photo) throw new Error('no photo is open');
  return state.photo;
}

self.onmessage = async ({ data: { id, op, ...payload } }) => {
  try {
    await ready;
    if (!Object.hasOwn(ops, op)) throw new Error(`unknown operation ${op}`);
    const result = await ops[op](payload);
    const transfer = [];
    for (const key of ['vector', 'colour', 'parts', 'pixels']) if (result?.[key]?.buffer) transfer.push(result[key].buffer);
    self.postMessage({ id, result }, transfer);
  } catch (error) {
    self.postMessage({ id, error: String(error?.message || error) });
  }
};
