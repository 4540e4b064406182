//! The garment parser from the command line: `train-parser` is
//! deterministic, reports what it learned and trains on a chosen share of
//! its split for a learning curve, `detect` draws the parser's
//! masks, packshots are searched as the catalog indexed them, and a bad
//! parser record is refused by name.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn lookalike(args: &[&str], cache: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_lookalike"))
        .args(args)
        .env("LOOKALIKE_CACHE", cache)
        .output()
        .unwrap()
}

fn ok(output: Output) -> Output {
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    output
}

fn temp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("lookalike-parser-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn s(path: &Path) -> &str {
    path.to_str().unwrap()
}

fn ccp() -> PathBuf {
    common::data_dir().join("ccp-street-fashion")
}

fn backbone() -> PathBuf {
    common::project_file("models/efficientnet-lite0.bpk")
}

/// What a head (record bytes) makes of a photo, on the shipped backbone.
fn parse(head: Vec<u8>, photo: &image::RgbImage) -> Vec<f32> {
    use lookalike_vision::parse::{Parser, head_from_burnpack_bytes};
    let device = burn::tensor::Device::flex();
    let backbone = lookalike_vision::model::weights::from_file(&backbone(), &device).unwrap();
    let head = head_from_burnpack_bytes(head, &backbone, "head", &device).unwrap();
    let map = lookalike_vision::detect::readback::block_on(
        Parser::new(backbone, head, device).parse(photo),
    );
    map.unwrap().probabilities
}

/// `train-parser` on the first 12 training photos (and 3 validation
/// photos) with the shipped backbone, writing `out` in `dir`, with its
/// features cached in `dir/cache`.
fn train_on_12(dir: &Path, out: &str, extra: &[&str]) -> Output {
    let (data, model, out) = (ccp(), backbone(), dir.join(out));
    let mut args = vec!["train-parser", "--data", s(&data), "--out", s(&out), "--model", s(&model)];
    args.extend_from_slice(&["--limit", "12"]);
    args.extend_from_slice(extra);
    lookalike(&args, &dir.join("cache"))
}

#[test]
fn training_is_deterministic_from_its_seed_and_reports_per_class_iou() {
    let dir = temp("train");
    let train = |out: &str, seed: &str| {
        let output = ok(train_on_12(&dir, out, &["--epochs", "2", "--seed", seed]));
        (std::fs::read(dir.join(out)).unwrap(), output)
    };
    let (first, output) = train("a.bpk", "7");
    let printed = String::from_utf8_lossy(&output.stdout);
    let progress = String::from_utf8_lossy(&output.stderr);
    assert!(progress.contains("epoch   2/2"), "{progress}");
    for class in ["upper body", "shoes", "bag", "background"] {
        assert!(printed.contains(class), "no IoU for {class}: {printed}");
    }
    // The second run reads the backbone's features from the cache and
    // trains to the same bytes; another seed trains to others.
    // (Records hold random parameter ids, so the weights are compared by
    // what they compute on a photo.)
    let (again, output) = train("b.bpk", "7");
    assert!(String::from_utf8_lossy(&output.stderr).contains("backbone features: from"));
    let photo = image::open(ccp().join("images/0001.jpg")).unwrap().to_rgb8();
    let (first, again) = (parse(first, &photo), parse(again, &photo));
    assert_eq!(first, again, "same seed, same data: same weights");
    let (other, _) = train("c.bpk", "8");
    assert_ne!(first, parse(other, &photo));
    // The sidecar says how the weights were made.
    let provenance: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("a.json")).unwrap()).unwrap();
    assert_eq!(provenance["seed"], 7);
    assert_eq!(provenance["training_photos"], 12);
    assert_eq!(provenance["data_sha256"].as_str().unwrap().len(), 64);
    assert_eq!(provenance["report"]["iou"].as_array().unwrap().len(), 13);
    // The trained head is a parser `detect` can use.
    let photo = ccp().join("images/0001.jpg");
    let detected = ok(lookalike(
        &["detect", s(&photo), "--parser", s(&dir.join("a.bpk")), "--backbone", s(&backbone())],
        &dir.join("cache"),
    ));
    let _: serde_json::Value = serde_json::from_slice(&detected.stdout).unwrap();
}

