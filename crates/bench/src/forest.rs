//! `lookalike bench forest`: the forest against exact search and against
//! Spotify's Annoy (Python `annoy` 1.17, a benchmark-only tool), on the same
//! vectors and queries in the same run, so every figure is a ratio.
//!
//! Data: embeddings of the shared catalogs (computed once, cached), a
//! synthetic 44,000 x 1280 set and (full mode) a 1,000,000 x 256 set. The
//! synthetic sets are clustered in a 64-dimensional subspace with noise,
//! which is how CNN embeddings behave; uniform noise would be a benchmark of
//! nothing.

use crate::truth::{exact_top_k, recall};
use anyhow::{Context, Result};
use lookalike::npy;
use lookalike_forest::{Encoding, Forest, ForestParams, GraphParams, LabelFilter, Metric, Query};
use lookalike_index::Index;
use lookalike_vision::model::FEATURE_DIM;
use rand::{RngExt, SeedableRng, rngs::StdRng};
use serde::Serialize;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

const K: usize = 10;
/// Recall at which query speed is compared (the operating point).
const TARGET_RECALL: f64 = 0.95;

pub struct BenchOptions {
    pub quick: bool,
    /// Only datasets whose name contains this.
    pub only: Option<String>,
    pub json: bool,
    pub data_dir: PathBuf,
    pub cache_dir: PathBuf,
    pub model: PathBuf,
    /// The checkout: bench/ scripts and www/pkg live here.
    pub project: PathBuf,
}

struct Dataset {
    name: String,
    dims: usize,
    base: Vec<f32>,
    queries: Vec<f32>,
    /// Labels of the base items, for precision@10 (real catalogs).
    labels: Option<Vec<Option<String>>>,
}

/// One configuration of our forest on one dataset.
#[derive(Serialize)]
struct ForestRun {
    config: String,
    build_s: f64,
    bytes_per_item: f64,
    sweep: Vec<SweepPoint>,
    /// Same-label precision@10 (query by item) at the default search_k.
    precision_at_10: Option<f64>,
}

#[derive(Serialize, Clone)]
struct SweepPoint {
    search_k: usize,
    qps: f64,
    recall_at_10: f64,
}

#[derive(Serialize)]
struct DatasetReport {
    name: String,
    n: usize,
    dims: usize,
    queries: usize,
    exact_precision_at_10: Option<f64>,
    ours: Vec<ForestRun>,
    annoy: Option<ForestRun>,
    wasm_ms_per_query: Option<f64>,
}

