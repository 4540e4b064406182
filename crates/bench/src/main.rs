//! # Brief overview
//!
//! `lookalike-bench`: whole-tool benchmarks that print numbers, each against
//! a reference measured in the same run. They live here, not in the shipped
//! `lookalike` binary, and may shell out to Python (Annoy, numpy) and node
//! (the browsers); `./build.sh bench KIND` installs what they need.
//!
//! ```text
//! lookalike-bench ann [--quick] [--json]      the forest against every ANN peer on public data
//! lookalike-bench forest [--quick] [--json]   the forest against exact search and Annoy
//! lookalike-bench build                       images per second of the build's stages
//! lookalike-bench quality                     retrieval quality on the shared catalogs
//! lookalike-bench detect                      garment detection on street photos
//! lookalike-bench parser-curve [--quick]      the garment parser trained on a quarter to all of its photos
//! lookalike-bench web                         the demo site in three browsers
//! lookalike-bench scale [--quick] [--json]    a paged site of 1,000,000 products over a slow network
//! ```
//!
//! With `--json` a run prints one JSON document; the runs a doc quotes are
//! committed under `bench/runs/`.

mod ann;
mod build;
mod detect;
mod forest;
mod parser_curve;
mod quality;
mod scale;
mod truth;
mod web;

use anyhow::Result;
use clap::Parser;
use lookalike::cli::default_cache_dir;
use std::path::PathBuf;

/// The checkout's embedder record, which `./build.sh` converts.
const DEFAULT_MODEL: &str = "models/efficientnet-lite0.bpk";

/// A path in the checkout the benchmarks measure (they read its models,
/// page and data, never an installed copy's).
fn project_path(relative: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..").join(relative)
}

/// Benchmarks that print numbers (ratios against references measured in the same run).
#[derive(Parser)]
#[command(name = "lookalike-bench", version)]
struct Bench {
    #[arg(value_enum)]
    what: BenchKind,
    /// A smaller run (about a minute once embeddings are cached).
    #[arg(long)]
    quick: bool,
    #[arg(long)]
    json: bool,
    /// Only the datasets whose name contains this (e.g. 1000000).
    #[arg(long)]
    dataset: Option<String>,
}

#[derive(clap::ValueEnum, Clone, Debug)]
enum BenchKind {
    /// The forest against Annoy, hnswlib, faiss, usearch and voyager on Fashion-MNIST and GloVe.
    Ann,
    /// The ANN forest against exact search and Annoy 1.17.
    Forest,
    /// Images per second of the build's stages, and the embedder's FLOP/s.
    Build,
    /// Retrieval quality on the shared catalogs (exact search over the embeddings).
    Quality,
    /// Garment detection on CCP street photos, and the label head's accuracy.
    Detect,
    /// The garment parser's learning curve: heads trained on a quarter, half, three quarters and all of CCP's training photos.
    ParserCurve,
    /// The demo site in headless Chromium: bytes, time to results, photo queries.
    Web,
    /// Paged sites of 100,000 and 1,000,000 synthetic products: build, recall, bytes and latency per query.
    Scale,
}

fn main() {
    if let Err(error) = run(Bench::parse()) {
        eprintln!("error: {error:#}");
        std::process::exit(1);
    }
}

fn run(Bench { what, quick, json, dataset }: Bench) -> Result<()> {
    let data_dir = std::env::var_os("LOOKALIKE_DATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| project_path("../shared/data"));
    match what {
        BenchKind::Ann => ann::run(&ann::AnnOptions {
            quick,
            json,
            only: dataset,
            cache_dir: default_cache_dir(),
            project: project_path("."),
        }),
        BenchKind::Forest => forest::run(&forest::BenchOptions {
            quick,
            only: dataset,
            json,
            data_dir,
            cache_dir: default_cache_dir(),
            model: project_path(DEFAULT_MODEL),
            project: project_path("."),
        }),
        BenchKind::Build => build::run(&build::BuildBenchOptions {
            quick,
            json,
            data_dir,
            cache_dir: default_cache_dir(),
            model: project_path(DEFAULT_MODEL),
        }),
        BenchKind::Quality => quality::run(&quality::QualityOptions {
            json,
            data_dir,
            cache_dir: default_cache_dir(),
            model: project_path(DEFAULT_MODEL),
        }),
        BenchKind::Web => web::run(&web::WebBenchOptions {
            json,
            data_dir,
            cache_dir: default_cache_dir(),
            model: project_path(DEFAULT_MODEL),
            project: project_path("."),
        }),
        BenchKind::Scale => scale::run(&scale::ScaleOptions {
            quick,
            json,
            only: dataset,
            cache_dir: default_cache_dir(),
            project: project_path("."),
        }),
        BenchKind::Detect => detect::run(&detect::DetectBenchOptions {
            files: validation_files(data_dir, quick),
            json,
            project: project_path("."),
        }),
        BenchKind::ParserCurve => parser_curve::run(&parser_curve::ParserCurveOptions {
            files: validation_files(data_dir, quick),
            json,
        }),
    }
}

/// The checkout's models and the shared data, for the detection benchmarks.
fn validation_files(data_dir: PathBuf, quick: bool) -> detect::ValidationFiles {
    detect::ValidationFiles {
        data_dir,
        models_dir: project_path("models"),
        cache_dir: default_cache_dir(),
        model: project_path(DEFAULT_MODEL),
        quick,
    }
}

/// A benchmark's report: as one JSON document with `--json`, else as text.
fn emit<T: serde::Serialize>(json: bool, report: &T, print: fn(&T)) -> Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(report)?);
    } else {
        print(report);
    }
    Ok(())
}
