//! The embedder: EfficientNet-Lite as a Burn module, its weights, and the
//! batch inference that turns prepared images into feature vectors.
//!
//! The architecture ([`efficientnet`]) knows nothing of files; weights come
//! from [`weights`]; [`embedder`] runs it on whichever device the caller
//! chose (WebGPU or the Flex CPU backend; the same code for both).

pub mod efficientnet;
pub mod embedder;
pub mod label_head;
pub mod tfjs;
pub mod weights;

pub use efficientnet::{EfficientNetLite, FEATURE_DIM};
pub use embedder::Embedder;
