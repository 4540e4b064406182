//! `lookalike build`: catalog in, static site out.
//!
//! Stages: read the catalog, load the embedder, then for each batch decode and
//! pad-resize images in parallel, embed them, and write thumbnails; finally
//! grow the forest and write the index, the manifest, the model record and
//! the page's assets. A product whose image cannot be read or decoded is
//! skipped and reported (in `data/skipped.json`); it never aborts the build.

use super::fsutil::{copy_dir, write_atomic};
use super::progress::{Progress, format_duration};
use crate::catalog::{Catalog, CatalogFormat, Columns, Product};
use crate::forest::{Forest, ForestParams, NO_LABEL};
use crate::index_file::Index;
use crate::model::{Embedder, FEATURE_DIM, weights};
use crate::preprocess::{self, EMBED_INPUT_SIZE};
use crate::site::{self, ModelInfo, SiteManifest, SiteProduct};
use anyhow::{Context, Result, bail};
use burn::tensor::Device;
use rayon::prelude::*;
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::time::Instant;

#[derive(Debug, Clone)]
pub struct BuildOptions {
    pub catalog: PathBuf,
    pub out: PathBuf,
    pub columns: Columns,
    /// `.bpk` record or `.pth` checkpoint of EfficientNet-Lite0.
    pub model: PathBuf,
    /// Folder holding `index.html` and `www/` (with the wasm package in `www/pkg`).
    pub assets: PathBuf,
    pub forest: ForestParams,
    pub thumb_size: u32,
    pub batch_size: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct Skipped {
    pub id: String,
    pub line: usize,
    pub image: String,
    pub reason: String,
}

#[derive(Debug)]
pub struct BuildReport {
    pub products: usize,
    pub skipped: Vec<Skipped>,
    pub embed_seconds: f64,
    pub total_seconds: f64,
}

/// What one product's image became before embedding.
struct Prepared {
    model_input: Vec<f32>,
    thumbnail_jpeg: Vec<u8>,
}

pub fn build_site(options: &BuildOptions) -> Result<BuildReport> {
    let started = Instant::now();
    let catalog = read_catalog(&options.catalog, &options.columns)?;
    let catalog_dir = options.catalog.parent().unwrap_or(Path::new(".")).to_path_buf();
    let web_assets = WebAssets::locate(&options.assets)?;
    eprintln!("catalog: {} products from {}", catalog.products.len(), options.catalog.display());

    let device = Device::flex();
    let model = weights::from_file(&options.model, &device)
        .with_context(|| format!("loading the embedder from {}", options.model.display()))?;
    let embedder = Embedder::new(model, device);

    let out = &options.out;
    std::fs::create_dir_all(out.join(site::THUMBS_DIR))
        .with_context(|| format!("creating {}", out.display()))?;

    let mut kept: Vec<&Product> = Vec::new();
    let mut vectors: Vec<f32> = Vec::with_capacity(catalog.products.len() * FEATURE_DIM);
    let mut skipped = Vec::new();
    let mut progress = Progress::new("embedding", catalog.products.len());
    let embed_started = Instant::now();
    for batch in catalog.products.chunks(options.batch_size.max(1)) {
        let prepared: Vec<Result<Prepared, String>> = batch
            .par_iter()
            .map(|product| prepare(&catalog_dir, product, options.thumb_size))
            .collect();
        let mut inputs = Vec::new();
        for (product, result) in batch.iter().zip(prepared) {
            match result {
                Ok(p) => {
                    let thumb_path = out.join(thumb_path(kept.len()));
                    write_atomic(&thumb_path, &p.thumbnail_jpeg)
                        .with_context(|| format!("writing {}", thumb_path.display()))?;
                    inputs.push(p.model_input);
                    kept.push(product);
                }
                Err(reason) => {
                    eprintln!("\nskipping {} (line {}): {reason}", product.id, product.line);
                    skipped.push(Skipped {
                        id: product.id.clone(),
                        line: product.line,
                        image: product.image.clone(),
                        reason,
                    });
                }
            }
        }
        for vector in embedder.embed_batch(&inputs)? {
            vectors.extend_from_slice(&vector);
        }
        progress.advance(batch.len());
    }
    progress.finish();
    let embed_seconds = embed_started.elapsed().as_secs_f64();
    if kept.is_empty() {
        bail!("no product of {} had a readable image", options.catalog.display());
    }

    let label_names = catalog.label_names();
    let labels: Vec<u32> = kept
        .iter()
        .map(|p| match &p.label {
            Some(l) => label_names.iter().position(|n| n == l).expect("label was collected") as u32,
            None => NO_LABEL,
        })
        .collect();
    let forest_started = Instant::now();
    let forest = Forest::build(vectors, FEATURE_DIM, Some(labels), &options.forest)?;
    let index = Index {
        forest,
        ids: kept.iter().map(|p| p.id.clone()).collect(),
        label_names,
    };
    eprintln!(
        "forest: {} trees over {} items in {}, {:.0} bytes/item",
        index.forest.n_trees(),
        index.forest.len(),
        format_duration(forest_started.elapsed().as_secs_f64()),
        index.forest.bytes_per_item()
    );
    write_atomic(&out.join(site::INDEX_PATH), &index.to_bytes()).context("writing the index")?;
    write_model_record(&options.model, embedder.model(), &out.join(site::MODEL_PATH))?;

    let manifest = SiteManifest {
        version: site::MANIFEST_VERSION,
        model: ModelInfo {
            name: "efficientnet-lite0".into(),
            file: site::MODEL_PATH.into(),
            input_size: EMBED_INPUT_SIZE,
            dims: FEATURE_DIM,
        },
        index: site::INDEX_PATH.into(),
        id_column: catalog.id_column.clone(),
        label_column: catalog.label_column.clone(),
        products: kept
            .iter()
            .enumerate()
            .map(|(item, p)| SiteProduct {
                id: p.id.clone(),
                label: p.label.clone(),
                thumb: thumb_path(item),
                title: site::title_of(&p.metadata),
                metadata: p.metadata.clone(),
            })
            .collect(),
    };
    write_atomic(&out.join(site::MANIFEST_PATH), &serde_json::to_vec(&manifest)?)
        .context("writing the manifest")?;
    let skipped_path = out.join("data/skipped.json");
    if skipped.is_empty() {
        let _ = std::fs::remove_file(&skipped_path);
    } else {
        write_atomic(&skipped_path, &serde_json::to_vec_pretty(&skipped)?)?;
        eprintln!("skipped {} products; see {}", skipped.len(), skipped_path.display());
    }
    web_assets.copy_into(out)?;

    Ok(BuildReport {
        products: kept.len(),
        skipped,
        embed_seconds,
        total_seconds: started.elapsed().as_secs_f64(),
    })
}

pub fn read_catalog(path: &Path, columns: &Columns) -> Result<Catalog> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading catalog {}", path.display()))?;
    let name = path.display().to_string();
    Ok(Catalog::parse(&text, &name, CatalogFormat::from_file_name(&name), columns)?)
}

