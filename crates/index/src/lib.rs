//! # Brief overview
//!
//! What a built site answers queries with, and nothing that needs a model:
//! the static index file (the forest of `lookalike-forest` plus the product
//! ids and label names its item numbers refer to), the appearance table
//! (colour and learned attributes stored beside the forest and blended with
//! the visual cosine at query time), the label heads that name a vector,
//! and recommendations in the report's JSON shape.
//!
//! It depends on no Burn and no image crate, so the browsing wasm that a
//! storefront loads is built from this and the forest alone.
//!
//! ```
//! use lookalike_forest::{Forest, ForestParams, Metric};
//! use lookalike_index::{Index, RecommendOptions, recommend_item};
//! let vectors = vec![1.0, 0.0, 0.9, 0.1, 0.0, 1.0, -1.0, 0.0];
//! let forest = Forest::build(vectors, 2, None, &ForestParams::new(Metric::Angular)).unwrap();
//! let ids = ["a", "b", "c", "d"].map(String::from).to_vec();
//! let index = Index { forest, ids, label_names: vec![], appearance: None };
//! let back = Index::from_bytes(&index.to_bytes()).unwrap(); // the file the site ships
//! let hits = recommend_item(&back, 0, &RecommendOptions { k: 1, ..RecommendOptions::default() });
//! assert_eq!(hits[0].similar_product_id, "b");
//! ```

pub mod appearance;
mod colour;
mod index_file;
mod label_head;
pub mod paged;
pub mod rank;

pub use appearance::{AppearanceError, Layout, Part, PartsTable, Weights};
pub use colour::{COLOUR_BINS, ColourSignature, signature_row, similarity};
pub use index_file::{FORMAT_VERSION, Index, IndexFileError, MAGIC, OpenError, Section, resign};
pub use label_head::{LabelHead, LabelHeadError, Prediction, normalized, softmax};
pub use rank::{RecommendOptions, Recommendation, recommend_item, recommend_vector};
