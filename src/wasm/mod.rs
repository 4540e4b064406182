//! The browser API, exported with wasm-bindgen. Thin by design: everything it
//! does is the shared core (index file, forest, preprocessing, embedder); this
//! module only chooses the device and converts values at the JS boundary.
//!
//! ```js
//! import init, { LookalikeIndex, loadEmbedder } from './pkg/lookalike.js';
//! await init();
//! const index = LookalikeIndex.fromBytes(new Uint8Array(await (await fetch('data/index.lkf')).arrayBuffer()));
//! const hits = index.queryItem(0, 10, undefined, false);   // [{item, id, score}, ...]
//! const embedder = await loadEmbedder(modelBytes, 'auto'); // WebGPU, else CPU
//! const vector = await embedder.embedImage(photoBytes);
//! const detector = await loadDetector(nanodetJson, nanodetBin, movenetJson, movenetBin, undefined, 'auto');
//! const items = await detector.detect(photoBytes);     // [{class, score, bbox}, ...]
//! const crop = await embedder.embedCrop(photoBytes, x, y, width, height);
//! // Colour and learned attributes, blended at query time:
//! const { vector: v, colour } = await embedder.describeCrop(photoBytes, x, y, width, height);
//! const attributes = LookalikeAttributes.fromJson(attributesJson); // data/attributes.json, or "[]"
//! const parts = attributes.describe(v, colour);
//! const blended = index.queryVector(v, 10, undefined, undefined, parts, { colour: 0.3 });
//! ```

use crate::appearance::{self, Weights};
use crate::colour::{COLOUR_BINS, ColourSignature, colour_signature};
use crate::detect::{BBox, DetectOptions, Detector};
use crate::forest::{LabelFilter, NO_LABEL, Neighbor, Query};
use crate::model::label_head::LabelHead;
use crate::model::tfjs::GraphModel;
use crate::index_file::Index;
use crate::model::{Embedder, weights};
use crate::preprocess;
use crate::rank::{search_item_distinct, search_vector_distinct};
use burn::tensor::Device;
use serde::Serialize;
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::JsFuture;

unsafe extern "C" {
    /// Runs the static constructors (`.init_array`) that wasm-ld collects,
    /// such as the `inventory` registrations of CubeCL's compiler (pliron).
    fn __wasm_call_ctors();
}

#[wasm_bindgen(start)]
fn start() {
    // wasm-ld has a heuristic: when nothing calls `__wasm_call_ctors`
    // explicitly, it wraps *every* export so that it re-runs all constructors
    // first. With CubeCL linked in, that cost ~19 ms per call and made every
    // query 100x slower than natively. Calling it here, once, turns that off.
    // build.sh fails the build if wrapped (`.command_export`) exports reappear.
    unsafe { __wasm_call_ctors() };
    console_error_panic_hook::set_once();
}

/// A search result as the page sees it.
#[derive(Serialize)]
struct Hit<'a> {
    item: u32,
    id: &'a str,
    score: f32,
}

/// The forest and product ids of a built site.
#[wasm_bindgen]
pub struct LookalikeIndex {
    index: Index,
}

#[wasm_bindgen]
impl LookalikeIndex {
    /// Parses and validates an index file fetched from the site. The bytes
    /// are copied into wasm memory once and the big sections are then used in
    /// place, not decoded into further copies.
    #[wasm_bindgen(js_name = fromBytes)]
    pub fn from_bytes(bytes: Vec<u8>) -> Result<LookalikeIndex, JsError> {
        let index = Index::from_shared(std::sync::Arc::new(bytes)).map_err(|e| JsError::new(&format!("index file: {e}")))?;
        Ok(LookalikeIndex { index })
    }

    #[wasm_bindgen(getter)]
    pub fn length(&self) -> usize {
        self.index.forest.len()
    }

    #[wasm_bindgen(getter)]
    pub fn dims(&self) -> usize {
        self.index.forest.dims()
    }

    #[wasm_bindgen(js_name = itemOf)]
    pub fn item_of(&self, id: &str) -> Option<u32> {
        self.index.item_of(id)
    }

    #[wasm_bindgen(js_name = labelNames)]
    pub fn label_names(&self) -> Vec<String> {
        self.index.label_names.clone()
    }

