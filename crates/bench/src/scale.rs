//! `lookalike-bench scale`: a paged site of 1,000,000 (and 100,000)
//! synthetic products, built from vectors by the `lookalike` tool (time and
//! peak memory), then queried natively through the paged reader (recall@10
//! against exact search, bytes and rounds per query) and in headless
//! Chromium over an emulated 40 ms / 20 Mbit/s network (bench/scale.mjs:
//! first visit, cold and warm queries), with the demo's one-file site
//! measured the same way in the same run.
//!
//! The synthetic catalog stands in for CNN embeddings after PCA: 128
//! dimensions generated from a 24-dimensional latent space (real embeddings
//! have a low intrinsic dimension), products drawn around "styles" whose
//! popularity is Zipf-distributed, and isotropic noise on top. Ids,
//! titles and labels are generated; every product shows one placeholder
//! image, so the build makes one thumbnail.

use anyhow::{Context, Result, bail};
use lookalike_forest::metric;
use lookalike_index::paged::{PagedIndex, PagedQuery, Step, coalesce};
use rand::{RngExt, SeedableRng, rngs::StdRng};
use rayon::prelude::*;
use serde::Serialize;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

pub struct ScaleOptions {
    pub quick: bool,
    pub json: bool,
    pub only: Option<String>,
    pub cache_dir: PathBuf,
    /// The checkout (its bench/scale.mjs and page).
    pub project: PathBuf,
}

/// Dimensions of the synthetic vectors (the index's, as after PCA).
const DIMS: usize = 128;
const LATENT: usize = 24;
const QUERIES: usize = 100;
/// The synthetic catalog's seed (its vector queries are drawn from the same styles).
const SEED: u64 = 0x5ca1e;
/// Gap below which the browser merges two pages into one request.
pub const MERGE_GAP: u64 = 4 << 10;

#[derive(Serialize)]
struct ScaleRun {
    items: usize,
    build_seconds: f64,
    build_peak_mb: f64,
    head_bytes: usize,
    pages_bytes: u64,
    product: QueryFigures,
    vector: QueryFigures,
    browser: Option<serde_json::Value>,
}

#[derive(Serialize, Default)]
struct QueryFigures {
    recall_at_10: f64,
    cold_bytes_median: f64,
    cold_bytes_p95: f64,
    rounds_median: f64,
    requests_median: f64,
    native_warm_ms_median: f64,
}

pub fn run(options: &ScaleOptions) -> Result<()> {
    let sizes: &[usize] = if options.quick { &[100_000] } else { &[100_000, 1_000_000] };
    let mut runs = Vec::new();
    for &n in sizes {
        if options.only.as_ref().is_some_and(|o| !n.to_string().contains(o.as_str())) {
            continue;
        }
        let data = options.cache_dir.join(format!("bench/scale-{n}"));
        generate(&data, n, SEED)?;
        let site = data.join("site");
        // LOOKALIKE_SCALE_REUSE=1 measures the last build again (when
        // trying query settings).
        let reuse = std::env::var_os("LOOKALIKE_SCALE_REUSE").is_some()
            && site.join(lookalike::site::PAGED_HEAD_PATH).is_file();
        let (build_seconds, build_peak_mb) =
            if reuse { (f64::NAN, f64::NAN) } else { build(&data, &site)? };
        let (mut run, queries) = measure_native(&data, &site, n)?;
        run.build_seconds = build_seconds;
        run.build_peak_mb = build_peak_mb;
        std::fs::write(data.join("queries.json"), serde_json::to_vec(&queries)?)?;
        if std::env::var_os("LOOKALIKE_SCALE_NO_BROWSER").is_none() {
            run.browser = Some(measure_browser(options, &data, &site)?);
        }
        if !options.json {
            print_run(&run);
        }
        runs.push(run);
    }
    if options.json {
        println!("{}", serde_json::to_string_pretty(&serde_json::json!({ "runs": runs }))?);
    }
    Ok(())
}

/// The queries the native run measured, for the browser run.
#[derive(Serialize)]
struct Queries {
    products: Vec<String>,
    vectors: Vec<Vec<f32>>,
}

