//! The native pipeline on real data: a 295-product sample of the shared
//! fashion catalog (every 7th product) becomes a site, and its look-alikes
//! agree with the catalog's labels.

mod common;

use lookalike::attributes::LearnSpec;
use lookalike::catalog::Columns;
use lookalike::cli::load_attribute_heads;
use lookalike::cli::load_site;
use lookalike::eval::{column_values, evaluate};
use lookalike::site_builder::{
    BuildOptions, BuildReport, CropSpec, DetectorFiles, Storage, build_site,
};
use lookalike_forest::{ForestParams, Metric};
use lookalike_index::appearance::Weights;
use lookalike_index::rank::{RecommendOptions, Recommendation, recommend_item};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

struct Built {
    dir: PathBuf,
    report: BuildReport,
}

fn scratch(name: &str) -> PathBuf {
    let dir =
        std::env::temp_dir().join(format!("lookalike-site-test-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Writes a sample catalog with absolute image paths, plus two broken rows.
fn sample_catalog(dir: &Path) -> PathBuf {
    let source = common::data_dir().join("fashion-product-images");
    let text = std::fs::read_to_string(source.join("labels.csv")).unwrap();
    let mut reader = csv::Reader::from_reader(text.as_bytes());
    let header = reader.headers().unwrap().clone();
    let file_col = header.iter().position(|h| h == "file").unwrap();
    let mut writer = csv::Writer::from_path(dir.join("catalog.csv")).unwrap();
    writer.write_record(&header).unwrap();
    let mut template = None;
    for (i, row) in reader.records().enumerate() {
        let row = row.unwrap();
        if i % 7 != 0 {
            continue;
        }
        let mut fields: Vec<String> = row.iter().map(str::to_string).collect();
        fields[file_col] = source.join(&fields[file_col]).display().to_string();
        writer.write_record(&fields).unwrap();
        template.get_or_insert(fields);
    }
    // A missing file and a file that is not an image: skipped, reported.
    let mut missing = template.clone().unwrap();
    missing[1] = "missing-1".into();
    missing[file_col] = "/nonexistent/nothing.jpg".into();
    writer.write_record(&missing).unwrap();
    let mut not_image = template.unwrap();
    not_image[1] = "not-an-image-1".into();
    not_image[file_col] = source.join("SOURCE.md").display().to_string();
    writer.write_record(&not_image).unwrap();
    writer.flush().unwrap();
    dir.join("catalog.csv")
}

fn options(dir: &Path, catalog: PathBuf) -> BuildOptions {
    BuildOptions {
        catalog,
        out: dir.join("site"),
        columns: Columns {
            id: Some("product_id".into()),
            image: Some("file".into()),
            label: Some("articleType".into()),
        },
        model: common::burnpack_weights(),
        assets: Some(common::fake_assets(dir)),
        forest: ForestParams::new(Metric::Angular),
        storage: Storage::default(),
        thumb_size: 160,
        batch_size: 16,
        // A fresh cache: these tests must really fetch and embed.
        cache_dir: dir.join("cache"),
        skip_bad: false,
        precompute: None,
        // Whole images: the recall and label figures below were set on them.
        crops: CropSpec::Whole,
        detector: None,
        labels: None,
        learn: Vec::new(),
        colour_weight: 0.0,
        allow_private_redirects: false,
        layout: Default::default(),
    }
}

/// The site is built once and shared by the tests below.
fn built() -> &'static Built {
    static BUILT: OnceLock<Built> = OnceLock::new();
    BUILT.get_or_init(|| {
        let dir = scratch("shared");
        let catalog = sample_catalog(&dir);
        let report =
            build_site(&options(&dir, catalog)).expect("build succeeds despite broken rows");
        Built { dir: dir.join("site"), report }
    })
}

fn lookalike(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_lookalike")).args(args).output().unwrap()
}

#[test]
fn broken_images_are_skipped_and_reported() {
    let built = built();
    assert_eq!(built.report.products, 295);
    let skipped: Vec<String> = built.report.skipped.iter().map(|s| s.id.clone()).collect();
    assert_eq!(skipped, ["missing-1", "not-an-image-1"]);
    assert!(built.report.skipped[0].reason.contains("/nonexistent/nothing.jpg"));
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(built.dir.join("data/skipped.json")).unwrap())
            .unwrap();
    assert_eq!(report.as_array().unwrap().len(), 2);
}

#[test]
fn lookalikes_agree_with_catalog_labels() {
    let (index, manifest) = load_site(&built().dir).unwrap();
    let labels = column_values(&manifest, "articleType");
    let report = evaluate(&index, &labels, "articleType", 10, None);
    // What random neighbours would score: the chance that another product
    // shares the query's label (about 0.06 on this sample).
    let known: Vec<&String> = labels.iter().flatten().collect();
    let chance = known
        .iter()
        .map(|l| (known.iter().filter(|m| *m == l).count() - 1) as f64 / (known.len() - 1) as f64)
        .sum::<f64>()
        / known.len() as f64;
    assert!(report.precision_at_k >= 6.0 * chance, "chance {chance:.3}: {report:?}");
    // The forest loses almost nothing against exact search.
    assert!(report.exact_precision_at_k - report.precision_at_k <= 0.02, "{report:?}");
    assert!(report.recall_vs_exact >= 0.85, "{report:?}");
    let watches: Vec<Option<String>> =
        labels.iter().map(|l| l.clone().filter(|l| l == "Watches")).collect();
    let watch_report = evaluate(&index, &watches, "Watches", 10, None);
    assert!(watch_report.precision_at_k >= 0.6, "{watch_report:?}");
    eprintln!("{report:?}\n{watch_report:?}");
}

#[test]
fn query_prints_the_reports_json() {
    let site = built().dir.to_str().unwrap();
    let output = lookalike(&["query", "--site", site, "--id", "1563", "-k", "5"]);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let results: Vec<Recommendation> = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(results.len(), 5);
    assert!(
        results.iter().all(|r| r.original_product_id == "1563" && r.similar_product_id != "1563")
    );
    assert!(results.windows(2).all(|w| w[0].score >= w[1].score));
    assert!(results[0].score > 0.5 && results[0].score <= 1.0001);
}

#[test]
fn same_label_query_keeps_the_query_class() {
    let site = built().dir.to_str().unwrap();
    let (_, manifest) = load_site(&built().dir).unwrap();
    let label_of = |id: &str| manifest.products.iter().find(|p| p.id == id).unwrap().label.clone();
    let output = lookalike(&["query", "--site", site, "--id", "1563", "-k", "8", "--same-label"]);
    let results: Vec<Recommendation> = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(results.len(), 8);
    assert!(results.iter().all(|r| label_of(&r.similar_product_id) == label_of("1563")));
}

#[test]
fn unknown_id_is_a_clear_error() {
    let output =
        lookalike(&["query", "--site", built().dir.to_str().unwrap(), "--id", "no-such-product"]);
    assert!(!output.status.success());
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("no product with id 'no-such-product'")
    );
}

