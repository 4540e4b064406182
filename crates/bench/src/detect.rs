//! `lookalike bench detect`: how well the composed detector finds garments in
//! street photos (CCP: one ground-truth box per garment label, from pixel
//! masks), and how well the label head names catalog crops it never saw.
//!
//! Recall counts a ground-truth box as found when a box of its group
//! overlaps it with IoU >= 0.5. It is reported at the report's defaults
//! (score >= 0.6, at most 3 boxes) and with every candidate kept, so the cost
//! of the 3-box limit is visible.

use anyhow::{Context, Result, bail};
use burn::tensor::Device;
use lookalike::catalog::Columns;
use lookalike::catalog_embeddings::embed_with_cache;
use lookalike::labels::train_labels;
use lookalike_vision::detect::groups::{GROUPS, group_of_class, group_of_label};
use lookalike_vision::detect::{BBox, DetectOptions, Detector, Item, readback::block_on, select};
use lookalike_vision::model::tfjs::read_model;
use rayon::prelude::*;
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

pub struct DetectBenchOptions {
    pub quick: bool,
    pub json: bool,
    pub data_dir: PathBuf,
    pub models_dir: PathBuf,
    pub cache_dir: PathBuf,
    pub model: PathBuf,
    /// The checkout, for the wasm package and bench/wasm_detect.mjs.
    pub project: PathBuf,
}

