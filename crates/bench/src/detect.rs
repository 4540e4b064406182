//! `lookalike bench detect`: how well the detector finds garments in street
//! photos, with the garment parser and, in the same run, with the composed
//! detector it replaced (NanoDet + MoveNet regions); and how well the label
//! head names catalog crops it never saw.
//!
//! Photos: CCP's validation split (`parser_training::is_validation`), which
//! the parser never trained on. Ground truth: one box per garment label,
//! the tight box around all its pixels (boxes.csv).
//!
//! - **Recall**: a ground-truth box counts as found when an item of its
//!   group overlaps it with IoU >= 0.5; at the shipped defaults (score >=
//!   0.6, at most 6 items), at the report's (at most 3), and with every item.
//! - **Per-class IoU** of the parser's grid against the masks.
//! - **Time** per photo natively (one core) and in wasm (CPU backend).
//! - **subCategory fit**: for each ground-truth garment, the share of its
//!   item's top-10 look-alikes in the fashion catalog whose subCategory fits
//!   its group (a garment no item matched scores 0).

use anyhow::{Context, Result, bail};
use burn::tensor::Device;
use lookalike::catalog::{Columns, metadata_value};
use lookalike::catalog_embeddings::{catalog_embeddings_of, embed_with_cache};
use lookalike::crops::CropMode;
use lookalike::labels::{read_label_head, train_labels};
use lookalike::parser_training::{CcpPhoto, is_validation, read_ccp};
use lookalike_index::{LabelHead, normalized};
use lookalike_vision::detect::groups::{GROUPS, group_of_class, group_of_label};
use lookalike_vision::detect::{
    BBox, DEFAULT_MAX_BOXES, DetectOptions, Detector, Item, readback::block_on, select,
};
use lookalike_vision::model::Embedder;
use lookalike_vision::model::tfjs::read_model;
use lookalike_vision::parse::{Parser, Part};
use lookalike_vision::preprocess::model_input;
use rayon::prelude::*;
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Where a benchmark of street-photo detection reads from.
pub struct ValidationFiles {
    pub data_dir: PathBuf,
    pub models_dir: PathBuf,
    pub cache_dir: PathBuf,
    /// The embedder's record (the parser's backbone).
    pub model: PathBuf,
    /// The first 30 validation photos only.
    pub quick: bool,
}

pub struct DetectBenchOptions {
    pub files: ValidationFiles,
    pub json: bool,
    /// The checkout, for the wasm package and bench/wasm_detect.mjs.
    pub project: PathBuf,
}

/// The report's limit on boxes.
const REPORT_MAX_BOXES: usize = 3;
/// Look-alikes per garment for the subCategory fit.
const FIT_K: usize = 10;

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

#[derive(Debug, Default, Clone, Serialize)]
pub struct GroupRecall {
    pub found: usize,
    pub total: usize,
    pub recall: f64,
}

/// One detector's figures.
#[derive(Debug, Serialize)]
pub struct DetectorFigures {
    /// Recall per group at the shipped defaults (score >= 0.6, at most
    /// `DEFAULT_MAX_BOXES` items).
    pub recall_default: BTreeMap<String, GroupRecall>,
    /// At the report's defaults (score >= 0.6, at most 3 boxes).
    pub recall_report: BTreeMap<String, GroupRecall>,
    /// With every item (any score, no limit).
    pub recall_every_item: BTreeMap<String, GroupRecall>,
    pub boxes_per_photo_default: f64,
    /// Share of the items kept at the defaults, of the five groups'
    /// classes, that match a ground-truth box of their group (IoU >= 0.5):
    /// what the recall costs in wrong boxes.
    pub precision_default: f64,
    pub boxes_per_photo_report: f64,
    pub boxes_per_photo_every_item: f64,
    /// Detection time per photo natively, on one core.
    pub ms_per_photo_native: f64,
    /// subCategory fit of the top-10 look-alikes, per group and over the
    /// four groups the issue names (upper body, lower body, shoes, bags).
    pub fit: BTreeMap<String, f64>,
    pub fit_all: f64,
    /// The same over the garments an item matched (ignoring misses).
    pub fit_found: f64,
    /// The fit with the page's "same category only": look-alikes among the
    /// products of the articleType the shipped label head names the item.
    pub fit_same_category: BTreeMap<String, f64>,
    pub fit_same_category_all: f64,
}