/// bench/scale.mjs in headless Chromium over an emulated 40 ms / 20 Mbit/s
/// network, with the demo's one-file site (from `bench web`, or the demo)
/// measured the same way when it has been built.
/// The queries are those the native run wrote to `data/queries.json`.
fn measure_browser(options: &ScaleOptions, data: &Path, site: &Path) -> Result<serde_json::Value> {
    let file = data.join("queries.json");
    let mut command = Command::new("node");
    command.arg(options.project.join("bench/scale.mjs")).arg(site).arg(&file);
    let demo = ["bench/web-site", "demo-site"]
        .map(|d| options.cache_dir.join(d))
        .into_iter()
        .find(|d| d.join("data/index.lkf").is_file());
    if let Some(demo) = &demo {
        let manifest: serde_json::Value =
            serde_json::from_slice(&std::fs::read(demo.join("data/catalog.json"))?)?;
        let id = manifest["products"][0]["id"].as_str().unwrap_or_default().to_string();
        command.arg(demo).arg(id);
    }
    eprintln!("measuring {} in headless Chromium (40 ms round trip, 20 Mbit/s)", site.display());
    let output = command.env("LOOKALIKE_BIN", crate::web::lookalike_binary()?).output().context(
        "running node bench/scale.mjs (needs node and ./build.sh test's browser drivers)",
    )?;
    if !output.status.success() {
        bail!("bench/scale.mjs failed: {}", String::from_utf8_lossy(&output.stderr));
    }
    serde_json::from_slice(&output.stdout).context("reading bench/scale.mjs's output")
}

fn print_run(run: &ScaleRun) {
    println!("== {} items", run.items);
    println!(
        "build from vectors: {:.0} s, peak memory {:.0} MB (targets for 1,000,000: <= 900 s, <= 4,096 MB)",
        run.build_seconds, run.build_peak_mb
    );
    println!(
        "head {:.0} KB, pages {:.0} MB",
        run.head_bytes as f64 / 1e3,
        run.pages_bytes as f64 / 1e6
    );
    for (name, q) in [("product", &run.product), ("vector", &run.vector)] {
        println!(
            "{name} queries: recall@10 {:.3} (target >= 0.90); cold {:.0} KB median, {:.0} KB p95 (target <= 200 KB) in {} rounds, {} requests; warm {:.2} ms natively",
            q.recall_at_10,
            q.cold_bytes_median / 1e3,
            q.cold_bytes_p95 / 1e3,
            q.rounds_median,
            q.requests_median,
            q.native_warm_ms_median
        );
    }
    let Some(b) = &run.browser else { return };
    let kb =
        |v: &serde_json::Value| v.as_f64().map_or("-".into(), |x| format!("{:.0} KB", x / 1e3));
    let ms = |v: &serde_json::Value| v.as_f64().map_or("-".into(), |x| format!("{x:.0} ms"));
    println!(
        "browser, first visit to first results: {} and {} (thumbnails excluded; target <= 1.5 MB); the demo's one-file site: {} and {}",
        ms(&b["first_visit"]["ms"]),
        kb(&b["first_visit"]["bytes"]),
        ms(&b["demo_first_visit"]["ms"]),
        kb(&b["demo_first_visit"]["bytes"])
    );
    for kind in ["product", "vector"] {
        let q = &b[kind];
        println!(
            "browser {kind} queries: cold {} median, {} p95 (target <= 400 ms), {} median, {} p95, {} requests in {} rounds (median ms per round {}); warm {:.2} ms median, {:.2} ms p95 (target <= 10 ms)",
            ms(&q["cold_ms"]["median"]),
            ms(&q["cold_ms"]["p95"]),
            kb(&q["cold_bytes"]["median"]),
            kb(&q["cold_bytes"]["p95"]),
            q["cold_requests"]["median"],
            q["cold_rounds"]["median"],
            q["cold_round_ms_median"],
            q["warm_ms"]["median"].as_f64().unwrap_or(f64::NAN),
            q["warm_ms"]["p95"].as_f64().unwrap_or(f64::NAN),
        );
    }
    println!(
        "demo (one file): product click to the next frame {} median (bench web times the query and the drawing alone)",
        ms(&b["demo_click_ms"])
    );
}

