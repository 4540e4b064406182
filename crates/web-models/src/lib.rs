//! # Brief overview
//!
//! The photo-search wasm, loaded by the page's Web Worker (`www/worker.js`)
//! with the first photo: the embedder and the detector on WebGPU or the
//! CPU, and the label heads that describe a crop the way the catalog's items
//! are described. It returns vectors and boxes; ranking them against the
//! index is the browsing wasm's job (`lookalike-web`), on the page.
//!
//! Thin by design: everything it does is `lookalike-vision` and
//! `lookalike-index`; this crate chooses the device and converts values at
//! the JS boundary.
//!
//! ```js
//! import init, { LookalikePhoto, loadEmbedder, loadDetector } from './pkg/lookalike_web_models.js';
//! await init();
//! const embedder = await loadEmbedder(modelBytes, 'auto');  // WebGPU, else CPU
//! const detector = await loadDetector(nanodetJson, nanodetBin, undefined, undefined, undefined, 'auto');
//! detector.useParser(embedder, parserBytes);                // the garment parser on the embedder's backbone
//! const photo = LookalikePhoto.decode(photoBytes);          // decoded once, then reused
//! const items = await detector.detect(photo);               // [{class, score, bbox}, ...]
//! const layer = detector.overlay(photo);                    // RGBA: the items' masks and outlines
//! const item = detector.cutOut(photo, 0);                   // item 0 cut out of its background
//! const { vector, colour } = await embedder.describe(item); // or (photo, x, y, width, height)
//! const attributes = LookalikeAttributes.fromJson(attributesJson); // data/attributes.json, or "[]"
//! const parts = attributes.describe(vector, colour);        // what LookalikeIndex.queryVector blends
//! ```

// Burn's WebGPU device only exists in the browser build.
#![cfg(target_arch = "wasm32")]

use burn::tensor::Device;
use image::DynamicImage;
use lookalike_index::{COLOUR_BINS, ColourSignature, LabelHead, appearance};
use lookalike_vision::colour::colour_signature;
use lookalike_vision::detect::{BBox, DetectOptions, Detector, Item, overlay};
use lookalike_vision::model::tfjs::GraphModel;
use lookalike_vision::model::{Embedder, weights};
use lookalike_vision::parse;
use lookalike_vision::preprocess;
use std::rc::Rc;
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

    /// The 1280-d feature vector of the region `x, y, width, height`
    /// (pixels) of a photo (a detected item or a box the shopper drew), with
    /// its colour signature: `{vector, colour}`. Without a region
    /// (`undefined` x), the whole photo. Pad-resized exactly as the native
    /// build does.
    pub fn describe(
        &self,
        photo: &LookalikePhoto,
        x: Option<u32>,
        y: Option<u32>,
        width: Option<u32>,
        height: Option<u32>,
    ) -> js_sys::Promise {
        // Only the region is copied; the whole photo is shared, not cloned.
        let image = match (x, y, width, height) {
            (Some(x), Some(y), Some(w), Some(h)) => {
                let (x, y, w, h) =
                    region(x, y, w, h).pixels(photo.image.width(), photo.image.height());
                Rc::new(photo.image.crop_imm(x, y, w, h))
            }
            _ => Rc::clone(&photo.image),
        };
        let embedder = self.embedder.clone();
        wasm_bindgen_futures::future_to_promise(async move {
            let input = preprocess::model_input(&image);
            let mut vectors = embedder.embed_batch_async(&[input]).await.map_err(JsError::from)?;
            let described = js_sys::Object::new();
            let vector: JsValue = js_sys::Float32Array::from(vectors.remove(0).as_slice()).into();
            let colour: JsValue =
                js_sys::Float32Array::from(colour_signature(&image).as_slice()).into();
            js_sys::Reflect::set(&described, &"vector".into(), &vector)?;
            js_sys::Reflect::set(&described, &"colour".into(), &colour)?;
            Ok(described.into())
        })
    }
}

/// A shopper's photo, decoded once (under the same size limits as the
/// native build) and then detected and described region by region.
#[wasm_bindgen]
pub struct LookalikePhoto {
    image: Rc<DynamicImage>,
}

