//! Paged sites from the command line: `embed` (whole and in shards),
//! `build --vectors`, the pages read back through the paged reader, chunk
//! files, layouts, and bad inputs that must not touch a built site.

mod common;

use lookalike_forest::metric;
use lookalike_index::paged::{PagedIndex, PagedQuery, Step, coalesce};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

const PRODUCTS: usize = 120;

fn lookalike(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_lookalike")).args(args).output().unwrap()
}

fn ok(output: Output) -> Output {
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    output
}

fn s(path: &Path) -> &str {
    path.to_str().unwrap()
}

/// The first products of the shared fashion catalog (absolute image paths),
/// embedded once whole and once in three shards.
struct Embedded {
    dir: PathBuf,
    catalog: PathBuf,
}

fn embedded() -> &'static Embedded {
    static ONCE: OnceLock<Embedded> = OnceLock::new();
    ONCE.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("lookalike-paged-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let source = common::data_dir().join("fashion-product-images/labels.csv");
        let text = std::fs::read_to_string(&source).unwrap();
        let images = source.parent().unwrap();
        let mut lines = text.lines();
        let mut catalog = format!("{}\n", lines.next().unwrap());
        for line in lines.take(PRODUCTS) {
            catalog.push_str(&format!("{}/{line}\n", images.display()));
        }
        let path = dir.join("catalog.csv");
        std::fs::write(&path, catalog).unwrap();
        let columns = ["--id-col", "product_id", "--image-col", "file"];
        let embed = |out: &Path, shard: Option<&str>| {
            let mut args = vec!["embed", "--catalog", s(&path), "--out", s(out)];
            args.extend(columns);
            if let Some(shard) = shard {
                args.extend(["--shard", shard]);
            }
            ok(lookalike(&args));
        };
        embed(&dir.join("whole"), None);
        for i in 0..3 {
            embed(&dir.join(format!("shard{i}")), Some(&format!("{i}/3")));
        }
        Embedded { dir, catalog: path }
    })
}

fn build(out: &Path, vectors: &[(PathBuf, PathBuf)], extra: &[&str]) -> Output {
    let e = embedded();
    let mut args = vec![
        "build".to_string(),
        "--catalog".into(),
        s(&e.catalog).into(),
        "--out".into(),
        s(out).into(),
        "--id-col".into(),
        "product_id".into(),
        "--image-col".into(),
        "file".into(),
        "--label-col".into(),
        "articleType".into(),
    ];
    for (v, i) in vectors {
        args.extend(["--vectors".into(), s(v).into(), "--ids".into(), s(i).into()]);
    }
    args.extend(extra.iter().map(|a| a.to_string()));
    lookalike(&args.iter().map(String::as_str).collect::<Vec<_>>())
}

fn whole() -> Vec<(PathBuf, PathBuf)> {
    let dir = embedded().dir.join("whole");
    vec![(dir.join("vectors.npy"), dir.join("ids.txt"))]
}

fn shards() -> Vec<(PathBuf, PathBuf)> {
    (0..3)
        .map(|i| {
            let dir = embedded().dir.join(format!("shard{i}"));
            (dir.join("vectors.npy"), dir.join("ids.txt"))
        })
        .collect()
}

fn files(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                let name = path.strip_prefix(dir).unwrap().display().to_string();
                out.push((name, std::fs::read(&path).unwrap()));
            }
        }
    }
    out.sort();
    out
}

