//! Detection on real photos: the TF.js graphs compiled to Burn find people,
//! their joints where anatomy puts them, and garments where CCP's masks do;
//! packshots yield their product; the label head learns catalog labels.

mod common;

use burn::tensor::Device;
use lookalike_vision::detect::groups::group_of_class;
use lookalike_vision::detect::movenet::{MoveNet, joint};
use lookalike_vision::detect::nanodet::NanoDet;
use lookalike_vision::detect::readback::block_on;
use lookalike_vision::detect::{BBox, DetectOptions, Detector, PRODUCT_CLASS, foreground_box};
use lookalike_vision::model::tfjs::{GraphModel, read_model};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::OnceLock;

fn ccp() -> PathBuf {
    common::data_dir().join("ccp-street-fashion")
}

fn models() -> &'static (GraphModel, GraphModel) {
    static MODELS: OnceLock<(GraphModel, GraphModel)> = OnceLock::new();
    MODELS.get_or_init(|| {
        (
            read_model(&common::detector_model("nanodet.json")).unwrap(),
            read_model(&common::detector_model("movenet-lightning.json")).unwrap(),
        )
    })
}

/// The first `n` CCP photos with their garment boxes, grouped as the bench does.
fn ccp_photos(n: usize) -> Vec<(PathBuf, Vec<(String, BBox)>)> {
    let mut reader = csv::Reader::from_path(ccp().join("boxes.csv")).unwrap();
    let mut photos: Vec<(String, Vec<(String, BBox)>)> = Vec::new();
    for record in reader.records() {
        let r = record.unwrap();
        let num = |i: usize| r[i].parse::<f32>().unwrap();
        if photos.last().is_none_or(|(f, _)| f != &r[0]) {
            photos.push((r[0].to_string(), Vec::new()));
        }
        photos
            .last_mut()
            .unwrap()
            .1
            .push((r[1].to_string(), BBox::new(num(3), num(4), num(5), num(6))));
    }
    photos.truncate(n);
    photos.into_iter().map(|(f, b)| (ccp().join(f), b)).collect()
}

/// Counts, per garment group, the ground-truth boxes an item of the group
/// overlaps with IoU >= 0.5 (found, of all).
fn tally(
    counts: &mut HashMap<&'static str, (usize, usize)>,
    garments: &[(String, BBox)],
    items: &[lookalike_vision::detect::Item],
) {
    for (label, truth) in garments {
        let Some(group) = lookalike_vision::detect::groups::group_of_label(label) else {
            continue;
        };
        let entry = counts.entry(group).or_default();
        entry.1 += 1;
        let found = items
            .iter()
            .any(|i| group_of_class(&i.class) == Some(group) && i.bbox.iou(truth) >= 0.5);
        entry.0 += found as usize;
    }
}

fn rgb(path: &PathBuf) -> image::RgbImage {
    image::open(path).unwrap().to_rgb8()
}

#[test]
fn nanodet_finds_the_person_in_street_photos() {
    let detector = NanoDet::new(&models().0, &Device::flex()).unwrap();
    let photos = ccp_photos(12);
    let mut found = 0;
    for (path, garments) in &photos {
        // The person spans at least all their garments (CCP boxes exclude hair and skin).
        let body = garments.iter().map(|(_, b)| *b).reduce(|a, b| a.union(&b)).unwrap();
        let objects = block_on(detector.detect(&rgb(path), 0.6)).unwrap();
        assert!(objects.iter().all(|o| (0.6..=1.0).contains(&o.score)), "{objects:?}");
        found += objects.iter().any(|o| o.label == "person" && o.bbox.iou(&body) >= 0.5) as usize;
    }
    assert!(found >= 10, "a person matched in only {found} of {} photos", photos.len());
}

#[test]
fn nanodet_padding_and_biases_fold_into_its_convolutions() {
    let detector = NanoDet::new(&models().0, &Device::flex()).unwrap();
    let program = detector.program();
    // The ONNX-converted graph pads before 28 of its 34 convolutions and adds
    // every bias separately; compiled, only the input's own pad remains.
    assert_eq!(program.count("Conv"), 34);
    assert!(program.count("Pad") <= 1, "{} pads left", program.count("Pad"));
    assert!(program.count("Binary") <= 10, "{} elementwise steps left", program.count("Binary"));
}