pub fn run(options: &BenchOptions) -> Result<()> {
    let wanted = |name: &str| options.only.as_ref().is_none_or(|only| name.contains(only.as_str()));
    let mut datasets = Vec::new();
    for catalog in ["fashion-product-images", "hm-product-groups", "grocery-store-packages"] {
        if wanted(catalog) && (!options.quick || catalog == "fashion-product-images") {
            datasets.push(catalog_dataset(options, catalog)?);
        }
    }
    if wanted("synthetic-44000x1280") {
        datasets.push(synthetic(
            "synthetic-44000x1280",
            44_000,
            1280,
            if options.quick { 100 } else { 300 },
            1,
        ));
    }
    if !options.quick && wanted("synthetic-1000000x256") {
        datasets.push(synthetic("synthetic-1000000x256", 1_000_000, 256, 200, 2));
    }

    let mut reports = Vec::new();
    for dataset in &datasets {
        eprintln!(
            "== {} ({} x {}, {} queries)",
            dataset.name,
            dataset.base.len() / dataset.dims,
            dataset.dims,
            dataset.queries.len() / dataset.dims
        );
        reports.push(bench_dataset(dataset, options)?);
    }

    let Some(headline) = reports.iter().find(|r| r.name.starts_with("synthetic-44000")) else {
        print_tables(&reports);
        return Ok(());
    };
    let compact =
        headline.ours.iter().find(|r| r.config.starts_with("compact i8")).expect("always run");
    // Speed is compared at the recall target, by the fastest of our
    // configurations that reaches it; size is the compact one's, wasm time the graph's.
    let ours_at = headline
        .ours
        .iter()
        .filter_map(|run| operating_point(&run.sweep))
        .max_by(|a, b| a.qps.total_cmp(&b.qps));
    let annoy_at = headline.annoy.as_ref().and_then(|a| operating_point(&a.sweep));
    let summary = serde_json::json!({
        "recall_at_10": ours_at.as_ref().map(|p| p.recall_at_10),
        "qps": ours_at.as_ref().map(|p| p.qps),
        "annoy_qps": annoy_at.as_ref().map(|p| p.qps),
        "qps_ratio_vs_annoy": ours_at.as_ref().zip(annoy_at.as_ref()).map(|(o, a)| o.qps / a.qps),
        "bytes_per_item": compact.bytes_per_item,
        "compact_best_recall_at_10": compact.sweep.iter().map(|p| p.recall_at_10).fold(0.0, f64::max),
        "annoy_bytes_per_item": headline.annoy.as_ref().map(|a| a.bytes_per_item),
        "wasm_ms_per_query": headline.wasm_ms_per_query,
        "datasets": reports,
    });
    if options.json {
        println!("{summary}");
    } else {
        print_tables(&reports);
        println!(
            "\nheadline (synthetic 44,000 x 1280; speed at the smallest search_k with recall@10 >= {TARGET_RECALL}, size and wasm time of the compact config): {}",
            serde_json::to_string(&serde_json::json!({
                "recall_at_10": summary["recall_at_10"], "qps": summary["qps"], "annoy_qps": summary["annoy_qps"],
                "qps_ratio_vs_annoy": summary["qps_ratio_vs_annoy"], "bytes_per_item": summary["bytes_per_item"],
                "annoy_bytes_per_item": summary["annoy_bytes_per_item"], "wasm_ms_per_query": summary["wasm_ms_per_query"],
                "compact_best_recall_at_10": summary["compact_best_recall_at_10"],
            }))?
        );
    }
    Ok(())
}

/// The smallest-search_k point of a sweep that reaches the target recall.
fn operating_point(sweep: &[SweepPoint]) -> Option<SweepPoint> {
    sweep.iter().find(|p| p.recall_at_10 >= TARGET_RECALL).cloned()
}

fn configs(dataset: &Dataset) -> Vec<(String, ForestParams)> {
    let n = dataset.base.len() / dataset.dims;
    let exact = ForestParams { encoding: Encoding::F32, ..ForestParams::new(Metric::Angular) };
    // 128 dimensions keep what matters of 1280-d embeddings; smaller inputs keep half.
    let pca = 128.min(dataset.dims / 2);
    // Larger catalogs: fewer, bigger leaves keep hyperplanes (the dominant
    // cost after PCA) to a few bytes per item.
    let (n_trees, leaf_size) = if n > 20_000 { (8, 64) } else { (10, 32) };
    let compact = ForestParams {
        encoding: Encoding::I8PerDim,
        pca_dims: (pca < dataset.dims).then_some(pca),
        n_trees,
        leaf_size,
        ..ForestParams::new(Metric::Angular)
    };
    let rescored = ForestParams { rescore: Some(Encoding::F16), ..compact.clone() };
    // The graph replaces most trees: one finds where the walk starts.
    let graph = ForestParams {
        n_trees: 1,
        leaf_size: 32,
        graph: Some(GraphParams::default()),
        rescore: Some(Encoding::F16),
        ..compact.clone()
    };
    vec![
        (format!("f32 (trees {}, leaf {})", exact.n_trees, exact.leaf_size), exact),
        (format!("compact i8-dim PCA-{pca} (trees {n_trees}, leaf {leaf_size})"), compact),
        (format!("compact + f16 re-scoring (trees {n_trees}, leaf {leaf_size})"), rescored),
        (format!("graph R32, i8-dim PCA-{pca} + f16 re-scoring (1 tree, leaf 32)"), graph),
    ]
}