#[test]
fn a_bad_catalog_fails_with_file_and_line_and_keeps_the_built_site() {
    let dir = scratch("bad");
    let site = dir.join("site");
    std::fs::create_dir_all(site.join("data")).unwrap();
    std::fs::write(site.join("data/index.lkf"), b"previous index").unwrap();
    let catalog = dir.join("bad.csv");
    std::fs::write(&catalog, "product_id,file,articleType\n1,a.jpg,Watches\n1,b.jpg,Watches\n")
        .unwrap();
    let error = build_site(&options(&dir, catalog.clone())).unwrap_err().to_string();
    assert!(
        error.contains(&format!("{}:3: duplicate product id '1'", catalog.display())),
        "{error}"
    );
    assert_eq!(std::fs::read(site.join("data/index.lkf")).unwrap(), b"previous index");
    std::fs::remove_dir_all(dir).unwrap();
}

/// Recall@k of every item's query against brute force in the same forest.
fn recall_by_item(forest: &lookalike_forest::Forest, query: &lookalike_forest::Query) -> f64 {
    let n = forest.len();
    let mut found = 0;
    for item in 0..n as u32 {
        let exact = forest.exact_search_item(item, query);
        let approx = forest.search_item(item, query);
        found += exact.iter().filter(|e| approx.iter().any(|a| a.item == e.item)).count();
    }
    found as f64 / (n * query.k) as f64
}

