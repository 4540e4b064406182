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
use crate::forest::{Encoding, Forest, ForestParams, NO_LABEL};
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
    /// Metric, trees, leaf size and seed; encoding and PCA come from `storage`.
    pub forest: ForestParams,
    pub storage: Storage,
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

/// How the index stores vectors; `None` fields are chosen by catalog size.
#[derive(Debug, Clone, Default)]
pub struct Storage {
    pub encoding: Option<Encoding>,
    /// `Some(0)` turns PCA off.
    pub pca_dims: Option<usize>,
}

/// Catalogs at least this large get PCA by default: below it the projection
/// itself (dims x 1280 values) outweighs what it saves.
const AUTO_PCA_MIN_ITEMS: usize = 512;
/// PCA dimension chosen by default: on the 2,064-product fashion catalog,
/// PCA-128 with 8-bit codes matched exact f32 search in precision@10
/// (0.674 vs 0.669) at an eighth of the f16 index.
const AUTO_PCA_DIMS: usize = 128;

impl Storage {
    pub fn resolve(&self, mut params: ForestParams, n_items: usize) -> ForestParams {
        let large = n_items >= AUTO_PCA_MIN_ITEMS;
        params.pca_dims = match self.pca_dims {
            Some(0) => None,
            Some(d) => Some(d),
            None => large.then_some(AUTO_PCA_DIMS),
        };
        params.encoding = self.encoding.unwrap_or(if params.pca_dims.is_some() { Encoding::I8PerDim } else { Encoding::F16 });
        params
    }
}

/// What one product's image became before embedding.
struct Prepared {
    model_input: Vec<f32>,
    thumbnail_jpeg: Option<Vec<u8>>,
}

/// The embedded part of a catalog.
pub struct Embedded<'a> {
    /// Products whose image could be read, in catalog order.
    pub products: Vec<&'a Product>,
    /// One 1280-d vector per kept product, row-major.
    pub vectors: Vec<f32>,
    pub skipped: Vec<Skipped>,
    pub seconds: f64,
}

/// Reads, decodes, pad-resizes and embeds every product's image, in batches
/// (decoding in parallel), with progress on stderr. Unreadable images are
/// skipped and reported. With `thumb_size`, `on_thumbnail(kept_index, jpeg)`
/// receives each kept product's thumbnail.
pub fn embed_catalog<'a>(
    catalog: &'a Catalog,
    catalog_dir: &Path,
    embedder: &Embedder,
    batch_size: usize,
    thumb_size: Option<u32>,
    mut on_thumbnail: impl FnMut(usize, &[u8]) -> Result<()>,
) -> Result<Embedded<'a>> {
    let started = Instant::now();
    let mut kept: Vec<&Product> = Vec::new();
    let mut vectors: Vec<f32> = Vec::with_capacity(catalog.products.len() * FEATURE_DIM);
    let mut skipped = Vec::new();
    let mut progress = Progress::new("embedding", catalog.products.len());
    for batch in catalog.products.chunks(batch_size.max(1)) {
        let prepared: Vec<Result<Prepared, String>> =
            batch.par_iter().map(|product| prepare(catalog_dir, product, thumb_size)).collect();
        let mut inputs = Vec::new();
        for (product, result) in batch.iter().zip(prepared) {
            match result {
                Ok(p) => {
                    if let Some(jpeg) = &p.thumbnail_jpeg {
                        on_thumbnail(kept.len(), jpeg)?;
                    }
                    inputs.push(p.model_input);
                    kept.push(product);
                }
                Err(reason) => {
                    eprintln!("\nskipping {} (line {}): {reason}", product.id, product.line);
                    skipped.push(Skipped { id: product.id.clone(), line: product.line, image: product.image.clone(), reason });
                }
            }
        }
        for vector in embedder.embed_batch(&inputs)? {
            vectors.extend_from_slice(&vector);
        }
        progress.advance(batch.len());
    }
    progress.finish();
    Ok(Embedded { products: kept, vectors, skipped, seconds: started.elapsed().as_secs_f64() })
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

    let thumb_size = options.thumb_size;
    let embedded = embed_catalog(&catalog, &catalog_dir, &embedder, options.batch_size, Some(thumb_size), |item, jpeg| {
        let path = out.join(thumb_path(item));
        write_atomic(&path, jpeg).with_context(|| format!("writing {}", path.display()))
    })?;
    let Embedded { products: kept, vectors, skipped, seconds: embed_seconds } = embedded;
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
    let params = options.storage.resolve(options.forest.clone(), kept.len());
    let forest = Forest::build(vectors, FEATURE_DIM, Some(labels), &params)?;
    let index = Index {
        forest,
        ids: kept.iter().map(|p| p.id.clone()).collect(),
        label_names,
    };
    let index_bytes = index.to_bytes();
    eprintln!(
        "forest: {} trees over {} items in {}; index {:.1} MB, {:.0} bytes/item ({}{})",
        index.forest.n_trees(),
        index.forest.len(),
        format_duration(forest_started.elapsed().as_secs_f64()),
        index_bytes.len() as f64 / 1e6,
        index_bytes.len() as f64 / index.forest.len() as f64,
        index.forest.encoding().name(),
        index.forest.projection().map(|p| format!(", PCA to {}", p.out_dims)).unwrap_or_default(),
    );
    write_atomic(&out.join(site::INDEX_PATH), &index_bytes).context("writing the index")?;
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
fn prepare(catalog_dir: &Path, product: &Product, thumb_size: Option<u32>) -> Result<Prepared, String> {
    let image = &product.image;
    if image.starts_with("http://") || image.starts_with("https://") {
        return Err("image URLs are not fetched by this version; download them or use local paths".into());
    }
    let path = catalog_dir.join(image);
    let bytes = std::fs::read(&path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let decoded = preprocess::decode(&bytes).map_err(|e| format!("{}: {e}", path.display()))?;
    let thumbnail_jpeg = match thumb_size {
        Some(size) => {
            let mut jpeg = Vec::new();
            preprocess::thumbnail(&decoded, size)
                .write_to(&mut std::io::Cursor::new(&mut jpeg), image::ImageFormat::Jpeg)
                .map_err(|e| format!("cannot encode thumbnail: {e}"))?;
            Some(jpeg)
        }
        None => None,
    };
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
