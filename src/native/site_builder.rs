//! `lookalike build`: catalog in, static site out.
//!
//! Stages: read the catalog, load the embedder, then for each batch decode and
//! pad-resize images in parallel, embed them, and write thumbnails; finally
//! grow the forest and write the index, the manifest, the model record and
//! the page's assets. A product whose image cannot be read or decoded is
//! skipped and reported (in `data/skipped.json`); it never aborts the build.

use super::fsutil::{copy_dir, write_atomic};
use super::fetch::{FetchOptions, Fetcher};
use super::progress::{Progress, format_duration};
use sha2::{Digest, Sha256};
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
    /// Downloaded images and computed embeddings, kept between builds.
    pub cache_dir: PathBuf,
    /// Set bad catalog rows aside (and report them) instead of failing.
    pub skip_bad: bool,
    /// Also write `data/recommendations.json`: this many look-alikes per product.
    pub precompute: Option<usize>,
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
    /// Products whose embedding came from the cache (not recomputed).
    pub from_cache: usize,
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

/// Embeddings computed before, one small file per image content and model:
/// an interrupted build resumes where it stopped, and a rebuild of an
/// unchanged catalog embeds nothing.
pub struct EmbeddingCache {
    dir: PathBuf,
}

/// Bumped whenever preprocessing changes what a given image embeds to.
const PREPROCESS_VERSION: u32 = 3;

impl EmbeddingCache {
    /// A cache under `root` for the model whose weights are `model_bytes`.
    pub fn new(root: &Path, model_bytes: &[u8]) -> Self {
        let mut hasher = Sha256::new();
        hasher.update(model_bytes);
        hasher.update(PREPROCESS_VERSION.to_le_bytes());
        let model_key = format!("{:x}", hasher.finalize());
        Self { dir: root.join(&model_key[..16]) }
    }

    fn path(&self, content_key: &str) -> PathBuf {
        self.dir.join(format!("{content_key}.f32"))
    }

    fn get(&self, content_key: &str) -> Option<Vec<f32>> {
        let bytes = std::fs::read(self.path(content_key)).ok()?;
        (bytes.len() == FEATURE_DIM * 4).then(|| bytes.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect())
    }

    fn put(&self, content_key: &str, vector: &[f32]) {
        let bytes: Vec<u8> = vector.iter().flat_map(|v| v.to_le_bytes()).collect();
        // A cache that cannot be written costs time on the next run, not this build.
        let _ = write_atomic(&self.path(content_key), &bytes);
    }
}

/// Where a product's thumbnail goes in the site: named by image content, so
/// unchanged images keep their thumbnail across rebuilds.
pub fn thumb_path(content_key: &str) -> String {
    format!("{}/{}.jpg", site::THUMBS_DIR, &content_key[..16])
}

/// What embedding a catalog needs.
pub struct EmbedJob<'a> {
    pub catalog_dir: &'a Path,
    pub fetcher: &'a Fetcher,
    pub embedder: &'a Embedder,
    pub cache: Option<&'a EmbeddingCache>,
    /// Write thumbnails of this size into this site folder.
    pub thumbnails: Option<(&'a Path, u32)>,
    pub batch_size: usize,
}

/// One product's image, read and either found in the cache or prepared.
enum Ready {
    Cached { vector: Vec<f32>, content_key: String },
    Prepared { model_input: Vec<f32>, content_key: String },
}

/// The embedded part of a catalog.
pub struct Embedded<'a> {
    /// Products whose image could be read, in catalog order.
    pub products: Vec<&'a Product>,
    /// One 1280-d vector per kept product, row-major.
    pub vectors: Vec<f32>,
    /// SHA-256 (hex) of each kept product's image bytes.
    pub content_keys: Vec<String>,
    pub skipped: Vec<Skipped>,
    /// Products whose embedding came from the cache.
    pub from_cache: usize,
    pub seconds: f64,
}

