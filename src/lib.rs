//! # Brief overview
//!
//! The `lookalike` command-line tool's library: everything native that turns
//! a brand's catalog into the static site and serves it. The product's cores
//! are their own crates (docs/architecture.md):
//! - `lookalike-forest`: the approximate nearest-neighbour forest;
//! - `lookalike-index`: the site's index file, appearance and ranking;
//! - `lookalike-vision`: preprocessing, colour, the embedder and detector.
//!
//! This crate adds reading catalogs ([`catalog`]), fetching images under
//! limits ([`fetch`]), building the site ([`site_builder`]), its manifest
//! ([`site`]), the embedded page assets ([`assets`]), serving it
//! ([`serve`]) and the command line itself ([`cli`]).

pub mod assets;
pub mod attributes;
pub mod catalog;
pub mod catalog_embeddings;
pub mod cli;
pub mod crops;
pub mod eval;
pub mod fetch;
pub mod fsutil;
pub mod labels;
pub mod memory;
pub mod npy;
pub mod paged_site;
pub mod parser_training;
pub mod progress;
pub mod serve;
pub mod site;
pub mod site_builder;