/// Standard normal samples (Box-Muller; rand 0.10 has no distributions).
fn normal(rng: &mut StdRng) -> f32 {
    let u: f64 = rng.random_range(f64::EPSILON..1.0);
    let v: f64 = rng.random_range(0.0..1.0);
    ((-2.0 * u.ln()).sqrt() * (2.0 * std::f64::consts::PI * v).cos()) as f32
}

/// The synthetic catalog's generator, shared by the products and the
/// vector queries (which are new products of the same styles).
struct Styles {
    centres: Vec<f32>,
    cumulative: Vec<f64>,
    mixing: Vec<f32>,
}

impl Styles {
    fn new(count: usize, rng: &mut StdRng) -> Styles {
        let centres = (0..count * LATENT).map(|_| normal(rng)).collect();
        // Zipf-like popularity, capped so no style dominates.
        let weights: Vec<f64> =
            (0..count).map(|i| (1.0 / (1.0 + i as f64).powf(0.8)).max(0.002)).collect();
        let total: f64 = weights.iter().sum();
        let mut cumulative = Vec::with_capacity(count);
        let mut sum = 0.0;
        for w in weights {
            sum += w / total;
            cumulative.push(sum);
        }
        // Latent to 128 dimensions, with decaying strength per latent axis.
        let mixing = (0..DIMS * LATENT)
            .map(|k| {
                normal(rng) / (LATENT as f32).sqrt() / (1.0 + (k % LATENT) as f32 / 6.0).sqrt()
            })
            .collect();
        Styles { centres, cumulative, mixing }
    }

    /// A product: its style and vector.
    fn sample(&self, rng: &mut StdRng) -> (usize, Vec<f32>) {
        let pick: f64 = rng.random_range(0.0..1.0);
        let style = self.cumulative.partition_point(|&c| c < pick).min(self.cumulative.len() - 1);
        let latent: Vec<f32> =
            (0..LATENT).map(|j| self.centres[style * LATENT + j] + 0.5 * normal(rng)).collect();
        let vector: Vec<f32> = (0..DIMS)
            .map(|d| {
                metric::dot(&self.mixing[d * LATENT..(d + 1) * LATENT], &latent)
                    + 0.3 * normal(rng) / (DIMS as f32).sqrt()
            })
            .collect();
        (style, vector)
    }
}

const CATEGORIES: &[&str] = &[
    "Tops",
    "Shirts",
    "Dresses",
    "Jeans",
    "Trousers",
    "Skirts",
    "Jackets",
    "Coats",
    "Knitwear",
    "Shoes",
    "Sneakers",
    "Boots",
    "Bags",
    "Belts",
    "Hats",
    "Scarves",
    "Watches",
    "Jewellery",
    "Sunglasses",
    "Socks",
];

fn styles_for(n: usize, seed: u64) -> (Styles, StdRng) {
    let mut rng = StdRng::seed_from_u64(seed);
    let styles = Styles::new((n / 300).max(100), &mut rng);
    (styles, rng)
}

