//! # Brief overview
//!
//! Images to vectors, on any Burn device (WebGPU in the browser, the Flex
//! CPU backend anywhere):
//! - [`preprocess`]: decoding under limits and pad-resizing for the embedder;
//! - [`colour`]: a product's colours as a small perceptual histogram;
//! - [`model`]: EfficientNet-Lite as a Burn module and its weights, the label
//!   heads' training, and TF.js graph models compiled to Burn;
//! - [`parse`]: the garment parser trained here, and items from its regions;
//! - [`detect`]: the fashion items in a photo (the parser, NanoDet, MoveNet, packshots).
//!
//! The architecture knows nothing of files (weights come separately) and the
//! same code runs natively and in the browser's model worker.
//!
//! ```
//! use burn::tensor::Device;
//! use lookalike_vision::model::efficientnet::{EfficientNetLite, Variant};
//! use lookalike_vision::{Embedder, preprocess};
//! let device = Device::flex();
//! // Random weights here; `model::weights` loads the real ones.
//! let embedder = Embedder::new(EfficientNetLite::new(Variant::Lite0, false, &device), device);
//! let photo = image::DynamicImage::new_rgb8(64, 48);
//! let vectors = embedder.embed_batch(&[preprocess::model_input(&photo)]).unwrap();
//! assert_eq!(vectors[0].len(), lookalike_vision::FEATURE_DIM);
//! ```

pub mod colour;
pub mod detect;
pub mod model;
pub mod parse;
pub mod preprocess;

pub use detect::{BBox, DetectError, DetectOptions, Detector, Item};
pub use model::{EfficientNetLite, Embedder, FEATURE_DIM};