#[wasm_bindgen]
impl LookalikePhoto {
    /// Decodes an encoded image (JPEG, PNG, WebP, GIF).
    pub fn decode(bytes: &[u8]) -> Result<LookalikePhoto, JsError> {
        Ok(LookalikePhoto { image: Rc::new(preprocess::decode(bytes)?) })
    }

    #[wasm_bindgen(getter)]
    pub fn width(&self) -> u32 {
        self.image.width()
    }

    #[wasm_bindgen(getter)]
    pub fn height(&self) -> u32 {
        self.image.height()
    }
}

fn region(x: u32, y: u32, width: u32, height: u32) -> BBox {
    BBox::new(x as f32, y as f32, x.saturating_add(width) as f32, y.saturating_add(height) as f32)
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
        let heads = LabelHead::list_from_json(&bytes, "attributes.json")?;
        Ok(LookalikeAttributes { heads })
    }

    /// The appearance parts of a crop from its embedding and colour
    /// signature (what `queryVector` takes as `parts`).
    pub fn describe(&self, vector: &[f32], colour: &[f32]) -> Result<Vec<f32>, JsError> {
        let colour: &ColourSignature = colour.try_into().map_err(|_| {
            JsError::new(&format!("colour: expected {COLOUR_BINS} values, got {}", colour.len()))
        })?;
        if let Some(head) = self.heads.first()
            && head.feature_dim != vector.len() + COLOUR_BINS
        {
            return Err(JsError::new(&format!(
                "vector: expected {} values, got {}",
                head.feature_dim - COLOUR_BINS,
                vector.len()
            )));
        }
        Ok(appearance::describe(vector, colour, &self.heads))
    }
}

/// The fashion detector (the garment parser, or MoveNet garment regions;
/// NanoDet's people and objects; packshot foregrounds) on the device it
/// runs on. It keeps the last photo's items, masks included, for
/// [`LookalikeDetector::overlay`] and [`LookalikeDetector::cut_out`].
#[wasm_bindgen]
pub struct LookalikeDetector {
    detector: Detector,
    options: DetectOptions,
    backend: String,
    last: Rc<std::cell::RefCell<Vec<Item>>>,
}

#[wasm_bindgen]
impl LookalikeDetector {
    #[wasm_bindgen(getter)]
    pub fn backend(&self) -> String {
        self.backend.clone()
    }

    /// Finds garments with the parser from here on: its trained head
    /// (`parser.bpk`) on the embedder's backbone, on the embedder's device.
    #[wasm_bindgen(js_name = useParser)]
    pub fn use_parser(
        &mut self,
        embedder: &LookalikeEmbedder,
        head: Vec<u8>,
    ) -> Result<(), JsError> {
        let backbone = embedder.embedder.model().clone();
        let device = embedder.embedder.device().clone();
        let head = parse::head_from_burnpack_bytes(head, &backbone, "parser.bpk", &device)?;
        self.detector =
            self.detector.clone().with_parser(parse::Parser::new(backbone, head, device));
        Ok(())
    }

    /// The items in a photo, best first:
    /// `[{class, score, bbox: {x0, y0, x1, y1}}]` in the photo's pixels.
    pub fn detect(&self, photo: &LookalikePhoto) -> js_sys::Promise {
        let (detector, options, rgb) =
            (self.detector.clone(), self.options.clone(), photo.image.to_rgb8());
        let last = Rc::clone(&self.last);
        wasm_bindgen_futures::future_to_promise(async move {
            let items = detector.detect(&rgb, &options).await.map_err(JsError::from)?;
            let value = serde_wasm_bindgen::to_value(&items).map_err(JsError::from)?;
            *last.borrow_mut() = items;
            Ok(value)
        })
    }

    /// The last photo's items drawn as the native `detect --overlay` draws
    /// them: RGBA pixels, the photo's size, for a canvas over the photo.
    pub fn overlay(&self, photo: &LookalikePhoto) -> js_sys::Uint8ClampedArray {
        let layer = overlay(&self.last.borrow(), photo.image.width(), photo.image.height());
        js_sys::Uint8ClampedArray::from(layer.as_raw().as_slice())
    }

