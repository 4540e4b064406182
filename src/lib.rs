//! lookalike: find the products that look most alike, in the browser.
//!
//! The shared core, identical on both targets:
//! - [`catalog`]: reading a brand's catalog (CSV, JSON, JSON Lines);
//! - [`preprocess`]: decoding and pad-resizing images for the embedder;
//! - [`model`]: EfficientNet-Lite as a Burn module and its weights, and
//!   TF.js graph models compiled to Burn;
//! - [`detect`]: the fashion items in a photo (NanoDet, MoveNet, packshots);
//! - [`forest`]: the approximate nearest-neighbour forest;
//! - [`index_file`]: the static index file the site ships;
//! - [`colour`]: a product's colours, as a small perceptual histogram;
//! - [`appearance`]: colour and learned attributes stored beside the forest
//!   and blended with the visual cosine at query time;
//! - [`rank`]: recommendations in the report's JSON shape;
//! - [`site`]: the built site's manifest.
//!
//! Target-specific code lives behind one `cfg` each: [`native`] (the
//! command-line tool: build, query, serve) and `wasm` (the browser API).

pub mod appearance;
pub mod catalog;
pub mod colour;
pub mod detect;
pub mod forest;
pub mod index_file;
pub mod model;
pub mod preprocess;
pub mod rank;
pub mod site;

#[cfg(not(target_arch = "wasm32"))]
pub mod native;

#[cfg(target_arch = "wasm32")]
pub mod wasm;