/// Writes `vectors.npy`, `ids.txt`, `catalog.csv` and `placeholder.png`
/// into `dir`, once per size and seed.
fn generate(dir: &Path, n: usize, seed: u64) -> Result<()> {
    let done = dir.join("generated");
    if done.is_file() && std::fs::read_to_string(&done)? == format!("{n} {seed}") {
        return Ok(());
    }
    std::fs::create_dir_all(dir)?;
    eprintln!("generating {n} synthetic products in {}", dir.display());
    let (styles, mut rng) = styles_for(n, seed);
    let mut npy = BufWriter::new(std::fs::File::create(dir.join("vectors.npy"))?);
    npy.write_all(&lookalike::npy::header_f32(n, DIMS))?;
    let mut ids = BufWriter::new(std::fs::File::create(dir.join("ids.txt"))?);
    let mut catalog = csv::Writer::from_path(dir.join("catalog.csv"))?;
    catalog.write_record(["id", "title", "category", "image"])?;
    for i in 0..n {
        let (style, vector) = styles.sample(&mut rng);
        for v in vector {
            npy.write_all(&v.to_le_bytes())?;
        }
        let id = format!("P{i:07}");
        writeln!(ids, "{id}")?;
        let category = CATEGORIES[style % CATEGORIES.len()];
        catalog.write_record([
            &id,
            &format!("{category} style {style} no. {i}"),
            category,
            "placeholder.png",
        ])?;
    }
    npy.flush()?;
    ids.flush()?;
    catalog.flush()?;
    let placeholder = image::RgbImage::from_fn(200, 260, |x, y| {
        image::Rgb([200 + (x % 40) as u8, 190, 180 + (y % 50) as u8])
    });
    placeholder.save(dir.join("placeholder.png"))?;
    std::fs::write(&done, format!("{n} {seed}"))?;
    Ok(())
}

/// Runs `lookalike build --vectors` as a child; returns its seconds and
/// peak resident memory (MB).
fn build(data: &Path, site: &Path) -> Result<(f64, f64)> {
    let started = Instant::now();
    let status = Command::new(crate::web::lookalike_binary()?)
        .args(["build", "--layout", "paged", "--label-col", "category"])
        .arg("--catalog")
        .arg(data.join("catalog.csv"))
        .arg("--vectors")
        .arg(data.join("vectors.npy"))
        .arg("--ids")
        .arg(data.join("ids.txt"))
        .arg("--out")
        .arg(site)
        .args(
            std::env::var("LOOKALIKE_SCALE_LIST_SIZE")
                .map(|s| vec!["--list-size".to_string(), s])
                .unwrap_or_default(),
        )
        .status()
        .context("running lookalike build")?;
    if !status.success() {
        bail!("lookalike build --vectors failed ({status})");
    }
    let seconds = started.elapsed().as_secs_f64();
    Ok((seconds, children_peak_mb()))
}

/// The largest peak resident memory of the children waited for so far.
fn children_peak_mb() -> f64 {
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: getrusage writes into the struct it is given.
    unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, &mut usage) };
    usage.ru_maxrss as f64 / 1024.0
}

