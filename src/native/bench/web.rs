//! `lookalike bench web`: builds the demo site (the shared fashion catalog,
//! default options; incremental, so quick once cached), then measures it in
//! headless Chromium with bench/web.mjs: bytes of a first and a warm visit,
//! time to first results, click to results, and photo queries on the CPU
//! backend and on WebGPU (SwiftShader here). Targets from the issue: first
//! load <= 15 MB, click to results <= 100 ms, photo query <= 1 s on CPU wasm.

use crate::catalog::Columns;
use crate::forest::{ForestParams, Metric};
use crate::native::site_builder::{BuildOptions, CropSpec, DetectorFiles, Storage, build_site};
use anyhow::{Context, Result, bail};
use serde_json::Value;
use std::path::PathBuf;

pub struct WebBenchOptions {
    pub json: bool,
    pub data_dir: PathBuf,
    pub cache_dir: PathBuf,
    pub model: PathBuf,
    pub project: PathBuf,
}

pub fn run(options: &WebBenchOptions) -> Result<()> {
    let site = options.cache_dir.join("bench/web-site");
    let models = options.project.join("models");
    let labels = models.join("labels.json");
    build_site(&BuildOptions {
        catalog: options.data_dir.join("fashion-product-images/labels.csv"),
        out: site.clone(),
        columns: Columns { id: Some("product_id".into()), image: Some("file".into()), label: Some("articleType".into()) },
        model: options.model.clone(),
        assets: options.project.clone(),
        forest: ForestParams::new(Metric::Angular),
        storage: Storage::default(),
        thumb_size: 160,
        batch_size: 16,
        cache_dir: options.cache_dir.clone(),
        skip_bad: false,
        precompute: None,
        crops: CropSpec::Foreground,
        detector: Some(DetectorFiles {
            objects: models.join("nanodet.json"),
            pose: models.join("movenet-lightning.json"),
            options: crate::detect::DetectOptions::default(),
        }),
        labels: labels.is_file().then_some(labels),
    })?;
    let photos = options.data_dir.join("ccp-street-fashion/images");
    let output = std::process::Command::new("node")
        .arg(options.project.join("bench/web.mjs"))
        .arg(&site)
        .arg(photos.join("0001.jpg"))
        .arg(photos.join("0003.jpg"))
        .env("LOOKALIKE_BIN", std::env::current_exe()?)
        .output()
        .context("running node bench/web.mjs (needs node and ./build.sh test's playwright-core)")?;
    if !output.status.success() {
        bail!("bench/web.mjs failed: {}", String::from_utf8_lossy(&output.stderr));
    }
    let runs: Vec<Value> = serde_json::from_slice(&output.stdout).context("reading bench/web.mjs's output")?;
    if options.json {
        println!("{}", serde_json::to_string_pretty(&runs)?);
        return Ok(());
    }
    let ms = |v: &Value| v.as_f64().map_or("-".to_string(), |x| format!("{x:.0} ms"));
    for run in &runs {
        if run["mode"] == "cpu" {
            let mb = |v: &Value| v.as_f64().unwrap_or(0.0) / 1e6;
            println!(
                "first visit: {:.1} MB in {} requests (target <= 15 MB); warm visit {:.2} MB",
                mb(&run["first_load_bytes"]),
                run["first_load_requests"],
                mb(&run["warm_load_bytes"])
            );
            println!(
                "page open to first results: {} cold, {} warm",
                ms(&run["cold_first_results_ms"]),
                ms(&run["warm_first_results_ms"])
            );
            println!(
                "product click to results drawn: median {:.2} ms, p95 {:.2} ms (target <= 100 ms)",
                run["click_to_results_ms"]["median"].as_f64().unwrap_or(0.0),
                run["click_to_results_ms"]["p95"].as_f64().unwrap_or(0.0)
            );
        }
        for key in ["first_photo", "later_photo"] {
            let p = &run[key];
            println!(
                "{} on {}: {} from choosing the file to results (detection {}, embedding {}, search {})",
                key.replace('_', " "),
                run["backend"].as_str().unwrap_or("?"),
                ms(&p["ms"]),
                ms(&p["detect_ms"]),
                ms(&p["embed_ms"]),
                ms(&p["search_ms"])
            );
        }
    }
    Ok(())
}