/// Ground truth of one photo.
struct Photo {
    file: String,
    truth: Vec<(&'static str, BBox)>,
}

fn read_ground_truth(path: &Path) -> Result<Vec<Photo>> {
    let mut reader =
        csv::Reader::from_path(path).with_context(|| format!("reading {}", path.display()))?;
    let mut photos: BTreeMap<String, Vec<(&'static str, BBox)>> = BTreeMap::new();
    for (line, record) in reader.records().enumerate() {
        let record = record.with_context(|| format!("{}: line {}", path.display(), line + 2))?;
        let field = |i: usize| record.get(i).unwrap_or_default();
        let number = |i: usize| -> Result<f32> {
            field(i).parse().with_context(|| {
                format!("{}: line {}: field {} is not a number", path.display(), line + 2, i + 1)
            })
        };
        let entry = photos.entry(field(0).to_string()).or_default();
        if let Some(group) = group_of_label(field(1)) {
            entry.push((group, BBox::new(number(3)?, number(4)?, number(5)?, number(6)?)));
        }
    }
    Ok(photos.into_iter().map(|(file, truth)| Photo { file, truth }).collect())
}

#[derive(Debug, Default, Serialize)]
pub struct GroupRecall {
    pub found: usize,
    pub total: usize,
    pub recall: f64,
}

#[derive(Debug, Serialize)]
pub struct DetectReport {
    pub photos: usize,
    /// Recall per group at the report's defaults (score >= 0.6, at most 3 boxes).
    pub recall_default: BTreeMap<String, GroupRecall>,
    /// Recall per group with every candidate kept.
    pub recall_all_boxes: BTreeMap<String, GroupRecall>,
    pub boxes_per_photo_default: f64,
    pub boxes_per_photo_all: f64,
    /// Detection time per photo natively, on one core.
    pub ms_per_photo_native: f64,
    /// Bags found with the object detector's threshold at 0.2 instead of 0.6
    /// (NanoDet's GFL scores are class-times-quality estimates and run low).
    pub bags_recall_at_score_0_2: f64,
    /// Detection and embedding of every found item of one CCP photo
    /// (550 x 825) in wasm on the CPU backend, medians of 5 runs.
    pub wasm_cpu: Option<serde_json::Value>,
    /// The label head, trained on 80% of the fashion catalog's products of
    /// its 20 most frequent articleTypes, on the other 20%.
    pub label_head_accuracy: f64,
    /// Reference in the same run: always the most frequent articleType.
    pub label_head_majority_accuracy: f64,
    pub label_head_tested_on: usize,
}

fn recall(photos: &[Photo], found: &[Vec<(String, BBox)>]) -> BTreeMap<String, GroupRecall> {
    let mut out: BTreeMap<String, GroupRecall> =
        GROUPS.iter().map(|(g, _)| (g.to_string(), GroupRecall::default())).collect();
    for (photo, boxes) in photos.iter().zip(found) {
        for (group, truth) in &photo.truth {
            let entry = out.get_mut(*group).expect("every group is listed");
            entry.total += 1;
            let hit = boxes
                .iter()
                .any(|(class, b)| group_of_class(class) == Some(group) && b.iou(truth) >= 0.5);
            entry.found += hit as usize;
        }
    }
    for entry in out.values_mut() {
        entry.recall = entry.found as f64 / entry.total.max(1) as f64;
    }
    out
}

pub fn run(options: &DetectBenchOptions) -> Result<()> {
    let dir = options.data_dir.join("ccp-street-fashion");
    let mut photos = read_ground_truth(&dir.join("boxes.csv"))?;
    if options.quick {
        photos.truncate(100);
    }
    if photos.is_empty() {
        bail!("no photos in {}", dir.display());
    }
    let device = Device::flex();
    let objects = read_model(&options.models_dir.join("nanodet.json"))?;
    let pose = read_model(&options.models_dir.join("movenet-lightning.json"))?;
    let detector = Detector::new(Some(&objects), Some(&pose), &device)?;
    let defaults = DetectOptions::default();
    let everything = DetectOptions { max_boxes: usize::MAX, ..DetectOptions::default() };

    // One photo per core at a time, each on a one-thread pool (as the embedder's lanes).
    let started = Instant::now();
    let found: Vec<Vec<Item>> = photos
        .par_iter()
        .map(|photo| -> Result<Vec<Item>> {
            let path = dir.join(&photo.file);
            let image = image::open(&path)
                .with_context(|| format!("reading {}", path.display()))?
                .to_rgb8();
            Ok(block_on(detector.detect(&image, &everything))?)
        })
        .collect::<Result<_>>()?;
    let boxes = |items: &[Item]| -> Vec<(String, BBox)> {
        items.iter().map(|i| (i.class.clone(), i.bbox)).collect()
    };
    let detections: Vec<Vec<(String, BBox)>> = found.iter().map(|f| boxes(f)).collect();
    let threads = rayon::current_num_threads() as f64;
    let ms_per_photo = started.elapsed().as_secs_f64() * 1000.0 * threads / photos.len() as f64;

    // Bags come from the object detector alone: the pose model need not run again.
    let low = DetectOptions { min_score: 0.2, ..everything.clone() };
    let objects_only = Detector::new(Some(&objects), None, &device)?;
    let bags_low: Vec<Vec<(String, BBox)>> = photos
        .par_iter()
        .map(|photo| -> Result<Vec<(String, BBox)>> {
            let image = image::open(dir.join(&photo.file))?.to_rgb8();
            let items = block_on(objects_only.detect(&image, &low))?;
            Ok(items
                .into_iter()
                .filter(|i| group_of_class(&i.class) == Some("bags"))
                .map(|i| (i.class, i.bbox))
                .collect())
        })
        .collect::<Result<_>>()?;
    let bags_recall_low = recall(&photos, &bags_low)["bags"].recall;

    let columns = Columns {
        id: Some("product_id".into()),
        image: Some("file".into()),
        label: Some("articleType".into()),
    };
    let fashion = embed_with_cache(
        &options.data_dir.join("fashion-product-images/labels.csv"),
        &columns,
        &options.cache_dir,
        &options.model,
    )?;
    let trained = train_labels(&fashion.products, &fashion.vectors, "articleType", 20, 0.2)?;
    let wasm_cpu = wasm_timing(options, &dir.join(&photos[0].file));

    // The defaults choose `max_boxes` of the same candidates, as the detector does.
    let limited: Vec<Vec<(String, BBox)>> =
        found.iter().map(|f| boxes(&select(f.clone(), defaults.max_boxes))).collect();
    let per_photo =
        |d: &[Vec<(String, BBox)>]| d.iter().map(Vec::len).sum::<usize>() as f64 / d.len() as f64;
    let report = DetectReport {
        photos: photos.len(),
        recall_default: recall(&photos, &limited),
        recall_all_boxes: recall(&photos, &detections),
        boxes_per_photo_default: per_photo(&limited),
        boxes_per_photo_all: per_photo(&detections),
        ms_per_photo_native: ms_per_photo,
        bags_recall_at_score_0_2: bags_recall_low,
        wasm_cpu,
        label_head_accuracy: trained.accuracy,
        label_head_majority_accuracy: trained.majority_accuracy,
        label_head_tested_on: trained.tested_on,
    };
    if options.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(());
    }
    println!("CCP street fashion, {} photos: recall at IoU >= 0.5", report.photos);
    println!("{:<12} {:>16} {:>16}", "group", "defaults (3 box)", "all boxes");
    for (group, default) in &report.recall_default {
        let all = &report.recall_all_boxes[group];
        println!(
            "{group:<12} {:>9.3} ({:>3}) {:>9.3} ({:>3})   of {}",
            default.recall, default.found, all.recall, all.found, default.total
        );
    }
    println!(
        "boxes per photo: {:.2} at the defaults, {:.2} in all; {:.0} ms per photo natively (one core)",
        report.boxes_per_photo_default, report.boxes_per_photo_all, report.ms_per_photo_native
    );
    println!(
        "bags with the object threshold at 0.2: recall {:.3}",
        report.bags_recall_at_score_0_2
    );
    match &report.wasm_cpu {
        Some(t) => println!(
            "wasm, CPU backend, one photo: detection {:.0} ms ({:.1}x the native time per photo above); with the best item embedded {:.0} ms; with all {} items {:.0} ms",
            t["ms_detect"].as_f64().unwrap_or(0.0),
            t["ms_detect"].as_f64().unwrap_or(0.0) / report.ms_per_photo_native,
            t["ms_first"].as_f64().unwrap_or(0.0),
            t["items"],
            t["ms_total"].as_f64().unwrap_or(0.0)
        ),
        None => {
            println!("wasm: not measured (build the wasm package with ./build.sh, and have node)")
        }
    }
    println!(
        "label head: top-1 accuracy {:.3} over the 20 most frequent articleTypes ({} held-out products); always the most frequent: {:.3}",
        report.label_head_accuracy,
        report.label_head_tested_on,
        report.label_head_majority_accuracy
    );
    Ok(())
}

/// Runs bench/wasm_detect.mjs under node; `None` when it cannot run.
fn wasm_timing(options: &DetectBenchOptions, photo: &Path) -> Option<serde_json::Value> {
    let script = options.project.join("bench/wasm_detect.mjs");
    if !options.project.join("www/pkg/lookalike_web_models_bg.wasm").is_file() {
        return None;
    }
    let output = std::process::Command::new("node")
        .arg(&script)
        .arg(&options.models_dir)
        .arg(&options.model)
        .arg(photo)
        .output()
        .ok()?;
    if !output.status.success() {
        eprintln!("wasm timing failed: {}", String::from_utf8_lossy(&output.stderr));
        return None;
    }
    serde_json::from_slice(&output.stdout).ok()
}