#[test]
fn shards_concatenate_to_the_whole_embedding_and_build_the_same_site() {
    let e = embedded();
    let whole_ids = std::fs::read_to_string(e.dir.join("whole/ids.txt")).unwrap();
    let shard_ids: String = (0..3)
        .map(|i| std::fs::read_to_string(e.dir.join(format!("shard{i}/ids.txt"))).unwrap())
        .collect();
    assert_eq!(whole_ids, shard_ids);
    assert_eq!(whole_ids.lines().count(), PRODUCTS);
    let one = e.dir.join("site-whole");
    let other = e.dir.join("site-shards");
    ok(build(&one, &whole(), &["--layout", "paged", "--list-size", "8"]));
    ok(build(&other, &shards(), &["--layout", "paged", "--list-size", "8"]));
    let (a, b) = (files(&one), files(&other));
    assert_eq!(
        a.iter().map(|f| &f.0).collect::<Vec<_>>(),
        b.iter().map(|f| &f.0).collect::<Vec<_>>()
    );
    for (x, y) in a.iter().zip(&b) {
        assert!(x.1 == y.1, "{} differs between the whole and the sharded build", x.0);
    }
}

#[test]
fn a_paged_site_answers_like_exact_search_on_real_embeddings() {
    let e = embedded();
    let site = e.dir.join("site-paged");
    ok(build(&site, &whole(), &["--layout", "paged", "--list-size", "8", "--chunk-size", "4096"]));
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(site.join("data/catalog.json")).unwrap()).unwrap();
    assert_eq!(manifest["paged"]["items"], PRODUCTS);
    assert_eq!(manifest["products"].as_array().map(Vec::len), Some(0));
    assert!(!site.join("data/index.lkf").exists());
    let pages = std::fs::read(site.join("data/paged/pages.lkp")).unwrap();
    // The chunk files are the pages file, cut.
    let mut chunks = Vec::new();
    for n in 0.. {
        match std::fs::read(site.join(format!("data/paged/chunks/{n:06}.bin"))) {
            Ok(bytes) => chunks.extend(bytes),
            Err(_) => break,
        }
    }
    assert_eq!(chunks, pages);

    let head = std::fs::read(site.join("data/paged/head.lkh")).unwrap();
    let mut index = PagedIndex::from_head(&head, 0).unwrap();
    let (vectors, rows, dims) = lookalike::npy::read_f32(&e.dir.join("whole/vectors.npy")).unwrap();
    let ids: Vec<String> = std::fs::read_to_string(e.dir.join("whole/ids.txt"))
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect();
    let unit = |v: &[f32]| {
        let n = metric::dot(v, v).sqrt();
        v.iter().map(|x| x / n).collect::<Vec<f32>>()
    };
    let units: Vec<Vec<f32>> = vectors.chunks_exact(dims).map(unit).collect();
    let (mut found, mut wanted) = (0, 0);
    for q in (0..rows).step_by(7) {
        let hits = loop {
            match index.query_item(&ids[q], &PagedQuery::top(5)).unwrap() {
                Step::Done(hits) => break hits.unwrap(),
                Step::Need(want) => {
                    for (a, b) in coalesce(&want, 0) {
                        index.accept(&want, a, &pages[a as usize..b as usize]).unwrap();
                    }
                }
            }
        };
        let mut exact: Vec<(usize, f32)> =
            (0..rows).filter(|&i| i != q).map(|i| (i, metric::dot(&units[q], &units[i]))).collect();
        exact.sort_by(|a, b| b.1.total_cmp(&a.1));
        let truth: Vec<&str> = exact[..5].iter().map(|&(i, _)| ids[i].as_str()).collect();
        found += hits.iter().filter(|h| truth.contains(&h.id.as_str())).count();
        wanted += 5;
        let record: serde_json::Value = serde_json::from_str(&hits[0].record).unwrap();
        assert_eq!(record["id"], hits[0].id.as_str());
        assert!(record["thumb"].as_str().unwrap().starts_with("thumbs/"));
        assert!(site.join(record["thumb"].as_str().unwrap()).is_file());
    }
    // PCA to 128 dimensions and 8-bit codes against exact 1280-d cosines.
    let recall = found as f64 / wanted as f64;
    assert!(recall >= 0.8, "paged recall@5 on real embeddings {recall:.3}");
}