/// Recall against brute force on real embeddings, for every metric and
/// encoding, at a generous search_k (half the catalog).
#[test]
fn forest_recall_on_real_embeddings() {
    use lookalike_forest::{Encoding, Forest, Query};
    let (index, _) = load_site(&built().dir).unwrap();
    let n = index.forest.len();
    let vectors: Vec<f32> = (0..n as u32).flat_map(|i| index.forest.stored_vector(i)).collect();
    let dims = index.forest.stored_dims();
    for metric in [Metric::Angular, Metric::Euclidean, Metric::Dot] {
        for encoding in [Encoding::F32, Encoding::F16, Encoding::I8PerVector] {
            let params = ForestParams { encoding, ..ForestParams::new(metric) };
            let forest = Forest::build(vectors.clone(), dims, None, &params).unwrap();
            let recall = recall_by_item(&forest, &Query::top(10).with_search_k(n / 2));
            assert!(recall >= 0.99, "{metric:?} {encoding:?}: recall@10 {recall}");
        }
    }
}

/// The neighbour graph on real embeddings: at its default pool it finds the
/// exact neighbours, survives the index file, and keeps label filters.
#[test]
fn graph_recall_on_real_embeddings() {
    use lookalike_forest::{Encoding, Forest, GraphParams, LabelFilter, Query};
    let (index, _) = load_site(&built().dir).unwrap();
    let n = index.forest.len();
    let vectors: Vec<f32> = (0..n as u32).flat_map(|i| index.forest.stored_vector(i)).collect();
    let labels: Vec<u32> = (0..n as u32).map(|i| index.forest.label(i)).collect();
    let dims = index.forest.stored_dims();
    for metric in [Metric::Angular, Metric::Euclidean] {
        for encoding in [Encoding::F16, Encoding::I8PerDim] {
            let params = ForestParams {
                encoding,
                n_trees: 1,
                graph: Some(GraphParams { degree: 16, ..GraphParams::default() }),
                ..ForestParams::new(metric)
            };
            let forest =
                Forest::build(vectors.clone(), dims, Some(labels.clone()), &params).unwrap();
            let file = lookalike_index::Index { forest, ..index.clone() }.to_bytes();
            let forest = lookalike_index::Index::from_bytes(&file).unwrap().forest;
            let query = Query::top(10);
            let recall = recall_by_item(&forest, &query);
            assert!(recall >= 0.97, "{metric:?} {encoding:?}: recall@10 {recall}");
            let own = forest.label(3);
            let same = forest.search_item(3, &query.clone().with_filter(LabelFilter::Equals(own)));
            assert!(!same.is_empty() && same.iter().all(|h| forest.label(h.item) == own));
        }
    }
}