#[derive(Debug, Serialize)]
pub struct DetectReport {
    pub photos: usize,
    pub parser: DetectorFigures,
    pub composed: DetectorFigures,
    /// The parser alone (no person detector), natively on one core.
    pub parser_only_ms_native: f64,
    /// The parser's subCategory fit with its items' boxes searched as
    /// they are, not cut out: what the masks change.
    pub parser_boxes_fit: f64,
    /// Per-class IoU of the parser's grid cells against the masks.
    pub parser_iou: BTreeMap<String, f64>,
    /// Parsing and detection of one CCP photo (550 x 8xx) in wasm on the CPU
    /// backend, medians of 5 runs.
    pub wasm_cpu: Option<serde_json::Value>,
    pub label_head_accuracy: f64,
    pub label_head_majority_accuracy: f64,
    pub label_head_tested_on: usize,
}

fn recall(photos: &[Photo], found: &[Vec<Item>]) -> BTreeMap<String, GroupRecall> {
    let mut out: BTreeMap<String, GroupRecall> =
        GROUPS.iter().map(|(g, _)| (g.to_string(), GroupRecall::default())).collect();
    for (photo, items) in photos.iter().zip(found) {
        for (group, truth) in &photo.truth {
            let entry = out.get_mut(*group).expect("every group is listed");
            entry.total += 1;
            entry.found += matching(items, group, truth).is_some() as usize;
        }
    }
    for entry in out.values_mut() {
        entry.recall = entry.found as f64 / entry.total.max(1) as f64;
    }
    out
}

/// Share of the items of a group's class that match a ground-truth box of
/// their group.
fn precision(photos: &[Photo], found: &[Vec<Item>]) -> f64 {
    let (mut right, mut items) = (0, 0);
    for (photo, found) in photos.iter().zip(found) {
        for item in found {
            let Some(group) = group_of_class(&item.class) else { continue };
            items += 1;
            right +=
                photo.truth.iter().any(|(g, t)| *g == group && item.bbox.iou(t) >= 0.5) as usize;
        }
    }
    right as f64 / items.max(1) as f64
}

/// The item of `group` overlapping `truth` best, when by IoU >= 0.5.
fn matching<'a>(items: &'a [Item], group: &str, truth: &BBox) -> Option<&'a Item> {
    items
        .iter()
        .filter(|i| group_of_class(&i.class) == Some(group))
        .map(|i| (i, i.bbox.iou(truth)))
        .filter(|(_, iou)| *iou >= 0.5)
        .max_by(|a, b| a.1.total_cmp(&b.1))
        .map(|(i, _)| i)
}

/// The fashion catalog's subCategories that fit a group.
fn fits(group: &str) -> &'static [&'static str] {
    match group {
        "upper body" => &["Topwear"],
        "lower body" => &["Bottomwear"],
        "full length" => &["Dress"],
        "shoes" => &["Shoes", "Sandal", "Flip Flops"],
        "bags" => &["Bags"],
        _ => &[],
    }
}
/// The groups the overall fit is taken over.
const FIT_GROUPS: [&str; 4] = ["upper body", "lower body", "shoes", "bags"];

/// The catalog: unit vectors, subCategories, and the label the page's
/// "same category only" filters by (articleType, what the shipped label
/// head names).
struct Catalog {
    vectors: Vec<Vec<f32>>,
    kinds: Vec<String>,
    article_types: Vec<String>,
    /// The shipped label head, for the same-category fit.
    head: LabelHead,
}

impl Catalog {
    /// Share of the `FIT_K` nearest products whose subCategory is in
    /// `wanted`; with `same_category`, among the products of the
    /// articleType the label head names the query (as the page's "same
    /// category only" does).
    fn fit(&self, query: &[f32], wanted: &[&str], same_category: bool) -> f64 {
        let q = normalized(query);
        let category = same_category.then(|| self.head.predict(query).label);
        let mut scored: Vec<(f32, usize)> = self
            .vectors
            .iter()
            .enumerate()
            .filter(|(i, _)| category.as_ref().is_none_or(|c| self.article_types[*i] == *c))
            .map(|(i, v)| (-v.iter().zip(&q).map(|(a, b)| a * b).sum::<f32>(), i))
            .collect();
        scored.sort_by(|a, b| a.0.total_cmp(&b.0));
        let hits =
            scored.iter().take(FIT_K).filter(|(_, i)| wanted.contains(&self.kinds[*i].as_str()));
        hits.count() as f64 / FIT_K as f64
    }
}