/// A learning curve's point: the head trains on the first N training
/// photos, validates on the same validation photos as a full run, and
/// reads the backbone's features from the full run's cache.
#[test]
fn training_photos_bounds_the_training_split_only() {
    let dir = temp("curve");
    let train =
        |out: &str, extra: &[&str]| train_on_12(&dir, out, &[&["--epochs", "1"], extra].concat());
    let provenance = |name: &str| -> serde_json::Value {
        serde_json::from_slice(&std::fs::read(dir.join(name)).unwrap()).unwrap()
    };
    ok(train("all.bpk", &[]));
    let output = ok(train("some.bpk", &["--training-photos", "5"]));
    assert!(String::from_utf8_lossy(&output.stderr).contains("backbone features: from"));
    let (all, some) = (provenance("all.json"), provenance("some.json"));
    assert_eq!(all["training_photos"], 12);
    assert_eq!(some["training_photos"], 5);
    assert_eq!(some["validation_photos"], all["validation_photos"]);
    assert_ne!(some["data_sha256"], all["data_sha256"], "the hash covers what was trained on");
    assert!(some["command"].as_str().unwrap().ends_with("--training-photos 5"));
    // More photos than the split has (or none) is refused by name, before any work.
    for n in ["13", "0"] {
        let output = train("none.bpk", &["--training-photos", n]);
        assert!(!output.status.success());
        let message = String::from_utf8_lossy(&output.stderr);
        assert!(message.contains(&format!("--training-photos {n}")), "{message}");
        assert!(message.contains("has 1 to 12 photos"), "{message}");
    }
    assert!(!dir.join("none.bpk").exists());
}

#[test]
fn detect_draws_the_parsers_masks_inside_their_boxes() {
    let dir = temp("overlay");
    let photo = ccp().join("images/0003.jpg");
    let overlay = dir.join("overlay.png");
    let output = ok(lookalike(&["detect", s(&photo), "--overlay", s(&overlay)], &dir));
    let items: Vec<serde_json::Value> = serde_json::from_slice(&output.stdout).unwrap();
    assert!(items.len() >= 2, "{items:?}");
    let layer = image::open(&overlay).unwrap().to_rgba8();
    assert_eq!(layer.dimensions(), image::image_dimensions(&photo).unwrap());
    let boxes: Vec<[f64; 4]> = items
        .iter()
        .map(|i| ["x0", "y0", "x1", "y1"].map(|k| i["bbox"][k].as_f64().unwrap()))
        .collect();
    let mut drawn = 0;
    for (x, y, pixel) in layer.enumerate_pixels() {
        if pixel.0[3] == 0 {
            continue;
        }
        drawn += 1;
        let (x, y) = (x as f64 + 0.5, y as f64 + 0.5);
        assert!(
            boxes.iter().any(|b| b[0] <= x && x <= b[2] && b[1] <= y && y <= b[3]),
            "a drawn pixel ({x}, {y}) outside every item's box"
        );
    }
    let share = drawn as f64 / (layer.width() * layer.height()) as f64;
    assert!(share > 0.02, "the masks cover {share:.4} of the photo");
}

#[test]
fn a_packshot_is_one_product_whatever_the_classes() {
    let dir = temp("packshot");
    let photo = common::data_dir().join("fashion-product-images/images/1563.jpg");
    let output = ok(lookalike(&["detect", s(&photo), "--classes", "shoes"], &dir));
    let items: Vec<serde_json::Value> = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(items.len(), 1, "{items:?}");
    assert_eq!(items[0]["class"], "product");
}

#[test]
fn a_bad_parser_record_is_refused_by_name() {
    let dir = temp("bad");
    let photo = ccp().join("images/0001.jpg");
    let garbage = dir.join("parser.bpk");
    std::fs::write(&garbage, b"not a burnpack record at all").unwrap();
    let output = lookalike(&["detect", s(&photo), "--parser", s(&garbage)], &dir);
    assert!(!output.status.success());
    let message = String::from_utf8_lossy(&output.stderr);
    assert!(message.contains(s(&garbage)), "{message}");
    // A record of the embedder is not a parser head either.
    let output = lookalike(&["detect", s(&photo), "--parser", s(&backbone())], &dir);
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("efficientnet-lite0.bpk"));
}

#[test]
fn training_data_that_leaves_its_folder_or_names_unknown_labels_is_refused() {
    let dir = temp("hostile");
    let data = dir.join("ccp");
    std::fs::create_dir_all(&data).unwrap();
    std::fs::write(data.join("label_names.csv"), "label_id,label\n0,null\n1,shoes\n").unwrap();
    std::fs::write(
        data.join("labels.csv"),
        "file,group_id,mask\nimages/a.jpg,a,masks/a.png\n../../etc/b.jpg,b,masks/b.png\n",
    )
    .unwrap();
    let output =
        lookalike(&["train-parser", "--data", s(&data), "--out", s(&dir.join("p.bpk"))], &dir);
    assert!(!output.status.success());
    let message = String::from_utf8_lossy(&output.stderr);
    assert!(message.contains("line 3") && message.contains("leaves the folder"), "{message}");
    std::fs::write(data.join("label_names.csv"), "label_id,label\n0,null\n1,cravat\n").unwrap();
    let output =
        lookalike(&["train-parser", "--data", s(&data), "--out", s(&dir.join("p.bpk"))], &dir);
    let message = String::from_utf8_lossy(&output.stderr);
    assert!(message.contains("unknown label `cravat`") && message.contains("line 3"), "{message}");
    // Nothing was written.
    assert!(!dir.join("p.bpk").exists());
}