    /// The similarity's parts and default weights:
    /// `{visual_weight, parts: [{name, dims, weight}]}`, or `null` for an
    /// index that has only the embedding.
    #[wasm_bindgen(getter)]
    pub fn appearance(&self) -> Result<JsValue, JsError> {
        let layout = self.index.appearance.as_ref().map(|t| &t.layout);
        serde_wasm_bindgen::to_value(&layout).map_err(|e| JsError::new(&e.to_string()))
    }

    /// The look-alikes of catalog item `item`, other products only; with
    /// `same_label`, only items of its label; with `label`, only that label.
    /// `weights` (`{colour: 0.3, ...}`) replace the default weights of the
    /// parts they name.
    #[wasm_bindgen(js_name = queryItem)]
    pub fn query_item(
        &self,
        item: u32,
        k: usize,
        search_k: Option<usize>,
        same_label: bool,
        label: Option<String>,
        weights: JsValue,
    ) -> Result<JsValue, JsError> {
        if item as usize >= self.index.forest.len() {
            return Err(JsError::new(&format!("no item {item}")));
        }
        let own = self.index.forest.label(item);
        let filter = match label {
            Some(name) => self.label_filter(&name)?,
            None if same_label && own != NO_LABEL => LabelFilter::Equals(own),
            None => LabelFilter::Any,
        };
        let weights = self.weights(weights)?;
        let hits = search_item_distinct(&self.index, item, &Query { k, search_k, filter }, weights.as_ref());
        self.to_js(&hits)
    }

    /// The look-alikes of an outside vector (a shopper's photo); `label`
    /// restricts them to one label name. `parts` (from
    /// `LookalikeAttributes.describe`) and `weights` blend in colour and
    /// learned attributes; without `parts` only the embedding counts.
    #[wasm_bindgen(js_name = queryVector)]
    pub fn query_vector(
        &self,
        vector: &[f32],
        k: usize,
        search_k: Option<usize>,
        label: Option<String>,
        parts: Option<Vec<f32>>,
        weights: JsValue,
    ) -> Result<JsValue, JsError> {
        let filter = match label {
            Some(name) => self.label_filter(&name)?,
            None => LabelFilter::Any,
        };
        if let (Some(parts), Some(table)) = (&parts, &self.index.appearance)
            && parts.len() != table.layout.dims()
        {
            return Err(JsError::new(&format!("parts: expected {} values, got {}", table.layout.dims(), parts.len())));
        }
        let weights = self.weights(weights)?;
        let hits = search_vector_distinct(&self.index, vector, parts.as_deref(), &Query { k, search_k, filter }, weights.as_ref())
            .map_err(|e| JsError::new(&e.to_string()))?;
        self.to_js(&hits)
    }

    /// The index's default weights with the overrides of a JS object
    /// (`undefined`: the defaults).
    fn weights(&self, overrides: JsValue) -> Result<Option<Weights>, JsError> {
        let Some(table) = &self.index.appearance else { return Ok(None) };
        if overrides.is_undefined() || overrides.is_null() {
            return Ok(None);
        }
        let map: std::collections::BTreeMap<String, f32> =
            serde_wasm_bindgen::from_value(overrides).map_err(|e| JsError::new(&format!("weights: {e}")))?;
        let overrides: Vec<(String, f32)> = map.into_iter().collect();
        Weights::defaults(&table.layout).with_overrides(&overrides, &table.layout).map(Some).map_err(|e| JsError::new(&e.to_string()))
    }

    /// The stored appearance parts of an item (colour signature, then the
    /// learned attributes' probabilities; 8-bit precision), empty when the
    /// index has none.
    #[wasm_bindgen(js_name = itemParts)]
    pub fn item_parts(&self, item: u32) -> Result<Vec<f32>, JsError> {
        if item as usize >= self.index.forest.len() {
            return Err(JsError::new(&format!("no item {item}")));
        }
        Ok(self.index.appearance.as_ref().map(|t| t.item(item)).unwrap_or_default())
    }