    /// Item `index` of the last photo, as it is embedded: its box with a
    /// margin, cut out of the background by its mask when it has one.
    #[wasm_bindgen(js_name = cutOut)]
    pub fn cut_out(&self, photo: &LookalikePhoto, index: usize) -> Result<LookalikePhoto, JsError> {
        let last = self.last.borrow();
        let item = last.get(index).ok_or_else(|| {
            JsError::new(&format!("no item {index}: the photo has {}", last.len()))
        })?;
        Ok(LookalikePhoto { image: Rc::new(item.crop(&photo.image)) })
    }
}

/// Loads the detector's TF.js files (model.json bytes and the concatenated
/// weight shards of each). Either may be absent (`undefined`): without the
/// object detector, people are not told apart; the pose model is not
/// needed when the parser will be used ([`LookalikeDetector::use_parser`]). `options`:
/// the site's detection options (classes, min_score, max_boxes) or
/// `undefined` for the defaults.
#[wasm_bindgen(js_name = loadDetector)]
pub async fn load_detector(
    objects_json: Option<Vec<u8>>,
    objects_weights: Option<Vec<u8>>,
    pose_json: Option<Vec<u8>>,
    pose_weights: Option<Vec<u8>>,
    options: JsValue,
    prefer: String,
) -> Result<LookalikeDetector, JsError> {
    let options: DetectOptions = if options.is_undefined() || options.is_null() {
        DetectOptions::default()
    } else {
        serde_wasm_bindgen::from_value(options)
            .map_err(|e| JsError::new(&format!("detection options: {e}")))?
    };
    options.validate()?;
    let objects = match (objects_json, objects_weights) {
        (Some(json), Some(weights)) => Some(GraphModel::parse(&json, &weights, "object detector")?),
        _ => None,
    };
    let pose = match (pose_json, pose_weights) {
        (Some(json), Some(weights)) => Some(GraphModel::parse(&json, &weights, "pose model")?),
        _ => None,
    };
    let (device, backend) = choose_device(&prefer).await?;
    let detector = Detector::new(objects.as_ref(), pose.as_ref(), &device)?;
    Ok(LookalikeDetector { detector, options, backend: backend.to_string(), last: Rc::default() })
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
        let head = LabelHead::from_json(&bytes, "labels.json")?;
        Ok(LookalikeLabels { head })
    }

    /// `{label, confidence}` for an embedding.
    pub fn predict(&self, vector: &[f32]) -> Result<JsValue, JsError> {
        if vector.len() != self.head.feature_dim {
            return Err(JsError::new(&format!(
                "expected {} values, got {}",
                self.head.feature_dim,
                vector.len()
            )));
        }
        Ok(serde_wasm_bindgen::to_value(&self.head.predict(vector))?)
    }
}

/// Loads the embedder from a Burnpack record. `prefer`: `"auto"` (WebGPU when
/// the browser offers an adapter, else CPU), `"webgpu"` or `"cpu"`.
#[wasm_bindgen(js_name = loadEmbedder)]
pub async fn load_embedder(
    model_bytes: Vec<u8>,
    prefer: String,
) -> Result<LookalikeEmbedder, JsError> {
    let (device, backend) = choose_device(&prefer).await?;
    let model = weights::from_burnpack_bytes(model_bytes, false, "model record", &device)?;
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
/// adapter is detected before wgpu is asked to initialise. Through the
/// global scope, not `window`: in the worker this runs in, `window` is
/// absent and WebGPU would silently fall back to the CPU.
async fn webgpu_adapter_available() -> bool {
    let navigator =
        js_sys::Reflect::get(&js_sys::global(), &"navigator".into()).unwrap_or(JsValue::UNDEFINED);
    if navigator.is_undefined() || navigator.is_null() {
        return false;
    }
    let gpu = js_sys::Reflect::get(&navigator, &"gpu".into()).unwrap_or(JsValue::UNDEFINED);
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