#[test]
fn movenet_joints_are_where_anatomy_puts_them() {
    let pose = MoveNet::new(&models().1, &Device::flex()).unwrap();
    let mut upright = 0;
    let photos = ccp_photos(12);
    for (path, _) in &photos {
        let k = block_on(pose.keypoints(&rgb(path))).unwrap();
        let y = |j: usize| k[j].y;
        let ordered = y(joint::NOSE) < y(joint::LEFT_SHOULDER)
            && y(joint::LEFT_SHOULDER) < y(joint::LEFT_HIP)
            && y(joint::LEFT_HIP) < y(joint::LEFT_KNEE)
            && y(joint::LEFT_KNEE) < y(joint::LEFT_ANKLE)
            && y(joint::RIGHT_HIP) < y(joint::RIGHT_ANKLE);
        upright += ordered as usize;
    }
    // Street-fashion photos are of people standing.
    assert!(
        upright >= 11,
        "joints in anatomical order in only {upright} of {} photos",
        photos.len()
    );
}

#[test]
fn garment_regions_overlap_the_ccp_masks() {
    let detector = Detector::new(Some(&models().0), Some(&models().1), &Device::flex()).unwrap();
    let options = DetectOptions { max_boxes: usize::MAX, ..DetectOptions::default() };
    let mut counts = HashMap::new();
    for (path, garments) in ccp_photos(30) {
        let items = block_on(detector.detect(&rgb(&path), &options)).unwrap();
        tally(&mut counts, &garments, &items);
    }
    let recall = |g: &str| counts[g].0 as f64 / counts[g].1 as f64;
    // Well under what `bench detect` measures on the whole set (0.70, 0.81,
    // 0.64): these catch a broken graph or decoding, not a 5% drift.
    assert!(recall("upper body") >= 0.5, "{counts:?}");
    assert!(recall("lower body") >= 0.6, "{counts:?}");
    assert!(recall("shoes") >= 0.4, "{counts:?}");
}

#[test]
fn packshots_yield_one_product_crop() {
    let detector = Detector::new(Some(&models().0), Some(&models().1), &Device::flex()).unwrap();
    let mut options = DetectOptions::default();
    options.classes.push(PRODUCT_CLASS.to_string());
    let dir = common::data_dir().join("fashion-product-images");
    let mut reader = csv::Reader::from_path(dir.join("labels.csv")).unwrap();
    let file_col = reader.headers().unwrap().iter().position(|h| h == "file").unwrap();
    let mut tight = 0;
    let files: Vec<String> =
        reader.records().step_by(97).take(12).map(|r| r.unwrap()[file_col].to_string()).collect();
    for file in &files {
        let image = rgb(&dir.join(file));
        let (w, h) = image.dimensions();
        let b = foreground_box(&image).expect("a packshot has a plain background");
        assert!(b.x0 >= 0.0 && b.y0 >= 0.0 && b.x1 <= w as f32 && b.y1 <= h as f32);
        tight += (b.area() < 0.9 * (w * h) as f32) as usize;
        let items = block_on(detector.detect(&image, &options)).unwrap();
        assert!(!items.is_empty() && items.len() <= options.max_boxes, "{file}: {items:?}");
    }
    assert!(
        tight >= 10,
        "the product box was tighter than the image in only {tight} of {}",
        files.len()
    );
}

#[test]
fn an_unsupported_graph_names_the_node() {
    let json = br#"{"modelTopology":{"node":[{"name":"x","op":"Placeholder"},{"name":"odd","op":"Svd","input":["x"]}]},
                    "weightsManifest":[{"paths":[],"weights":[]}]}"#;
    let graph = GraphModel::parse(json, &[], "user.json").unwrap();
    let err =
        lookalike_vision::model::tfjs::Program::compile(&graph, &["odd"], &[1, 4], &Device::flex())
            .unwrap_err()
            .to_string();
    assert!(err.contains("user.json") && err.contains("`odd`") && err.contains("Svd"), "{err}");
}