fn thumb_path(item: usize) -> String {
    format!("{}/{item}.jpg", site::THUMBS_DIR)
}

/// Reads, decodes and preprocesses one product's image. Errors are reasons
/// for the skip report, not failures of the build.
fn prepare(catalog_dir: &Path, product: &Product, thumb_size: u32) -> Result<Prepared, String> {
    let image = &product.image;
    if image.starts_with("http://") || image.starts_with("https://") {
        return Err("image URLs are not fetched by this version; download them or use local paths".into());
    }
    let path = catalog_dir.join(image);
    let bytes = std::fs::read(&path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let decoded = preprocess::decode(&bytes).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut thumbnail_jpeg = Vec::new();
    preprocess::thumbnail(&decoded, thumb_size)
        .write_to(&mut std::io::Cursor::new(&mut thumbnail_jpeg), image::ImageFormat::Jpeg)
        .map_err(|e| format!("cannot encode thumbnail: {e}"))?;
    Ok(Prepared {
        model_input: preprocess::model_input(&decoded),
        thumbnail_jpeg,
    })
}

/// Ships the embedder as a Burnpack record: copied when it already is one,
/// converted (without the ImageNet head) when it is a PyTorch checkpoint.
fn write_model_record(source: &Path, model: &crate::model::EfficientNetLite, target: &Path) -> Result<()> {
    if source.extension().is_some_and(|e| e == "bpk") {
        let bytes = std::fs::read(source).with_context(|| format!("reading {}", source.display()))?;
        write_atomic(target, &bytes).with_context(|| format!("writing {}", target.display()))
    } else {
        Ok(weights::save_burnpack(model, target)?)
    }
}

/// The page: `index.html` and the `www/` folder with the wasm package.
struct WebAssets {
    index_html: PathBuf,
    www: PathBuf,
}

impl WebAssets {
    fn locate(root: &Path) -> Result<WebAssets> {
        let assets = WebAssets { index_html: root.join("index.html"), www: root.join("www") };
        let wasm = assets.www.join("pkg/lookalike_bg.wasm");
        if !assets.index_html.is_file() {
            bail!("{} not found; pass --assets with the folder holding index.html and www/", assets.index_html.display());
        }
        if !wasm.is_file() {
            bail!("the wasm package {} is missing; run ./build.sh to build it", wasm.display());
        }
        Ok(assets)
    }

    fn copy_into(&self, out: &Path) -> Result<()> {
        std::fs::copy(&self.index_html, out.join("index.html")).context("copying index.html")?;
        copy_dir(&self.www, &out.join("www")).context("copying www/")
    }
}