fn search_ks() -> Vec<usize> {
    vec![50, 100, 200, 400, 800, 1600, 3200, 6400, 12800]
}

/// With a graph, `search_k` is the walk's pool (HNSW's ef).
fn graph_search_ks() -> Vec<usize> {
    vec![10, 16, 24, 32, 48, 64, 96, 128, 256, 512]
}

fn bench_dataset(dataset: &Dataset, options: &BenchOptions) -> Result<DatasetReport> {
    let dims = dataset.dims;
    let n = dataset.base.len() / dims;
    let n_queries = dataset.queries.len() / dims;
    let truth = exact_top_k(&dataset.base, &dataset.queries, dims, Metric::Angular, K);
    let mut report = DatasetReport {
        name: dataset.name.clone(),
        n,
        dims,
        queries: n_queries,
        exact_precision_at_10: None,
        ours: Vec::new(),
        annoy: None,
        wasm_ms_per_query: None,
    };
    let mut graph_index = None;
    for (config, params) in configs(dataset) {
        let started = Instant::now();
        let forest = Forest::build(dataset.base.clone(), dims, None, &params)?;
        let build_s = started.elapsed().as_secs_f64();
        let index = Index {
            forest,
            ids: (0..n).map(|i| i.to_string()).collect(),
            label_names: Vec::new(),
            appearance: None,
        };
        let bytes_per_item = index.to_bytes().len() as f64 / n as f64;
        let has_graph = params.graph.is_some();
        let sweep = if has_graph { graph_search_ks() } else { search_ks() }
            .into_iter()
            .map(|search_k| {
                let query = Query { k: K, search_k: Some(search_k), filter: LabelFilter::Any };
                let started = Instant::now();
                let found: Vec<Vec<u32>> = dataset
                    .queries
                    .chunks_exact(dims)
                    .map(|q| {
                        index
                            .forest
                            .search_vector(q, &query)
                            .expect("dims match")
                            .iter()
                            .map(|h| h.item)
                            .collect()
                    })
                    .collect();
                let qps = n_queries as f64 / started.elapsed().as_secs_f64();
                SweepPoint { search_k, qps, recall_at_10: recall(&truth, &found) }
            })
            .collect();
        let precision_at_10 = dataset.labels.as_ref().map(|labels| {
            let eval = lookalike::eval::evaluate(&index, labels, "label", K, None);
            // The f32 configuration runs first: its exact search is the reference.
            report.exact_precision_at_10.get_or_insert(eval.exact_precision_at_k);
            eval.precision_at_k
        });
        eprintln!("  ours {config}: built in {build_s:.2}s, {bytes_per_item:.0} B/item");
        if has_graph {
            graph_index = Some(index);
        }
        report.ours.push(ForestRun { config, build_s, bytes_per_item, sweep, precision_at_10 });
    }
    let scratch = options.cache_dir.join("bench").join(&dataset.name);
    std::fs::create_dir_all(&scratch)?;
    let base_path = scratch.join("base.npy");
    let query_path = scratch.join("queries.npy");
    std::fs::write(&base_path, npy::encode_f32(&dataset.base, n, dims))?;
    std::fs::write(&query_path, npy::encode_f32(&dataset.queries, n_queries, dims))?;
    report.annoy = run_annoy(options, &base_path, &query_path, n, &truth)?;
    if dataset.name.starts_with("synthetic-44000")
        && let Some(index) = &graph_index
    {
        let index_path = scratch.join("index.lkf");
        std::fs::write(&index_path, index.to_bytes())?;
        let graph_sweep =
            &report.ours.iter().find(|r| r.config.starts_with("graph")).expect("graph ran").sweep;
        // Timed where it reaches the target, or where its recall stops improving.
        let plateau = graph_sweep.iter().map(|p| p.recall_at_10).fold(0.0, f64::max);
        let search_k = graph_sweep
            .iter()
            .find(|p| p.recall_at_10 >= TARGET_RECALL.min(plateau - 0.005))
            .map_or(64, |p| p.search_k);
        report.wasm_ms_per_query = run_wasm(options, &index_path, &query_path, search_k, &truth)?;
    }
    Ok(report)
}