/// Fetches, decodes, pad-resizes and embeds every product's image, in batches
/// (reading and decoding in parallel), with progress on stderr. Unreadable
/// images are skipped and reported; cached embeddings are reused.
pub fn embed_catalog<'a>(catalog: &'a Catalog, job: &EmbedJob) -> Result<Embedded<'a>> {
    let started = Instant::now();
    let images: Vec<&str> = catalog.products.iter().map(|p| p.image.as_str()).collect();
    let download_failures: std::collections::HashMap<usize, String> = job.fetcher.prefetch(&images).into_iter().collect();
    let mut out = Embedded {
        products: Vec::new(),
        vectors: Vec::with_capacity(catalog.products.len() * FEATURE_DIM),
        content_keys: Vec::new(),
        skipped: Vec::new(),
        from_cache: 0,
        seconds: 0.0,
    };
    let mut progress = Progress::new("embedding", catalog.products.len());
    let lanes = std::thread::available_parallelism().map_or(1, |n| n.get());
    let indexed: Vec<(usize, &Product)> = catalog.products.iter().enumerate().collect();
    for batch in indexed.chunks(job.batch_size.max(1)) {
        let ready: Vec<Result<Ready, String>> = batch
            .par_iter()
            .map(|&(index, product)| match download_failures.get(&index) {
                Some(reason) => Err(reason.clone()),
                None => ready(job, product),
            })
            .collect();
        let mut to_embed = Vec::new();
        let mut slots = Vec::new(); // (position in `out`, content key) awaiting a vector
        for (&(_, product), result) in batch.iter().zip(ready) {
            match result {
                Ok(Ready::Cached { vector, content_key }) => {
                    out.vectors.extend_from_slice(&vector);
                    out.content_keys.push(content_key);
                    out.products.push(product);
                    out.from_cache += 1;
                }
                Ok(Ready::Prepared { model_input, content_key }) => {
                    slots.push((out.products.len(), content_key.clone()));
                    to_embed.push(model_input);
                    out.vectors.extend(std::iter::repeat_n(0.0, FEATURE_DIM));
                    out.content_keys.push(content_key);
                    out.products.push(product);
                }
                Err(reason) => {
                    eprintln!("\nskipping {} (line {}): {reason}", product.id, product.line);
                    out.skipped.push(Skipped { id: product.id.clone(), line: product.line, image: product.image.clone(), reason });
                }
            }
        }
        for ((position, content_key), vector) in slots.iter().zip(job.embedder.embed_lanes(&to_embed, lanes)?) {
            out.vectors[position * FEATURE_DIM..(position + 1) * FEATURE_DIM].copy_from_slice(&vector);
            if let Some(cache) = job.cache {
                cache.put(content_key, &vector);
            }
        }
        progress.advance(batch.len());
    }
    progress.finish();
    out.seconds = started.elapsed().as_secs_f64();
    Ok(out)
}

/// Reads one product's image; returns its cached embedding, or its model
/// input (writing the thumbnail on the way). Errors are reasons for the skip
/// report, not failures of the build.
fn ready(job: &EmbedJob, product: &Product) -> Result<Ready, String> {
    let bytes = job.fetcher.bytes(job.catalog_dir, &product.image)?;
    let content_key = format!("{:x}", Sha256::digest(&bytes));
    let thumb_file = job.thumbnails.map(|(site, size)| (site.join(thumb_path(&content_key)), size));
    let thumb_done = thumb_file.as_ref().is_none_or(|(path, _)| path.exists());
    let cached = job.cache.and_then(|c| c.get(&content_key));
    if thumb_done && let Some(vector) = cached {
        return Ok(Ready::Cached { vector, content_key });
    }
    // Decode for the thumbnail, the embedding, or both.
    let decoded = preprocess::decode(&bytes).map_err(|e| format!("{}: {e}", product.image))?;
    if let Some((path, size)) = thumb_file.filter(|_| !thumb_done) {
        let mut jpeg = Vec::new();
        preprocess::thumbnail(&decoded, size)
            .write_to(&mut std::io::Cursor::new(&mut jpeg), image::ImageFormat::Jpeg)
            .map_err(|e| format!("cannot encode thumbnail: {e}"))?;
        write_atomic(&path, &jpeg).map_err(|e| format!("writing {}: {e}", path.display()))?;
    }
    Ok(match cached {
        Some(vector) => Ready::Cached { vector, content_key },
        None => Ready::Prepared { model_input: preprocess::model_input(&decoded), content_key },
    })
}