/// Queries the paged site through the reader, fetching from the pages
/// file the way the page does (merged ranges), against exact search.
fn measure_native(data: &Path, site: &Path, n: usize) -> Result<(ScaleRun, Queries)> {
    let head_bytes = std::fs::read(site.join(lookalike::site::PAGED_HEAD_PATH))?;
    let pages = std::fs::read(site.join(lookalike::site::PAGED_PAGES_PATH))?;
    let matrix = lookalike::npy::map_f32(&data.join("vectors.npy"))?;
    let vectors = matrix.values();
    let ids: Vec<String> =
        std::fs::read_to_string(data.join("ids.txt"))?.lines().map(str::to_string).collect();
    let unit = |v: &[f32]| {
        let norm = metric::dot(v, v).sqrt();
        v.iter().map(|x| x / norm).collect::<Vec<f32>>()
    };
    let mut rng = StdRng::seed_from_u64(77);
    let product_queries: Vec<usize> = (0..QUERIES).map(|_| rng.random_range(0..n)).collect();
    // Fresh products of the same styles: what a shopper's photo gives.
    let (styles, _) = styles_for(n, SEED);
    let mut fresh = StdRng::seed_from_u64(991);
    let vector_queries: Vec<Vec<f32>> = (0..QUERIES).map(|_| styles.sample(&mut fresh).1).collect();

    eprintln!("exact search for {} queries over {n} items", 2 * QUERIES);
    let exact = |query: &[f32], skip: Option<usize>| -> Vec<String> {
        let q = unit(query);
        let mut scored: Vec<(usize, f32)> = vectors
            .par_chunks_exact(DIMS)
            .enumerate()
            .filter(|(i, _)| Some(*i) != skip)
            .map(|(i, v)| (i, metric::dot(&q, v) / metric::dot(v, v).sqrt()))
            .collect();
        scored.select_nth_unstable_by(10, |a, b| b.1.total_cmp(&a.1));
        scored.truncate(10);
        scored.into_iter().map(|(i, _)| ids[i].clone()).collect()
    };

    let mut figures = Vec::new();
    for product in [true, false] {
        let mut recall = 0.0;
        let (mut bytes, mut rounds, mut requests, mut warm) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for q in 0..QUERIES {
            let mut index = PagedIndex::from_head(&head_bytes, 64 << 20)?;
            let query = query_settings(product);
            let ask =
                |index: &mut PagedIndex| -> Result<Step<Vec<lookalike_index::paged::PagedHit>>> {
                    Ok(if product {
                        match index.query_item(&ids[product_queries[q]], &query)? {
                            Step::Need(p) => Step::Need(p),
                            Step::Done(hits) => {
                                Step::Done(hits.context("a generated id is in the index")?)
                            }
                        }
                    } else {
                        index.query_vector(&vector_queries[q], &query)?
                    })
                };
            let (mut fetched, mut round, mut request) = (0u64, 0, 0);
            let hits = loop {
                match ask(&mut index)? {
                    Step::Done(hits) => break hits,
                    Step::Need(wanted) => {
                        round += 1;
                        for (start, end) in coalesce(&wanted, MERGE_GAP) {
                            index.accept(&wanted, start, &pages[start as usize..end as usize])?;
                            fetched += end - start;
                            request += 1;
                        }
                    }
                }
            };
            let started = Instant::now();
            let again = match ask(&mut index)? {
                Step::Done(hits) => hits,
                Step::Need(_) => bail!("a warm query needed pages"),
            };
            warm.push(started.elapsed().as_secs_f64() * 1e3);
            assert_eq!(again, hits);
            let truth = if product {
                exact(
                    &vectors[product_queries[q] * DIMS..(product_queries[q] + 1) * DIMS],
                    Some(product_queries[q]),
                )
            } else {
                exact(&vector_queries[q], None)
            };
            recall += hits.iter().filter(|h| truth.contains(&h.id)).count() as f64 / 10.0;
            bytes.push(fetched as f64);
            rounds.push(round as f64);
            requests.push(request as f64);
        }
        figures.push(QueryFigures {
            recall_at_10: recall / QUERIES as f64,
            cold_bytes_median: quantile(&mut bytes, 0.5),
            cold_bytes_p95: quantile(&mut bytes, 0.95),
            rounds_median: quantile(&mut rounds, 0.5),
            requests_median: quantile(&mut requests, 0.5),
            native_warm_ms_median: quantile(&mut warm, 0.5),
        });
    }
    let vector = figures.pop().unwrap();
    let product = figures.pop().unwrap();
    let queries = Queries {
        products: product_queries.iter().map(|&q| ids[q].clone()).collect(),
        vectors: vector_queries,
    };
    Ok((
        ScaleRun {
            items: n,
            build_seconds: 0.0,
            build_peak_mb: 0.0,
            head_bytes: head_bytes.len(),
            pages_bytes: pages.len() as u64,
            product,
            vector,
            browser: None,
        },
        queries,
    ))
}

/// The query's settings; `LOOKALIKE_SCALE_QUERY=list_bytes,cells` tries others.
fn query_settings(product: bool) -> PagedQuery {
    let mut query = if product { PagedQuery::top(10) } else { PagedQuery::vector(10) };
    if let Ok(spec) = std::env::var("LOOKALIKE_SCALE_QUERY") {
        let values: Vec<usize> = spec.split(',').filter_map(|v| v.trim().parse().ok()).collect();
        if let [bytes, cells] = values[..] {
            query.list_bytes = bytes;
            query.cells = cells;
        }
    }
    query
}

fn quantile(values: &mut [f64], q: f64) -> f64 {
    values.sort_by(f64::total_cmp);
    values[((values.len() - 1) as f64 * q).round() as usize]
}