    /// The stored vector of an item, in tree space (normalised, projected).
    #[wasm_bindgen(js_name = itemVector)]
    pub fn item_vector(&self, item: u32) -> Result<Vec<f32>, JsError> {
        if item as usize >= self.index.forest.len() {
            return Err(JsError::new(&format!("no item {item}")));
        }
        Ok(self.index.forest.stored_vector(item))
    }

    /// A vector mapped into tree space, as the index compares it.
    #[wasm_bindgen(js_name = toTreeSpace)]
    pub fn to_tree_space(&self, vector: &[f32]) -> Result<Vec<f32>, JsError> {
        self.index.forest.to_tree_space(vector).map_err(|e| JsError::new(&e.to_string()))
    }

    fn label_filter(&self, name: &str) -> Result<LabelFilter, JsError> {
        match self.index.label_number(name) {
            Some(n) => Ok(LabelFilter::Equals(n)),
            None => Err(JsError::new(&format!("unknown label '{name}'"))),
        }
    }

    fn to_js(&self, hits: &[Neighbor]) -> Result<JsValue, JsError> {
        let hits: Vec<Hit> = hits
            .iter()
            .map(|n| Hit { item: n.item, id: &self.index.ids[n.item as usize], score: n.score })
            .collect();
        serde_wasm_bindgen::to_value(&hits).map_err(|e| JsError::new(&e.to_string()))
    }
}

/// The embedder on the device it runs on.
#[wasm_bindgen]
pub struct LookalikeEmbedder {
    embedder: Embedder,
    backend: String,
}

#[wasm_bindgen]
impl LookalikeEmbedder {
    /// `"webgpu"` or `"cpu"`.
    #[wasm_bindgen(getter)]
    pub fn backend(&self) -> String {
        self.backend.clone()
    }

    /// Decodes an encoded image (JPEG, PNG, WebP, GIF), pad-resizes it exactly
    /// as the native build does, and returns its 1280-d feature vector.
    #[wasm_bindgen(js_name = embedImage)]
    pub fn embed_image(&self, bytes: Vec<u8>) -> js_sys::Promise {
        self.embed_region(bytes, None, false)
    }

    /// As [`Self::embed_image`], for the region `x, y, width, height` (pixels)
    /// of the image: a detected item or a box the shopper drew.
    #[wasm_bindgen(js_name = embedCrop)]
    pub fn embed_crop(&self, bytes: Vec<u8>, x: u32, y: u32, width: u32, height: u32) -> js_sys::Promise {
        self.embed_region(bytes, Some(region(x, y, width, height)), false)
    }

    /// As [`Self::embed_crop`], with the region's colour signature too:
    /// `{vector, colour}` (the photo is decoded once for both). Without a
    /// region (`undefined` x), the whole image.
    #[wasm_bindgen(js_name = describeCrop)]
    pub fn describe_crop(&self, bytes: Vec<u8>, x: Option<u32>, y: Option<u32>, width: Option<u32>, height: Option<u32>) -> js_sys::Promise {
        let area = match (x, y, width, height) {
            (Some(x), Some(y), Some(w), Some(h)) => Some(region(x, y, w, h)),
            _ => None,
        };
        self.embed_region(bytes, area, true)
    }
}

fn region(x: u32, y: u32, width: u32, height: u32) -> BBox {
    BBox::new(x as f32, y as f32, (x + width) as f32, (y + height) as f32)
}

impl LookalikeEmbedder {
    fn embed_region(&self, bytes: Vec<u8>, region: Option<BBox>, with_colour: bool) -> js_sys::Promise {
        let embedder = self.embedder.clone();
        wasm_bindgen_futures::future_to_promise(async move {
            let mut image = preprocess::decode(&bytes).map_err(|e| JsError::new(&format!("image: {e}")))?;
            if let Some(region) = region {
                let (x, y, w, h) = region.pixels(image.width(), image.height());
                image = image.crop_imm(x, y, w, h);
            }
            let input = preprocess::model_input(&image);
            let mut vectors = embedder.embed_batch_async(&[input]).await.map_err(|e| JsError::new(&e.to_string()))?;
            let vector: JsValue = js_sys::Float32Array::from(vectors.remove(0).as_slice()).into();
            if !with_colour {
                return Ok(vector);
            }
            let described = js_sys::Object::new();
            let colour: JsValue = js_sys::Float32Array::from(colour_signature(&image).as_slice()).into();
            js_sys::Reflect::set(&described, &"vector".into(), &vector)?;
            js_sys::Reflect::set(&described, &"colour".into(), &colour)?;
            Ok(described.into())
        })
    }
}