#[test]
fn the_label_head_names_products_it_never_saw() {
    // Every 4th product of the fashion catalog (516), through a fresh cache.
    let dir = std::env::temp_dir().join(format!("lookalike-labels-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let source = common::data_dir().join("fashion-product-images");
    let mut reader = csv::Reader::from_path(source.join("labels.csv")).unwrap();
    let header = reader.headers().unwrap().clone();
    let file_col = header.iter().position(|h| h == "file").unwrap();
    let catalog = dir.join("catalog.csv");
    let mut writer = csv::Writer::from_path(&catalog).unwrap();
    writer.write_record(&header).unwrap();
    for row in reader.records().step_by(4) {
        let mut row: Vec<String> = row.unwrap().iter().map(String::from).collect();
        row[file_col] = source.join(&row[file_col]).display().to_string();
        writer.write_record(&row).unwrap();
    }
    writer.flush().unwrap();
    let columns = lookalike::catalog::Columns {
        id: Some("product_id".into()),
        image: Some("file".into()),
        label: Some("articleType".into()),
    };
    let embedded = lookalike::catalog_embeddings::embed_with_cache(
        &catalog,
        &columns,
        &dir,
        &common::burnpack_weights(),
    );
    let embedded = embedded.unwrap();
    let trained = lookalike::labels::train_labels(
        &embedded.products,
        &embedded.vectors,
        "articleType",
        10,
        0.25,
    )
    .unwrap();
    assert_eq!(trained.head.labels.len(), 10);
    assert!(trained.tested_on >= 60, "{}", trained.tested_on);
    assert!(
        trained.accuracy >= 0.8,
        "top-1 accuracy {:.3} on {}",
        trained.accuracy,
        trained.tested_on
    );
}

/// The shipped garment parser on the embedder's backbone.
fn parser() -> &'static lookalike_vision::parse::Parser {
    use lookalike_vision::parse::{Parser, head_from_burnpack_bytes};
    static PARSER: OnceLock<Parser> = OnceLock::new();
    PARSER.get_or_init(|| {
        let device = Device::flex();
        let backbone = lookalike_vision::model::weights::from_file(
            &common::project_file("models/efficientnet-lite0.bpk"),
            &device,
        )
        .unwrap();
        let bytes = std::fs::read(common::project_file("models/parser.bpk")).unwrap();
        let head = head_from_burnpack_bytes(bytes, &backbone, "parser.bpk", &device).unwrap();
        Parser::new(backbone, head, device)
    })
}

/// CCP photos of the validation split (never trained on), with their boxes.
fn validation_photos(n: usize) -> Vec<(PathBuf, Vec<(String, BBox)>)> {
    let held_out: std::collections::HashSet<PathBuf> = lookalike::parser_training::read_ccp(&ccp())
        .unwrap()
        .0
        .into_iter()
        .filter(|p| lookalike::parser_training::is_validation(&p.group_id))
        .map(|p| p.file)
        .collect();
    let mut photos = ccp_photos(usize::MAX);
    photos.retain(|(path, _)| held_out.contains(path));
    photos.truncate(n);
    photos
}

#[test]
fn the_parser_finds_garments_shoes_and_bags_in_photos_it_never_saw() {
    let detector =
        Detector::new(None, None, &Device::flex()).unwrap().with_parser(parser().clone());
    let options = DetectOptions::default();
    let mut counts = HashMap::new();
    let photos = validation_photos(30);
    assert_eq!(photos.len(), 30);
    for (path, garments) in &photos {
        let items = block_on(detector.detect(&rgb(path), &options)).unwrap();
        assert!(items.len() <= options.max_boxes);
        for item in &items {
            assert!(item.score >= options.min_score, "{item:?}");
            let mask = item.mask.as_ref().expect("parser items have masks");
            // The mask is the item's: inside its box, and filling a fair part of it.
            let (x, y, w, h) = item.bbox.pixels(mask.photo_width, mask.photo_height);
            let inside =
                (y..y + h).step_by(4).flat_map(|py| (x..x + w).step_by(4).map(move |px| (px, py)));
            let (set, all) =
                inside.fold((0, 0), |(s, a), (px, py)| (s + mask.contains(px, py) as usize, a + 1));
            assert!(
                set as f64 >= 0.1 * all as f64,
                "{} covers {set} of {all} samples of its box",
                item.class
            );
        }
        tally(&mut counts, garments, &items);
    }
    let recall = |g: &str| counts[g].0 as f64 / counts[g].1 as f64;
    // Under what `bench detect` measures on all 125 validation photos: these
    // catch a broken head, backbone or region step, not a small drift.
    assert!(recall("upper body") >= 0.35, "{counts:?}");
    assert!(recall("lower body") >= 0.4, "{counts:?}");
    assert!(recall("shoes") >= 0.5, "{counts:?}");
    assert!(recall("bags") >= 0.15, "{counts:?}");
}

#[test]
fn parser_items_are_cut_out_of_the_street_before_embedding() {
    let detector =
        Detector::new(None, None, &Device::flex()).unwrap().with_parser(parser().clone());
    let (path, _) = &validation_photos(1)[0];
    let photo = image::open(path).unwrap();
    let items = block_on(detector.detect(&photo.to_rgb8(), &DetectOptions::default())).unwrap();
    let item = items.first().expect("a street photo has items");
    let (x0, y0, _, _) = item.region(photo.width(), photo.height());
    let crop = item.crop(&photo).to_rgb8();
    let grown = item.mask.as_ref().unwrap().dilated(lookalike_vision::detect::CUT_OUT_GROWTH);
    let (mut kept, mut whitened) = (0, 0);
    for (x, y, pixel) in crop.enumerate_pixels() {
        if grown.contains(x0 + x, y0 + y) {
            assert_eq!(pixel, photo.to_rgb8().get_pixel(x0 + x, y0 + y));
            kept += 1;
        } else {
            assert_eq!(pixel.0, lookalike_vision::preprocess::PAD_COLOUR);
            whitened += 1;
        }
    }
    assert!(kept > 0 && whitened > 0, "{kept} kept, {whitened} whitened");
}