#[test]
fn small_catalogs_ship_one_file_and_bad_vectors_keep_the_built_site() {
    let e = embedded();
    let site = e.dir.join("site-auto");
    ok(build(&site, &whole(), &[]));
    assert!(site.join("data/index.lkf").is_file(), "below 20,000 products: one file");
    assert!(!site.join("data/paged").exists());
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(site.join("data/catalog.json")).unwrap()).unwrap();
    assert_eq!(manifest["products"].as_array().map(Vec::len), Some(PRODUCTS));
    let query = ok(lookalike(&["query", "--site", s(&site), "--id", "1563", "-k", "3"]));
    assert!(String::from_utf8_lossy(&query.stdout).contains("similar_product_id"));
    let before = files(&site);

    // An id the catalog lacks, named with its file and line.
    let bad = e.dir.join("bad");
    std::fs::create_dir_all(&bad).unwrap();
    let ids = std::fs::read_to_string(e.dir.join("whole/ids.txt")).unwrap();
    std::fs::write(bad.join("ids.txt"), ids.replacen("1563\n", "no-such-product\n", 1)).unwrap();
    let out = build(&site, &[(e.dir.join("whole/vectors.npy"), bad.join("ids.txt"))], &[]);
    assert!(!out.status.success());
    let message = String::from_utf8_lossy(&out.stderr);
    assert!(message.contains("ids.txt:1: id 'no-such-product' is not in the catalog"), "{message}");
    // Rows and ids that do not match; a truncated matrix.
    std::fs::write(bad.join("short.txt"), ids.lines().take(5).collect::<Vec<_>>().join("\n"))
        .unwrap();
    let out = build(&site, &[(e.dir.join("whole/vectors.npy"), bad.join("short.txt"))], &[]);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains(&format!("{PRODUCTS} rows, but")),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let npy = std::fs::read(e.dir.join("whole/vectors.npy")).unwrap();
    std::fs::write(bad.join("cut.npy"), &npy[..npy.len() - 10]).unwrap();
    let out = build(&site, &[(bad.join("cut.npy"), e.dir.join("whole/ids.txt"))], &[]);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("data bytes for shape"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::write(bad.join("flat.npy"), lookalike::npy::encode_f32(&[], PRODUCTS, 0)).unwrap();
    let out = build(&site, &[(bad.join("flat.npy"), e.dir.join("whole/ids.txt"))], &[]);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("0 columns"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(before == files(&site), "a failed build changed the built site");
}

#[test]
fn a_catalog_build_pages_the_same_index_as_a_build_from_its_vectors() {
    let e = embedded();
    let from_vectors = e.dir.join("site-from-vectors");
    ok(build(&from_vectors, &whole(), &["--layout", "paged", "--list-size", "8"]));
    let from_catalog = e.dir.join("site-from-catalog");
    // The same embedder and crops as `embed`: the same vectors, so the
    // same pages, byte for byte.
    ok(build(
        &from_catalog,
        &[],
        &["--layout", "paged", "--list-size", "8", "--crops", "whole", "--no-detector"],
    ));
    for file in ["data/paged/head.lkh", "data/paged/pages.lkp"] {
        let a = std::fs::read(from_vectors.join(file)).unwrap();
        let b = std::fs::read(from_catalog.join(file)).unwrap();
        assert!(a == b, "{file} differs between the catalog build and the build from its vectors");
    }
    assert!(!from_catalog.join("data/index.lkf").exists());
    let query = ok(lookalike(&["query", "--site", s(&from_catalog), "--id", "1563", "-k", "3"]));
    let hits: serde_json::Value = serde_json::from_slice(&query.stdout).unwrap();
    assert_eq!(hits.as_array().map(Vec::len), Some(3));
    assert_eq!(hits[0]["original_product_id"], "1563");
    // --crops detect makes several items of a product: no paged layout.
    let out = build(&e.dir.join("site-detect"), &[], &["--layout", "paged", "--crops", "detect"]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("one item per product"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