/// The subCategory fit of one detector's items: per group over every
/// ground-truth garment (0 for a miss), over the four fit groups, and over
/// the garments an item matched.
struct GroupFit {
    per_group: BTreeMap<String, f64>,
    all: f64,
    found: f64,
}

/// The fit of each garment's matched item, as searched plainly and with
/// "same category only": one crop and embedding pass for both.
fn subcategory_fit(
    photos: &[Photo],
    found: &[Vec<Item>],
    dir: &Path,
    embedder: &Embedder,
    catalog: &Catalog,
) -> Result<(GroupFit, GroupFit)> {
    // Crops of the matched items, then one embedding pass.
    let mut crops = Vec::new();
    let mut garments: Vec<(&'static str, Option<usize>)> = Vec::new();
    for (photo, items) in photos.iter().zip(found) {
        let image = image::open(dir.join(&photo.file))?;
        for (group, truth) in &photo.truth {
            let item = matching(items, group, truth);
            garments.push((group, item.map(|_| crops.len())));
            if let Some(item) = item {
                crops.push(model_input(&item.crop(&image)));
            }
        }
    }
    let vectors = embedder.embed_lanes(&crops, rayon::current_num_threads())?;
    let fit_of = |same_category: bool| {
        let mut per_group: BTreeMap<String, (f64, usize)> = BTreeMap::new();
        let (mut all, mut all_n, mut found_sum, mut found_n) = (0.0, 0, 0.0, 0);
        for &(group, crop) in &garments {
            let fit = crop.map_or(0.0, |c| catalog.fit(&vectors[c], fits(group), same_category));
            let entry = per_group.entry(group.to_string()).or_default();
            entry.0 += fit;
            entry.1 += 1;
            if FIT_GROUPS.contains(&group) {
                all += fit;
                all_n += 1;
                if crop.is_some() {
                    found_sum += fit;
                    found_n += 1;
                }
            }
        }
        GroupFit {
            per_group: per_group.into_iter().map(|(g, (s, n))| (g, s / n.max(1) as f64)).collect(),
            all: all / all_n.max(1) as f64,
            found: found_sum / found_n.max(1) as f64,
        }
    };
    Ok((fit_of(false), fit_of(true)))
}

/// Every item of every photo (any score, no limit), and the time per photo
/// on one core.
fn detect_all(detector: &Detector, photos: &[Photo], dir: &Path) -> Result<(Vec<Vec<Item>>, f64)> {
    let every = DetectOptions { min_score: 0.0, max_boxes: usize::MAX, ..DetectOptions::default() };
    let started = Instant::now();
    let found = photos
        .par_iter()
        .map(|photo| -> Result<Vec<Item>> {
            let path = dir.join(&photo.file);
            let image = image::open(&path)
                .with_context(|| format!("reading {}", path.display()))?
                .to_rgb8();
            Ok(block_on(detector.detect(&image, &every))?)
        })
        .collect::<Result<_>>()?;
    let threads = rayon::current_num_threads() as f64;
    Ok((found, started.elapsed().as_secs_f64() * 1000.0 * threads / photos.len() as f64))
}

/// The items the options keep of every item: score, then the box limit.
fn limited(found: &[Vec<Item>], max_boxes: usize) -> Vec<Vec<Item>> {
    let min_score = DetectOptions::default().min_score;
    found
        .iter()
        .map(|items| {
            let kept = items.iter().filter(|i| i.score >= min_score).cloned().collect();
            select(kept, max_boxes)
        })
        .collect()
}

fn figures(
    photos: &[Photo],
    found: &[Vec<Item>],
    ms_per_photo: f64,
    (fit, same_category): (GroupFit, GroupFit),
) -> DetectorFigures {
    let (default, report) = (limited(found, DEFAULT_MAX_BOXES), limited(found, REPORT_MAX_BOXES));
    let per_photo = |d: &[Vec<Item>]| d.iter().map(Vec::len).sum::<usize>() as f64 / d.len() as f64;
    DetectorFigures {
        recall_default: recall(photos, &default),
        recall_report: recall(photos, &report),
        recall_every_item: recall(photos, found),
        boxes_per_photo_default: per_photo(&default),
        precision_default: precision(photos, &default),
        boxes_per_photo_report: per_photo(&report),
        boxes_per_photo_every_item: per_photo(found),
        ms_per_photo_native: ms_per_photo,
        fit: fit.per_group,
        fit_all: fit.all,
        fit_found: fit.found,
        fit_same_category: same_category.per_group,
        fit_same_category_all: same_category.all,
    }
}

/// Per-class IoU of the parser's most likely class per grid cell against
/// the mask's label at the cell's centre.
fn parser_iou(
    parser: &Parser,
    photos: &[Photo],
    dir: &Path,
    (ccp, classes): &(Vec<CcpPhoto>, Vec<Part>),
) -> Result<BTreeMap<String, f64>> {
    let masks: BTreeMap<&PathBuf, &PathBuf> = ccp.iter().map(|p| (&p.file, &p.mask)).collect();
    let counts = photos
        .par_iter()
        .map(|photo| -> Result<Vec<[usize; 2]>> {
            let path = dir.join(&photo.file);
            let image = image::open(&path)?.to_rgb8();
            let mask_path =
                masks.get(&path).with_context(|| format!("no mask for {}", path.display()))?;
            let mask = image::open(mask_path)?.to_luma8();
            let map = block_on(parser.parse(&image))?;
            let labels = map.labels();
            let (cw, ch) = map.cell_size();
            let mut counts = vec![[0usize; 2]; Part::COUNT];
            for (i, predicted) in labels.iter().enumerate() {
                let x = (((i % map.width) as f32 + 0.5) * cw) as u32;
                let y = (((i / map.width) as f32 + 0.5) * ch) as u32;
                let label = mask.get_pixel(x.min(mask.width() - 1), y.min(mask.height() - 1)).0[0];
                let truth = classes.get(label as usize).copied().unwrap_or(Part::Background);
                if truth == *predicted {
                    counts[truth.index()][0] += 1;
                    counts[truth.index()][1] += 1;
                } else {
                    counts[truth.index()][1] += 1;
                    counts[predicted.index()][1] += 1;
                }
            }
            Ok(counts)
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(Part::ALL
        .into_iter()
        .map(|part| {
            let (i, u) = counts
                .iter()
                .fold((0, 0), |(i, u), c| (i + c[part.index()][0], u + c[part.index()][1]));
            (part.name().to_string(), i as f64 / u.max(1) as f64)
        })
        .collect())
}

/// What every evaluation of a detector reads once: CCP's validation photos
/// and masks, the embedder, and the fashion catalog the fit searches.
pub(crate) struct Validation {
    pub dir: PathBuf,
    pub ccp: (Vec<CcpPhoto>, Vec<Part>),
    photos: Vec<Photo>,
    pub device: Device,
    pub embedder: Embedder,
    catalog: Catalog,
}

impl Validation {
    pub fn load(files: &ValidationFiles) -> Result<Self> {
        let ValidationFiles { data_dir, models_dir, cache_dir, model, quick } = files;
        let dir = data_dir.join("ccp-street-fashion");
        let ccp = read_ccp(&dir)?;
        let validation: std::collections::HashSet<&PathBuf> =
            ccp.0.iter().filter(|p| is_validation(&p.group_id)).map(|p| &p.file).collect();
        let mut photos = read_ground_truth(&dir.join("boxes.csv"))?;
        photos.retain(|p| validation.contains(&dir.join(&p.file)));
        if *quick {
            photos.truncate(30);
        }
        if photos.is_empty() {
            bail!("no validation photos in {}", dir.display());
        }
        let device = Device::flex();
        let embedder = Embedder::new(
            lookalike_vision::model::weights::from_file(model, &device)?,
            device.clone(),
        );
        let by_subcategory = catalog_embeddings_of(
            data_dir,
            cache_dir,
            model,
            "fashion-product-images",
            Some("subCategory"),
            &CropMode::Foreground,
        )?;
        let catalog = Catalog {
            vectors: by_subcategory
                .vectors
                .chunks_exact(lookalike_vision::FEATURE_DIM)
                .map(normalized)
                .collect(),
            kinds: by_subcategory
                .products
                .iter()
                .map(|p| p.label.clone().unwrap_or_default())
                .collect(),
            article_types: by_subcategory
                .products
                .iter()
                .map(|p| metadata_value(&p.metadata, "articleType").unwrap_or_default())
                .collect(),
            head: read_label_head(&models_dir.join("labels.json"))?,
        };
        Ok(Self { dir, ccp, photos, device, embedder, catalog })
    }

    pub fn photos(&self) -> usize {
        self.photos.len()
    }

    /// The parser on the shipped backbone with the head in `record`.
    pub fn parser(&self, record: Vec<u8>, name: &str) -> Result<Parser> {
        let head = lookalike_vision::parse::head_from_burnpack_bytes(
            record,
            self.embedder.model(),
            name,
            &self.device,
        )?;
        Ok(Parser::new(self.embedder.model().clone(), head, self.device.clone()))
    }

    /// A detector's every item on every photo, and its figures.
    pub fn figures(&self, detector: &Detector) -> Result<(Vec<Vec<Item>>, DetectorFigures)> {
        let (found, ms) = detect_all(detector, &self.photos, &self.dir)?;
        let fit = self.fit(&limited(&found, DEFAULT_MAX_BOXES))?;
        let figures = figures(&self.photos, &found, ms, fit);
        Ok((found, figures))
    }

    fn fit(&self, kept: &[Vec<Item>]) -> Result<(GroupFit, GroupFit)> {
        subcategory_fit(&self.photos, kept, &self.dir, &self.embedder, &self.catalog)
    }

    /// Per-class IoU of the parser's grid cells against the masks.
    pub fn parser_iou(&self, parser: &Parser) -> Result<BTreeMap<String, f64>> {
        parser_iou(parser, &self.photos, &self.dir, &self.ccp)
    }
}

pub fn run(options: &DetectBenchOptions) -> Result<()> {
    let bench = Validation::load(&options.files)?;
    let models_dir = &options.files.models_dir;
    // Every model read once: the embedder's backbone is the parser's too.
    let device = &bench.device;
    let objects = read_model(&models_dir.join("nanodet.json"))?;
    let pose = read_model(&models_dir.join("movenet-lightning.json"))?;
    let parser = bench.parser(std::fs::read(models_dir.join("parser.bpk"))?, "parser.bpk")?;
    let parser_only = Detector::new(None, None, device)?.with_parser(parser.clone());
    let with_parser = Detector::new(Some(&objects), None, device)?.with_parser(parser.clone());
    let composed = Detector::new(Some(&objects), Some(&pose), device)?;

    eprintln!("detecting on {} validation photos, with the subCategory fit...", bench.photos());
    let (parsed, parser_figures) = bench.figures(&with_parser)?;
    let (_, parser_only_ms) = detect_all(&parser_only, &bench.photos, &bench.dir)?;
    let (old, composed_figures) = bench.figures(&composed)?;
    let parser_iou = bench.parser_iou(&parser)?;
    if let Some(path) = std::env::var_os("LOOKALIKE_DETECT_DUMP") {
        // Every item of every photo, for looking into misses by hand.
        let dump: Vec<serde_json::Value> = bench
            .photos
            .iter()
            .zip(parsed.iter().zip(&old))
            .map(|(p, (parsed, old))| {
                serde_json::json!({"file": p.file, "truth": p.truth, "parser": parsed, "composed": old})
            })
            .collect();
        std::fs::write(&path, serde_json::to_vec(&dump)?)?;
    }
    // The parser's boxes without the cut-out: what the masks change.
    let unmasked: Vec<Vec<Item>> = limited(&parsed, DEFAULT_MAX_BOXES)
        .into_iter()
        .map(|items| items.into_iter().map(|i| Item { mask: None, ..i }).collect())
        .collect();
    let parser_boxes_fit = bench.fit(&unmasked)?.0.all;

    // The label head's accuracy, on whole catalog images by articleType.
    let columns = Columns {
        id: Some("product_id".into()),
        image: Some("file".into()),
        label: Some("articleType".into()),
    };
    let fashion = embed_with_cache(
        &options.files.data_dir.join("fashion-product-images/labels.csv"),
        &columns,
        &options.files.cache_dir,
        &options.files.model,
    )?;
    let trained = train_labels(&fashion.products, &fashion.vectors, "articleType", 20, 0.2)?;
    let wasm_cpu = wasm_timing(options, &bench.dir.join(&bench.photos[0].file));

    let report = DetectReport {
        photos: bench.photos(),
        parser: parser_figures,
        composed: composed_figures,
        parser_only_ms_native: parser_only_ms,
        parser_boxes_fit,
        parser_iou,
        wasm_cpu,
        label_head_accuracy: trained.accuracy,
        label_head_majority_accuracy: trained.majority_accuracy,
        label_head_tested_on: trained.tested_on,
    };
    crate::emit(options.json, &report, print_report)
}

fn print_report(report: &DetectReport) {
    println!(
        "CCP street fashion, {} validation photos (never trained on): recall at IoU >= 0.5",
        report.photos
    );
    let heading = |name: &str| format!("{name} {DEFAULT_MAX_BOXES} / {REPORT_MAX_BOXES} / every");
    println!("{:<12} {:>22} {:>26}   of", "group", heading("parser"), heading("composed"));
    for (group, parser) in &report.parser.recall_default {
        let (p, c) = (&report.parser, &report.composed);
        println!(
            "{group:<12} {:>6.3} {:>6.3} {:>6.3}     {:>6.3} {:>6.3} {:>6.3}      {}",
            parser.recall,
            p.recall_report[group].recall,
            p.recall_every_item[group].recall,
            c.recall_default[group].recall,
            c.recall_report[group].recall,
            c.recall_every_item[group].recall,
            parser.total
        );
    }
    for (name, f) in [("parser", &report.parser), ("composed", &report.composed)] {
        println!(
            "{name}: boxes per photo {:.2} (at most {DEFAULT_MAX_BOXES}; {:.3} of them match a garment), {:.2} (at most {REPORT_MAX_BOXES}), {:.2} (every item); {:.0} ms per photo natively (one core)",
            f.boxes_per_photo_default,
            f.precision_default,
            f.boxes_per_photo_report,
            f.boxes_per_photo_every_item,
            f.ms_per_photo_native
        );
    }
    println!(
        "parser alone (no person detector): {:.0} ms per photo natively",
        report.parser_only_ms_native
    );
    let iou: Vec<String> = report.parser_iou.iter().map(|(c, v)| format!("{c} {v:.3}")).collect();
    println!("parser IoU per class (grid cells): {}", iou.join(", "));
    println!(
        "subCategory fit of the top-{FIT_K} look-alikes in the fashion catalog (misses count 0):"
    );
    for (name, f) in [("parser (cut-outs)", &report.parser), ("composed (boxes)", &report.composed)]
    {
        let groups: Vec<String> = f.fit.iter().map(|(g, v)| format!("{g} {v:.3}")).collect();
        println!(
            "  {name}: {:.3} over upper, lower, shoes and bags ({:.3} over the garments found); {}",
            f.fit_all,
            f.fit_found,
            groups.join(", ")
        );
    }
    println!("  parser, boxes not cut out: {:.3}", report.parser_boxes_fit);
    for (name, f) in [("parser", &report.parser), ("composed", &report.composed)] {
        let groups: Vec<String> =
            f.fit_same_category.iter().map(|(g, v)| format!("{g} {v:.3}")).collect();
        println!(
            "  {name}, same category only (the label head's articleType): {:.3}; {}",
            f.fit_same_category_all,
            groups.join(", ")
        );
    }
    match &report.wasm_cpu {
        Some(t) => println!(
            "wasm, CPU backend, one {}x{} photo: parser alone {:.0} ms; detection with the person detector {:.0} ms; composed detector {:.0} ms",
            t["width"],
            t["height"],
            t["ms_parse"].as_f64().unwrap_or(0.0),
            t["ms_detect"].as_f64().unwrap_or(0.0),
            t["ms_composed"].as_f64().unwrap_or(0.0),
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
}

/// Runs bench/wasm_detect.mjs under node; `None` when it cannot run.
fn wasm_timing(options: &DetectBenchOptions, photo: &Path) -> Option<serde_json::Value> {
    let script = options.project.join("bench/wasm_detect.mjs");
    if !options.project.join("www/pkg/lookalike_web_models_bg.wasm").is_file() {
        return None;
    }
    let output = std::process::Command::new("node")
        .arg(&script)
        .arg(&options.files.models_dir)
        .arg(&options.files.model)
        .arg(photo)
        .output()
        .ok()?;
    if !output.status.success() {
        eprintln!("wasm timing failed: {}", String::from_utf8_lossy(&output.stderr));
        return None;
    }
    serde_json::from_slice(&output.stdout).ok()
}
