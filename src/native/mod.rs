//! The native command-line tool: turns a catalog into the static site
//! (fetch, embed, build the forest), answers queries, evaluates and serves.

pub mod bench;
pub mod attributes;
pub mod crops;
pub mod cli;
pub mod eval;
pub mod fetch;
pub mod fsutil;
pub mod labels;
pub mod memory;
pub mod npy;
pub mod progress;
pub mod serve;
pub mod site_builder;