/// The attributes a site learned from its catalog (`data/attributes.json`):
/// describes a photo's crop the way the catalog's items are described.
#[wasm_bindgen]
pub struct LookalikeAttributes {
    heads: Vec<LabelHead>,
}

#[wasm_bindgen]
impl LookalikeAttributes {
    /// Parses the site's attribute heads (a JSON array; `[]` for none).
    #[wasm_bindgen(js_name = fromJson)]
    pub fn from_json(bytes: Vec<u8>) -> Result<LookalikeAttributes, JsError> {
        let heads = LabelHead::list_from_json(&bytes, "attributes.json").map_err(|e| JsError::new(&e.to_string()))?;
        Ok(LookalikeAttributes { heads })
    }

    /// The appearance parts of a crop from its embedding and colour
    /// signature (what `queryVector` takes as `parts`).
    pub fn describe(&self, vector: &[f32], colour: &[f32]) -> Result<Vec<f32>, JsError> {
        let colour: &ColourSignature =
            colour.try_into().map_err(|_| JsError::new(&format!("colour: expected {COLOUR_BINS} values, got {}", colour.len())))?;
        if let Some(head) = self.heads.first()
            && head.feature_dim != vector.len() + COLOUR_BINS
        {
            return Err(JsError::new(&format!("vector: expected {} values, got {}", head.feature_dim - COLOUR_BINS, vector.len())));
        }
        Ok(appearance::describe(vector, colour, &self.heads))
    }
}

/// The composed fashion detector (NanoDet objects + MoveNet garment regions
/// + packshot foreground) on the device it runs on.
#[wasm_bindgen]
pub struct LookalikeDetector {
    detector: Detector,
    options: DetectOptions,
    backend: String,
}

#[wasm_bindgen]
impl LookalikeDetector {
    #[wasm_bindgen(getter)]
    pub fn backend(&self) -> String {
        self.backend.clone()
    }

    /// The items in an encoded photo, best first:
    /// `[{class, score, bbox: {x0, y0, x1, y1}}]` in the photo's pixels.
    pub fn detect(&self, bytes: Vec<u8>) -> js_sys::Promise {
        let (detector, options) = (self.detector.clone(), self.options.clone());
        wasm_bindgen_futures::future_to_promise(async move {
            let image = preprocess::decode(&bytes).map_err(|e| JsError::new(&format!("image: {e}")))?;
            let items = detector.detect(&image.to_rgb8(), &options).await.map_err(|e| JsError::new(&e))?;
            serde_wasm_bindgen::to_value(&items).map_err(|e| JsError::new(&e.to_string()).into())
        })
    }
}

/// Loads the detector from its TF.js files (model.json bytes and the
/// concatenated weight shards of each). `options`: the site's detection
/// options (classes, min_score, max_boxes) or `undefined` for the defaults.
#[wasm_bindgen(js_name = loadDetector)]
pub async fn load_detector(
    objects_json: Vec<u8>,
    objects_weights: Vec<u8>,
    pose_json: Vec<u8>,
    pose_weights: Vec<u8>,
    options: JsValue,
    prefer: String,
) -> Result<LookalikeDetector, JsError> {
    let options: DetectOptions = if options.is_undefined() || options.is_null() {
        DetectOptions::default()
    } else {
        serde_wasm_bindgen::from_value(options).map_err(|e| JsError::new(&format!("detection options: {e}")))?
    };
    options.validate().map_err(|e| JsError::new(&e))?;
    let objects = GraphModel::parse(&objects_json, &objects_weights, "object detector").map_err(|e| JsError::new(&e.to_string()))?;
    let pose = GraphModel::parse(&pose_json, &pose_weights, "pose model").map_err(|e| JsError::new(&e.to_string()))?;
    let (device, backend) = choose_device(&prefer).await?;
    let detector = Detector::new(Some(&objects), Some(&pose), &device).map_err(|e| JsError::new(&e.to_string()))?;
    Ok(LookalikeDetector { detector, options, backend: backend.to_string() })
}