fn run_annoy(
    options: &BenchOptions,
    base: &Path,
    queries: &Path,
    n: usize,
    truth: &[Vec<u32>],
) -> Result<Option<ForestRun>> {
    let pylib = options.cache_dir.join("pylib");
    let script = options.project.join("bench/annoy_runner.py");
    let ks: Vec<String> = search_ks().iter().map(|k| k.to_string()).collect();
    let mut command = Command::new("python3");
    command
        .env("PYTHONPATH", &pylib)
        .arg(&script)
        .args([base.as_os_str(), queries.as_os_str()])
        .args(["angular", "10", &K.to_string(), &ks.join(",")]);
    let Some(result) = run_helper(command, "annoy (./build.sh bench installs it)")? else {
        return Ok(None);
    };
    let sweep = result["runs"]
        .as_array()
        .context("annoy runs")?
        .iter()
        .map(|run| {
            let found: Vec<Vec<u32>> =
                serde_json::from_value(run["neighbors"].clone()).unwrap_or_default();
            SweepPoint {
                search_k: run["search_k"].as_u64().unwrap_or(0) as usize,
                qps: run["qps"].as_f64().unwrap_or(0.0),
                recall_at_10: recall(truth, &found),
            }
        })
        .collect();
    let bytes_per_item = result["bytes"].as_f64().unwrap_or(0.0) / n as f64;
    eprintln!(
        "  annoy 1.17 (10 trees): built in {:.2}s, {bytes_per_item:.0} B/item",
        result["build_s"].as_f64().unwrap_or(0.0)
    );
    Ok(Some(ForestRun {
        config: "annoy 1.17 (10 trees)".into(),
        build_s: result["build_s"].as_f64().unwrap_or(0.0),
        bytes_per_item,
        sweep,
        precision_at_10: None,
    }))
}

fn run_wasm(
    options: &BenchOptions,
    index: &Path,
    queries: &Path,
    search_k: usize,
    truth: &[Vec<u32>],
) -> Result<Option<f64>> {
    let script = options.project.join("bench/wasm_query.mjs");
    let mut command = Command::new("node");
    command
        .arg(&script)
        .args([index.as_os_str(), queries.as_os_str()])
        .args([&K.to_string(), &search_k.to_string()]);
    let Some(result) = run_helper(command, "wasm (./build.sh builds it)")? else { return Ok(None) };
    let found: Vec<Vec<u32>> =
        serde_json::from_value(result["neighbors"].clone()).unwrap_or_default();
    let ms = result["ms_per_query"].as_f64();
    eprintln!(
        "  wasm (node): {:.3} ms/query at search_k {search_k}, recall@10 {:.3}",
        ms.unwrap_or(f64::NAN),
        recall(truth, &found)
    );
    Ok(ms)
}

/// Runs a helper process that prints one JSON object; `None` (with a note)
/// when it could not run, so a missing reference skips a column, not the bench.
fn run_helper(mut command: Command, what: &str) -> Result<Option<Value>> {
    let output = command.output().with_context(|| format!("starting the {what} helper"))?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        eprintln!("  {what}: not run ({})", stderr.lines().last().unwrap_or("no output"));
        return Ok(None);
    }
    Ok(Some(
        serde_json::from_slice(&output.stdout)
            .with_context(|| format!("reading the {what} helper's output"))?,
    ))
}