pub fn build_site(options: &BuildOptions) -> Result<BuildReport> {
    let started = Instant::now();
    let (catalog, rejected) = if options.skip_bad {
        read_catalog_lenient(&options.catalog, &options.columns)?
    } else {
        (read_catalog(&options.catalog, &options.columns)?, Vec::new())
    };
    let catalog_dir = options.catalog.parent().unwrap_or(Path::new(".")).to_path_buf();
    let web_assets = WebAssets::locate(&options.assets)?;
    eprintln!("catalog: {} products from {}", catalog.products.len(), options.catalog.display());

    // Read once: the bytes load the model, key the embedding cache and ship.
    let model_bytes = std::fs::read(&options.model).with_context(|| format!("reading {}", options.model.display()))?;
    let device = Device::flex();
    let model = weights::from_file_bytes(&options.model, &model_bytes, &device)
        .with_context(|| format!("loading the embedder from {}", options.model.display()))?;
    let embedder = Embedder::new(model, device);

    let out = &options.out;
    std::fs::create_dir_all(out.join(site::THUMBS_DIR))
        .with_context(|| format!("creating {}", out.display()))?;

    let cache = EmbeddingCache::new(&options.cache_dir.join("embeddings"), &model_bytes);
    let fetcher = Fetcher::new(FetchOptions::new(options.cache_dir.join("images")));
    let job = EmbedJob {
        catalog_dir: &catalog_dir,
        fetcher: &fetcher,
        embedder: &embedder,
        cache: Some(&cache),
        thumbnails: Some((out, options.thumb_size)),
        batch_size: options.batch_size,
    };
    let Embedded { products: kept, vectors, content_keys, mut skipped, from_cache, seconds: embed_seconds } =
        embed_catalog(&catalog, &job)?;
    skipped.extend(rejected.iter().map(|error| Skipped {
        id: String::new(),
        line: error.line().unwrap_or(0),
        image: String::new(),
        reason: error.to_string(),
    }));
    skipped.sort_by_key(|s| s.line);
    if kept.is_empty() {
        bail!("no product of {} had a readable image", options.catalog.display());
    }
    if from_cache > 0 {
        eprintln!("{from_cache} of {} embeddings came from the cache", kept.len());
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
    write_model_record(&options.model, &model_bytes, embedder.model(), &out.join(site::MODEL_PATH))?;

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
                thumb: thumb_path(&content_keys[item]),
                title: site::title_of(&p.metadata),
                metadata: p.metadata.clone(),
            })
            .collect(),
    };
    write_atomic(&out.join(site::MANIFEST_PATH), &serde_json::to_vec(&manifest)?)
        .context("writing the manifest")?;
    if let Some(n) = options.precompute {
        let same_label = catalog.label_column.is_some();
        let all = precompute(&index, n, same_label);
        write_atomic(&out.join(RECOMMENDATIONS_PATH), &serde_json::to_vec(&all)?).context("writing recommendations")?;
        eprintln!("wrote {} recommendations to {RECOMMENDATIONS_PATH}", all.len());
    }
    let skipped_path = out.join("data/skipped.json");
    if skipped.is_empty() {
        let _ = std::fs::remove_file(&skipped_path);
    } else {
        write_atomic(&skipped_path, &serde_json::to_vec_pretty(&skipped)?)?;
        eprintln!("skipped {} products; see {}", skipped.len(), skipped_path.display());
    }
    remove_stale_thumbnails(out, &content_keys)?;
    web_assets.copy_into(out)?;

    Ok(BuildReport {
        products: kept.len(),
        skipped,
        from_cache,
        embed_seconds,
        total_seconds: started.elapsed().as_secs_f64(),
    })
}

/// Where `--precompute` writes the report's JSON for the whole catalog.
pub const RECOMMENDATIONS_PATH: &str = "data/recommendations.json";

/// The top `n` look-alikes of every product, in the report's JSON shape,
/// same-label filtered when the catalog has labels (as the report did).
pub fn precompute(index: &Index, n: usize, same_label: bool) -> Vec<crate::rank::Recommendation> {
    let options = crate::rank::RecommendOptions { k: n, search_k: None, same_label };
    let per_item: Vec<Vec<crate::rank::Recommendation>> = (0..index.forest.len() as u32)
        .into_par_iter()
        .map(|item| crate::rank::recommend_item(index, item, &options))
        .collect();
    per_item.into_iter().flatten().collect()
}

pub fn read_catalog_lenient(path: &Path, columns: &Columns) -> Result<(Catalog, Vec<crate::catalog::CatalogError>)> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading catalog {}", path.display()))?;
    let name = path.display().to_string();
    Ok(Catalog::parse_lenient(&text, &name, CatalogFormat::from_file_name(&name), columns)?)
}

pub fn read_catalog(path: &Path, columns: &Columns) -> Result<Catalog> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading catalog {}", path.display()))?;
    let name = path.display().to_string();
    Ok(Catalog::parse(&text, &name, CatalogFormat::from_file_name(&name), columns)?)
}

/// Removes thumbnails of products no longer in the catalog.
fn remove_stale_thumbnails(out: &Path, content_keys: &[String]) -> Result<()> {
    let wanted: std::collections::HashSet<String> = content_keys.iter().map(|k| thumb_path(k)).collect();
    let dir = out.join(site::THUMBS_DIR);
    for entry in std::fs::read_dir(&dir).with_context(|| format!("listing {}", dir.display()))? {
        let name = entry?.file_name().to_string_lossy().to_string();
        if !wanted.contains(&format!("{}/{name}", site::THUMBS_DIR)) {
            let _ = std::fs::remove_file(dir.join(name));
        }
    }
    Ok(())
}

/// Ships the embedder as a Burnpack record: copied when it already is one,
/// converted (without the ImageNet head) when it is a PyTorch checkpoint.
fn write_model_record(source: &Path, source_bytes: &[u8], model: &crate::model::EfficientNetLite, target: &Path) -> Result<()> {
    if weights::is_burnpack(source) {
        write_atomic(target, source_bytes).with_context(|| format!("writing {}", target.display()))
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
