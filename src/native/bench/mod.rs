//! Benchmarks that print numbers, each against a reference measured in the
//! same run: `lookalike bench forest` and `lookalike bench build`.

pub mod build;
pub mod forest;