#[test]
fn skip_bad_reports_bad_rows_and_precompute_writes_the_reports_json() {
    let dir = scratch("lenient");
    let images = common::data_dir().join("fashion-product-images/images");
    let mut csv = String::from("product_id,file,articleType\n");
    for (id, kind) in [
        ("1563", "Tshirts"),
        ("1580", "Swimwear"),
        ("10049", "Tshirts"),
        ("10082", "Tshirts"),
        ("10106", "Swimwear"),
    ] {
        csv.push_str(&format!("{id},{},{kind}\n", images.join(format!("{id}.jpg")).display()));
    }
    csv.push_str("1563,dup.jpg,Tshirts\n,empty-id.jpg,Tshirts\nno-image,,Tshirts\n");
    let catalog = dir.join("catalog.csv");
    std::fs::write(&catalog, csv).unwrap();
    let site = dir.join("site");
    let args = |extra: &[&str]| -> Vec<String> {
        let mut args: Vec<String> =
            ["build", "--catalog", catalog.to_str().unwrap(), "--out", site.to_str().unwrap()]
                .iter()
                .map(|s| s.to_string())
                .collect();
        args.extend(
            ["--label-col", "articleType", "--assets", common::fake_assets(&dir).to_str().unwrap()]
                .map(String::from),
        );
        args.extend(
            [
                "--model",
                common::burnpack_weights().to_str().unwrap(),
                "--cache",
                dir.join("cache").to_str().unwrap(),
            ]
            .map(String::from),
        );
        args.extend(extra.iter().map(|s| s.to_string()));
        args
    };
    let strict = Command::new(env!("CARGO_BIN_EXE_lookalike")).args(args(&[])).output().unwrap();
    assert!(!strict.status.success());
    assert!(
        String::from_utf8_lossy(&strict.stderr)
            .contains(":7: duplicate product id '1563' (first seen on line 2)")
    );

    let lenient = Command::new(env!("CARGO_BIN_EXE_lookalike"))
        .args(args(&["--skip-bad", "--precompute", "3"]))
        .output()
        .unwrap();
    assert!(lenient.status.success(), "{}", String::from_utf8_lossy(&lenient.stderr));
    let skipped: Vec<serde_json::Value> =
        serde_json::from_slice(&std::fs::read(site.join("data/skipped.json")).unwrap()).unwrap();
    let lines: Vec<u64> = skipped.iter().map(|s| s["line"].as_u64().unwrap()).collect();
    assert_eq!(lines, [7, 8, 9]);
    let recs: Vec<Recommendation> =
        serde_json::from_slice(&std::fs::read(site.join("data/recommendations.json")).unwrap())
            .unwrap();
    // Three t-shirts see each other (2 each); two swimsuits see one another (1 each).
    assert_eq!(recs.len(), 3 * 2 + 2);
    let kind = |id: &str| if ["1580", "10106"].contains(&id) { "Swimwear" } else { "Tshirts" };
    assert!(recs.iter().all(|r| kind(&r.original_product_id) == kind(&r.similar_product_id)));
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn eval_prints_the_keys_other_tools_read() {
    let output = lookalike(&[
        "eval",
        "--site",
        built().dir.to_str().unwrap(),
        "--label",
        "articleType",
        "--json",
    ]);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(report["n"], 293);
    for key in ["precision_at_k", "recall_vs_exact"] {
        let value = report[key].as_f64().unwrap();
        assert!((0.0..=1.0).contains(&value) && value > 0.3, "{key}: {value}");
    }
}

#[test]
fn a_changed_catalog_embeds_only_what_is_new_and_drops_what_is_gone() {
    let dir = scratch("incremental");
    let images = common::data_dir().join("fashion-product-images/images");
    let write = |ids: &[&str]| {
        let rows: String = ids
            .iter()
            .map(|id| format!("{id},{}\n", images.join(format!("{id}.jpg")).display()))
            .collect();
        std::fs::write(dir.join("catalog.csv"), format!("product_id,file\n{rows}")).unwrap();
    };
    let options = BuildOptions {
        columns: Columns { id: Some("product_id".into()), image: Some("file".into()), label: None },
        ..options(&dir, dir.join("catalog.csv"))
    };
    write(&["1563", "1580", "10049", "10082"]);
    let first = build_site(&options).unwrap();
    assert_eq!(first.from_cache, 0);
    let thumbs = |site: &Path| std::fs::read_dir(site.join("thumbs")).unwrap().count();
    assert_eq!(thumbs(&options.out), 4);
    // 1580 leaves, 10106 arrives.
    write(&["1563", "10049", "10082", "10106"]);
    let second = build_site(&options).unwrap();
    assert_eq!((second.products, second.from_cache), (4, 3), "only the new product is embedded");
    assert_eq!(thumbs(&options.out), 4, "the departed product's thumbnail is removed");
    let (index, manifest) = load_site(&options.out).unwrap();
    assert_eq!(index.ids, ["1563", "10049", "10082", "10106"]);
    // A lost thumbnail is redrawn without embedding again.
    std::fs::remove_file(options.out.join(&manifest.products[0].thumb)).unwrap();
    let third = build_site(&options).unwrap();
    assert_eq!(third.from_cache, 4);
    assert!(options.out.join(&manifest.products[0].thumb).exists());
    assert!(manifest.products.iter().all(|p| options.out.join(&p.thumb).exists()));
    std::fs::remove_dir_all(dir).unwrap();
}

/// The report's way: every detected item of a photo is its own index item,
/// mapping back to its product; results list each product once.
#[test]
fn detected_crops_are_indexed_and_results_name_each_product_once() {
    let dir = scratch("crops");
    let ccp = common::data_dir().join("ccp-street-fashion/images");
    let mut catalog = String::from("id,image\n");
    let mut names: Vec<String> = std::fs::read_dir(&ccp)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .collect();
    names.sort();
    for name in names.iter().take(16) {
        catalog.push_str(&format!("{name},{}\n", ccp.join(name).display()));
    }
    std::fs::write(dir.join("catalog.csv"), catalog).unwrap();
    let mut opts = options(&dir, dir.join("catalog.csv"));
    opts.columns = Columns { id: Some("id".into()), image: Some("image".into()), label: None };
    opts.crops = CropSpec::Detect;
    opts.detector = Some(DetectorFiles {
        objects: common::detector_model("nanodet.json"),
        garments: lookalike::site_builder::GarmentModel::Parser(
            lookalike::site_builder::ParserFiles {
                head: common::project_file("models/parser.bpk"),
                backbone: common::project_file("models/efficientnet-lite0.bpk"),
            },
        ),
        options: lookalike_vision::detect::DetectOptions::default(),
    });
    let report = build_site(&opts).unwrap();
    assert_eq!(report.products, 16);
    let site = dir.join("site");
    let (index, manifest) = load_site(&site).unwrap();
    // Street photos hold several items each, within the default limit.
    let most = 16 * lookalike_vision::detect::DEFAULT_MAX_BOXES;
    assert!(index.forest.len() > 16 && index.forest.len() <= most, "{} items", index.forest.len());
    // Every crop is labelled with its detector class; a photo where nothing
    // was found is indexed whole, unlabelled.
    assert!(manifest.products.iter().all(|p| p.crop.is_some() == p.label.is_some()));
    assert!(
        manifest.products.iter().filter(|p| p.crop.is_some()).count() >= index.forest.len() - 2
    );
    assert!(manifest.detector.is_some() && site.join("data/detector/nanodet.bin").is_file());
    // The parser replaces the pose model, which is not shipped.
    assert!(site.join("data/detector/parser.bpk").is_file());
    assert!(!site.join("data/detector/movenet-lightning.bin").exists());

    let out = lookalike(&["query", "--site", site.to_str().unwrap(), "--id", &names[0], "-k", "5"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let recs: Vec<Recommendation> = serde_json::from_slice(&out.stdout).unwrap();
    let ids: std::collections::HashSet<&str> =
        recs.iter().map(|r| r.similar_product_id.as_str()).collect();
    assert_eq!(recs.len(), 5);
    assert_eq!(ids.len(), 5, "a product listed twice: {recs:?}");
    assert!(!ids.contains(names[0].as_str()), "the query's own product came back");

    let photo = ccp.join(&names[20]);
    let out = lookalike(&[
        "query",
        "--site",
        site.to_str().unwrap(),
        "--image",
        photo.to_str().unwrap(),
        "-k",
        "3",
        "--same-label",
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let items: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    assert!(
        !items.is_empty() && items.len() <= lookalike_vision::detect::DEFAULT_MAX_BOXES,
        "{items:?}"
    );
    for item in &items {
        let b = item["box"].as_array().unwrap();
        assert_eq!(b.len(), 4);
        assert!(item["class"].is_string());
        let recs = item["recommendations"].as_array().unwrap();
        assert!(!recs.is_empty() && recs.len() <= 3);
    }
}

/// Share of each product's look-alikes that have its value of `column`.
fn share_alike(
    index: &lookalike_index::Index,
    manifest: &lookalike::site::SiteManifest,
    column: &str,
    weights: Option<Weights>,
) -> f64 {
    let values = column_values(manifest, column);
    let options = RecommendOptions { k: 10, search_k: None, same_label: false, weights };
    let mut total = 0.0;
    for item in 0..index.forest.len() as u32 {
        let hits = recommend_item(index, item, &options);
        let item_of = |id: &str| index.item_of(id).unwrap() as usize;
        total += hits
            .iter()
            .filter(|h| values[item_of(&h.similar_product_id)] == values[item as usize])
            .count() as f64
            / hits.len() as f64;
    }
    total / index.forest.len() as f64
}

#[test]
fn learned_kind_and_colour_are_blended_at_query_time() {
    let shared = built();
    let shared_dir = shared.dir.parent().unwrap();
    let dir = scratch("learned");
    let options = BuildOptions {
        // The shared build's cache: nothing is embedded again.
        cache_dir: shared_dir.join("cache"),
        learn: vec![
            LearnSpec { column: "articleType".into(), weight: 0.4 },
            LearnSpec { column: "baseColour".into(), weight: 0.2 },
        ],
        ..options(&dir, shared_dir.join("catalog.csv"))
    };
    let report = build_site(&options).unwrap();
    assert_eq!(report.from_cache, report.products);
    let (index, manifest) = load_site(&options.out).unwrap();
    let layout = &index.appearance.as_ref().expect("every site stores colour").layout;
    let names: Vec<&str> = layout.parts.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, ["colour", "articleType", "baseColour"]);
    assert!((layout.visual_weight - 0.4).abs() < 1e-6);
    let heads = load_attribute_heads(&options.out, &manifest).unwrap();
    assert_eq!(
        heads.iter().map(|h| h.column.as_str()).collect::<Vec<_>>(),
        ["articleType", "baseColour"]
    );

    // The embedding alone, then colour weighed in, then the site's defaults.
    let visual = Weights::visual_only(layout);
    let colour = Weights::visual_only(layout)
        .with_overrides(&[("visual".into(), 0.6), ("colour".into(), 0.4)], layout)
        .unwrap();
    let colour_by_visual = share_alike(&index, &manifest, "baseColour", Some(visual.clone()));
    let colour_by_signature = share_alike(&index, &manifest, "baseColour", Some(colour));
    assert!(
        colour_by_signature >= colour_by_visual + 0.08,
        "same colour: {colour_by_visual:.3} by the embedding, {colour_by_signature:.3} with colour"
    );
    let kind_by_visual = share_alike(&index, &manifest, "articleType", Some(visual));
    let kind_by_default = share_alike(&index, &manifest, "articleType", None);
    assert!(
        kind_by_default > kind_by_visual,
        "same articleType: {kind_by_visual:.3} by the embedding, {kind_by_default:.3} with the learned parts"
    );

    // The command line weighs parts by name and names the ones it knows.
    let site = options.out.to_str().unwrap();
    let out =
        lookalike(&["query", "--site", site, "--id", "1563", "-k", "5", "--weight", "colour=0.5"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let recs: Vec<Recommendation> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(recs.len(), 5);
    // `eval` measures what the site's queries return: the blend.
    let out = lookalike(&["eval", "--site", site, "--label", "articleType", "--json"]);
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let (forest, blended) = (
        report["precision_at_k"].as_f64().unwrap(),
        report["blended_precision_at_k"].as_f64().unwrap(),
    );
    assert!(blended > forest && (blended - kind_by_default).abs() < 0.02, "{report}");
    let out = lookalike(&["query", "--site", site, "--id", "1563", "--weight", "size=1"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success()
            && err.contains("`size`")
            && err.contains("colour, articleType, baseColour"),
        "{err}"
    );

    // An attributes file that disagrees with the index (a head one value
    // short, consistent in itself) is a named error, not a panic.
    let attributes = options.out.join("data/attributes.json");
    let mut heads: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&attributes).unwrap()).unwrap();
    let head = &mut heads[1];
    let width = head["feature_dim"].as_u64().unwrap() as usize;
    head["labels"].as_array_mut().unwrap().pop();
    head["bias"].as_array_mut().unwrap().pop();
    let weights = head["weights"].as_array_mut().unwrap();
    weights.truncate(weights.len() - width);
    std::fs::write(&attributes, serde_json::to_vec(&heads).unwrap()).unwrap();
    let photo = common::data_dir().join("fashion-product-images/images/1563.jpg");
    let out = lookalike(&["query", "--site", site, "--image", photo.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success()
            && err.contains("attributes.json")
            && err.contains("rebuild the site")
            && !err.contains("panicked"),
        "{err}"
    );
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn a_column_that_cannot_be_learned_fails_before_any_embedding() {
    let shared_dir = built().dir.parent().unwrap().to_path_buf();
    let catalog = shared_dir.join("catalog.csv");
    let out = shared_dir.join("never-built");
    let args = [
        "build",
        "--catalog",
        catalog.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--id-col",
        "product_id",
        "--image-col",
        "file",
    ];
    let missing = lookalike(&[&args[..], &["--learn", "no_such_column"]].concat());
    let err = String::from_utf8_lossy(&missing.stderr);
    assert!(
        !missing.status.success() && err.contains("no_such_column") && err.contains("catalog.csv"),
        "{err}"
    );
    assert!(!err.contains("embedding"), "it failed only after embedding: {err}");
    let reserved = lookalike(&[&args[..], &["--learn", "colour=0.2"]].concat());
    assert!(String::from_utf8_lossy(&reserved.stderr).contains("built-in part"));
    let heavy = lookalike(
        &[&args[..], &["--learn", "articleType=0.8", "--learn", "baseColour=0.4"]].concat(),
    );
    assert!(String::from_utf8_lossy(&heavy.stderr).contains("add up to 1.2"));
    assert!(!out.exists(), "nothing was written");
}