/// Embeddings of a shared catalog, with every 10th product also a query.
fn catalog_dataset(options: &BenchOptions, name: &str) -> Result<Dataset> {
    let label_col = match name {
        "fashion-product-images" => "articleType",
        "hm-product-groups" => "product_type_name",
        _ => "group_id",
    };
    let embedded = lookalike::catalog_embeddings::catalog_embeddings(
        &options.data_dir,
        &options.cache_dir,
        &options.model,
        name,
        Some(label_col),
    )?;
    let dims = FEATURE_DIM;
    // All products stay in the base (a query's own vector is then its first
    // hit, for both systems alike).
    let queries: Vec<f32> =
        embedded.vectors.chunks_exact(dims).step_by(10).flatten().copied().collect();
    let labels = embedded.products.iter().map(|p| p.label.clone()).collect();
    Ok(Dataset { name: name.into(), dims, base: embedded.vectors, queries, labels: Some(labels) })
}

/// Clustered data in a 64-d subspace of `dims`, plus isotropic noise.
fn synthetic(name: &str, n: usize, dims: usize, n_queries: usize, seed: u64) -> Dataset {
    const INTRINSIC: usize = 64;
    const CLUSTERS: usize = 500;
    let mut rng = StdRng::seed_from_u64(seed);
    let mut normal = move || {
        let (u, v): (f32, f32) = (rng.random_range(f32::EPSILON..1.0), rng.random_range(0.0..1.0));
        (-2.0 * u.ln()).sqrt() * (std::f32::consts::TAU * v).cos()
    };
    let axes: Vec<f32> = (0..INTRINSIC * dims).map(|_| normal() / (dims as f32).sqrt()).collect();
    let centres: Vec<f32> = (0..CLUSTERS * INTRINSIC).map(|_| normal()).collect();
    let mut point = |cluster: usize| -> Vec<f32> {
        let latent: Vec<f32> =
            (0..INTRINSIC).map(|i| centres[cluster * INTRINSIC + i] + 0.5 * normal()).collect();
        let mut v = vec![0.0f32; dims];
        for (i, &l) in latent.iter().enumerate() {
            for (x, a) in v.iter_mut().zip(&axes[i * dims..(i + 1) * dims]) {
                *x += l * a;
            }
        }
        v.iter_mut().for_each(|x| *x += 0.05 * normal());
        v
    };
    let base: Vec<f32> = (0..n).flat_map(|i| point(i % CLUSTERS)).collect();
    let queries: Vec<f32> = (0..n_queries).flat_map(|i| point((i * 7) % CLUSTERS)).collect();
    Dataset { name: name.into(), dims, base, queries, labels: None }
}

fn print_tables(reports: &[DatasetReport]) {
    for r in reports {
        println!("\n{} ({} items x {} dims, {} queries)", r.name, r.n, r.dims, r.queries);
        if let Some(p) = r.exact_precision_at_10 {
            println!("  exact f32 precision@10 of same label: {p:.3}");
        }
        let annoy_at = r.annoy.as_ref().and_then(|a| operating_point(&a.sweep));
        for run in r.ours.iter().chain(r.annoy.iter()) {
            print!(
                "  {:<46} build {:>6.2}s  {:>6.0} B/item",
                run.config, run.build_s, run.bytes_per_item
            );
            if let Some(p) = run.precision_at_10 {
                print!("  precision@10 {p:.3}");
            }
            println!();
            for point in &run.sweep {
                println!(
                    "      search_k {:>5}: recall@10 {:.3}  {:>9.0} q/s",
                    point.search_k, point.recall_at_10, point.qps
                );
            }
            if let (Some(o), Some(a)) = (operating_point(&run.sweep), &annoy_at) {
                println!(
                    "      at recall >= {TARGET_RECALL}: {:.0} q/s = {:.2}x Annoy's {:.0} q/s",
                    o.qps,
                    o.qps / a.qps,
                    a.qps
                );
            }
        }
    }
}
