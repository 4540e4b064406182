//! `lookalike-bench parser-curve`: the garment parser's learning curve.
//! How much would more labelled street photos help?
//!
//! The head is trained, with the shipped recipe, on the first quarter, half,
//! three quarters and all of CCP's training split (`train-parser
//! --training-photos N`). Each head is measured as `bench detect` measures
//! the shipped one, on the same validation photos:
//! - recall at IoU >= 0.5 at the defaults and with every item;
//! - the share of kept boxes that match a garment;
//! - the subCategory fit;
//! - the grid IoU of every class.
//!
//! Every point reads the same cached backbone features. The heads are kept
//! under `$LOOKALIKE_CACHE/bench/parser-curve/` for a look by hand.
//!
//! How to read it: if the figures still rise with every doubling of the
//! photos, the parser is limited by its data, not by its decoding. The
//! slope per doubling says how many photos a target would take.

use crate::detect::{DetectorFigures, Validation, ValidationFiles};
use anyhow::{Context, Result};
use lookalike::parser_training::{TrainParserArgs, is_validation, read_ccp, train_parser};
use lookalike_vision::detect::Detector;
use lookalike_vision::model::tfjs::read_model;
use lookalike_vision::parse::Part;
use lookalike_vision::parse::train::TrainOptions;
use serde::Serialize;
use std::collections::BTreeMap;

pub struct ParserCurveOptions {
    pub files: ValidationFiles,
    pub json: bool,
}

/// Shares of the training split, in eighths.
const EIGHTHS: [usize; 4] = [2, 4, 6, 8];
/// `--quick`: two small shares, 2 epochs, 30 validation photos.
const QUICK_EIGHTHS: [usize; 2] = [1, 2];

/// One head of the curve.
#[derive(Debug, Serialize)]
pub struct CurvePoint {
    pub training_photos: usize,
    pub figures: DetectorFigures,
    /// Grid IoU per class on the validation photos.
    pub parser_iou: BTreeMap<String, f64>,
    /// The mean of `parser_iou` over the 10 item classes (not background,
    /// skin or hair).
    pub item_iou: f64,
    pub training_seconds: f64,
}

#[derive(Debug, Serialize)]
pub struct CurveReport {
    pub validation_photos: usize,
    pub training_split: usize,
    pub epochs: usize,
    pub points: Vec<CurvePoint>,
}

pub fn run(options: &ParserCurveOptions) -> Result<()> {
    let files = &options.files;
    let bench = Validation::load(files)?;
    let training_split =
        read_ccp(&bench.dir)?.0.iter().filter(|p| !is_validation(&p.group_id)).count();
    let objects = read_model(&files.models_dir.join("nanodet.json"))?;
    let heads = files.cache_dir.join("bench/parser-curve");
    std::fs::create_dir_all(&heads).with_context(|| format!("creating {}", heads.display()))?;
    let epochs = if files.quick { 2 } else { TrainOptions::default().epochs };
    let eighths: &[usize] = if files.quick { &QUICK_EIGHTHS } else { &EIGHTHS };
    let mut points = Vec::new();
    for eighth in eighths {
        let n = (training_split * eighth).div_ceil(8);
        eprintln!("training on {n} of {training_split} training photos...");
        let out = heads.join(format!("parser-{n}.bpk"));
        let started = std::time::Instant::now();
        train_parser(&TrainParserArgs {
            data: bench.dir.clone(),
            out: out.clone(),
            backbone: files.model.clone(),
            cache_dir: files.cache_dir.clone(),
            options: TrainOptions { epochs, ..TrainOptions::default() },
            limit: None,
            training_photos: Some(n),
        })?;
        let training_seconds = started.elapsed().as_secs_f64();
        let record = std::fs::read(&out).with_context(|| format!("reading {}", out.display()))?;
        let parser = bench.parser(record, &out.display().to_string())?;
        // As `bench detect` measures the shipped head: with the person
        // detector for photos of several people.
        let detector =
            Detector::new(Some(&objects), None, &bench.device)?.with_parser(parser.clone());
        eprintln!("measuring it on {} validation photos...", bench.photos());
        let (_, figures) = bench.figures(&detector)?;
        let parser_iou = bench.parser_iou(&parser)?;
        let items: Vec<f64> = parser_iou
            .iter()
            .filter(|(class, _)| Part::from_name(class).is_some_and(Part::is_item))
            .map(|(_, iou)| *iou)
            .collect();
        let item_iou = items.iter().sum::<f64>() / items.len().max(1) as f64;
        points.push(CurvePoint {
            training_photos: n,
            figures,
            parser_iou,
            item_iou,
            training_seconds,
        });
    }
    let report = CurveReport { validation_photos: bench.photos(), training_split, epochs, points };
    crate::emit(options.json, &report, print_report)
}

fn print_report(report: &CurveReport) {
    println!(
        "The parser's learning curve: heads trained on part of CCP's {} training photos ({} epochs), measured on {} validation photos",
        report.training_split, report.epochs, report.validation_photos
    );
    let Some(first) = report.points.first() else { return };
    let groups: Vec<&String> = first.figures.recall_default.keys().collect();
    let names: Vec<String> = groups.iter().map(|g| format!("{g:>12}")).collect();
    println!("recall at IoU >= 0.5 at the defaults (every item in brackets):");
    println!("{:>7} {}  {:>6} {:>5} {:>8}", "photos", names.join(" "), "boxes", "fit", "item IoU");
    for point in &report.points {
        let f = &point.figures;
        let recalls: Vec<String> = groups
            .iter()
            .map(|g| {
                format!(
                    "{:>5.3} ({:.2})",
                    f.recall_default[*g].recall, f.recall_every_item[*g].recall
                )
            })
            .collect();
        println!(
            "{:>7} {}  {:>6.2} {:>5.3} {:>8.3}",
            point.training_photos,
            recalls.join(" "),
            f.boxes_per_photo_default,
            f.fit_all,
            point.item_iou
        );
    }
}