/// Names crops with a catalog's labels (the site's `data/labels.json`).
#[wasm_bindgen]
pub struct LookalikeLabels {
    head: LabelHead,
}

#[wasm_bindgen]
impl LookalikeLabels {
    #[wasm_bindgen(js_name = fromJson)]
    pub fn from_json(bytes: Vec<u8>) -> Result<LookalikeLabels, JsError> {
        let head = LabelHead::from_json(&bytes, "labels.json").map_err(|e| JsError::new(&e.to_string()))?;
        Ok(LookalikeLabels { head })
    }

    /// `{label, confidence}` for an embedding.
    pub fn predict(&self, vector: &[f32]) -> Result<JsValue, JsError> {
        if vector.len() != self.head.feature_dim {
            return Err(JsError::new(&format!("expected {} values, got {}", self.head.feature_dim, vector.len())));
        }
        serde_wasm_bindgen::to_value(&self.head.predict(vector)).map_err(|e| JsError::new(&e.to_string()))
    }
}

/// Loads the embedder from a Burnpack record. `prefer`: `"auto"` (WebGPU when
/// the browser offers an adapter, else CPU), `"webgpu"` or `"cpu"`.
#[wasm_bindgen(js_name = loadEmbedder)]
pub async fn load_embedder(model_bytes: Vec<u8>, prefer: String) -> Result<LookalikeEmbedder, JsError> {
    let (device, backend) = choose_device(&prefer).await?;
    let model = weights::from_burnpack_bytes(model_bytes, false, "model record", &device)
        .map_err(|e| JsError::new(&e.to_string()))?;
    Ok(LookalikeEmbedder { embedder: Embedder::new(model, device), backend: backend.to_string() })
}

thread_local! {
    /// The WebGPU device, once initialised: the embedder and the detector
    /// share it (a second initialisation fails, and would waste memory).
    static WEBGPU: std::cell::RefCell<Option<Device>> = const { std::cell::RefCell::new(None) };
}

async fn choose_device(prefer: &str) -> Result<(Device, &'static str), JsError> {
    if prefer == "cpu" {
        return Ok((Device::flex(), "cpu"));
    }
    if let Some(device) = WEBGPU.with(|d| d.borrow().clone()) {
        return Ok((device, "webgpu"));
    }
    let webgpu = if webgpu_adapter_available().await {
        use burn::tensor::wgpu::WgpuBackend;
        Device::wgpu_options()
            .graphics_api(WgpuBackend::WebGpu)
            .init_async()
            .await
            .map_err(|e| format!("WebGPU initialisation failed: {e:?}"))
    } else {
        Err("this browser offers no WebGPU adapter".to_string())
    };
    match (webgpu, prefer) {
        (Ok(device), _) => {
            WEBGPU.with(|d| *d.borrow_mut() = Some(device.clone()));
            Ok((device, "webgpu"))
        }
        (Err(reason), "webgpu") => Err(JsError::new(&reason)),
        (Err(reason), _) => {
            web_sys::console::info_1(&format!("lookalike: {reason}; using the CPU backend").into());
            Ok((Device::flex(), "cpu"))
        }
    }
}

/// Asks `navigator.gpu.requestAdapter()` directly, so a browser without an
/// adapter is detected before wgpu is asked to initialise.
async fn webgpu_adapter_available() -> bool {
    let Some(window) = web_sys::window() else { return false };
    let gpu = js_sys::Reflect::get(&window.navigator(), &"gpu".into()).unwrap_or(JsValue::UNDEFINED);
    if gpu.is_undefined() || gpu.is_null() {
        return false;
    }
    let Ok(request) = js_sys::Reflect::get(&gpu, &"requestAdapter".into()) else { return false };
    let Ok(request) = request.dyn_into::<js_sys::Function>() else { return false };
    let Ok(promise) = request.call0(&gpu) else { return false };
    match JsFuture::from(js_sys::Promise::from(promise)).await {
        Ok(adapter) => !adapter.is_null() && !adapter.is_undefined(),
        Err(_) => false,
    }
}
