//! `lookalike build`: catalog in, static site out.
//!
//! Stages: read the catalog, load the embedder, then for each batch decode and
//! pad-resize images in parallel, embed them, and write thumbnails; finally
//! grow the forest and write the index, the manifest, the model record and
//! the page's assets. A product whose image cannot be read or decoded is
//! skipped and reported (in `data/skipped.json`); it never aborts the build.

use crate::attributes::{self, LearnSpec};
use crate::catalog::{Catalog, CatalogFormat, Columns, Product};
use crate::crops::CropMode;
use crate::fetch::{FetchOptions, Fetcher};
use crate::fsutil::{copy_dir, copy_file, write_atomic};
use crate::paged_site::{
    LayoutChoice, PagedOutput, fit_and_project, paged_dims, write_paged_index, write_whole_index,
};
use crate::progress::{Progress, format_duration};
use crate::site::{self, Crop, DetectorInfo, ModelInfo, SiteManifest, SiteProduct};
use anyhow::{Context, Result, bail};
use burn::tensor::Device;
use lookalike_forest::{Encoding, Forest, ForestParams, NO_LABEL};
use lookalike_index::Index;
use lookalike_index::LabelHead;
use lookalike_index::appearance::{self, Layout, PartsTable};
use lookalike_vision::colour::{COLOUR_BINS, ColourSignature, colour_signature, signature_row};
use lookalike_vision::detect::DetectOptions;
use lookalike_vision::model::{Embedder, FEATURE_DIM, weights};
use lookalike_vision::preprocess::{self, EMBED_INPUT_SIZE};
use rayon::prelude::*;
use serde::Serialize;
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::time::Instant;

/// An image's cached embeddings, one per crop, and the crops.
type CachedCrops = (Vec<Vec<f32>>, Vec<Option<Crop>>);
/// An image waiting for its batch: its product, colour signatures, crops and
/// cache key.
type PendingImage = (usize, Vec<ColourSignature>, Vec<Option<Crop>>, String);

#[derive(Debug, Clone)]
pub struct BuildOptions {
    pub catalog: PathBuf,
    pub out: PathBuf,
    pub columns: Columns,
    /// `.bpk` record or `.pth` checkpoint of EfficientNet-Lite0.
    pub model: PathBuf,
    /// Folder holding `index.html` and `www/` (with the wasm packages in
    /// `www/pkg`); `None`: the page this binary carries.
    pub assets: Option<PathBuf>,
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
    /// Which parts of each image are indexed.
    pub crops: CropSpec,
    /// The detector models shipped with the site for photo search in the
    /// page (and used by `CropSpec::Detect`); `None` ships none.
    pub detector: Option<DetectorFiles>,
    /// A label head (from `train-labels`): names crops when the catalog has
    /// no label column, and ships with the site to name a shopper's photo.
    pub labels: Option<PathBuf>,
    /// Catalog columns to learn as parts of the appearance, with their
    /// default weights (see [`lookalike_index::appearance`]).
    pub learn: Vec<LearnSpec>,
    /// Default weight of the colour signature.
    pub colour_weight: f32,
    /// Follow image redirects from public to internal addresses.
    pub allow_private_redirects: bool,
    /// One file, or paged for large catalogs (docs/scale.md).
    pub layout: PagedOutput,
}

/// How catalog images are cut before embedding (see [`CropMode`]); also the
/// command line's `--crops`.
#[derive(Debug, Clone, Copy, PartialEq, clap::ValueEnum)]
pub enum CropSpec {
    Whole,
    Foreground,
    /// Run the detector (its files and options must be given).
    Detect,
}

/// The detector's models and the options they run with, in the build and
/// in the site's page: NanoDet (objects, people) as a TF.js graph, and what
/// finds the garments.
#[derive(Debug, Clone)]
pub struct DetectorFiles {
    pub objects: PathBuf,
    pub garments: GarmentModel,
    pub options: DetectOptions,
}

/// What finds the garments in a street photo.
#[derive(Debug, Clone)]
pub enum GarmentModel {
    /// The garment parser (the default).
    Parser(ParserFiles),
    /// MoveNet's joints as a TF.js graph, turned into garment regions (the
    /// composed detector of earlier versions).
    Pose(PathBuf),
}

/// The garment parser: its trained head and the backbone it reads (the
/// embedder's weights).
#[derive(Debug, Clone)]
pub struct ParserFiles {
    pub head: PathBuf,
    pub backbone: PathBuf,
}

/// The detector's models, read and checked.
pub struct DetectorModels {
    objects: lookalike_vision::model::tfjs::GraphModel,
    garments: GarmentRecords,
    /// SHA-256 of every byte the models were read from: crops found by
    /// another detector (the parser or the pose model, another head) are
    /// other crops, so this keys the embedding cache.
    digest: String,
}

/// [`GarmentModel`]'s files, read.
enum GarmentRecords {
    Parser { files: ParserFiles, head: Vec<u8>, backbone: Vec<u8> },
    Pose(lookalike_vision::model::tfjs::GraphModel),
}

/// A file's bytes, entered in `digest`.
fn read_digested(path: &Path, digest: &mut Sha256) -> Result<Vec<u8>> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    digest.update(&bytes);
    Ok(bytes)
}

/// A TF.js graph model, its files entered in `digest`.
fn read_graph(
    path: &Path,
    digest: &mut Sha256,
) -> Result<lookalike_vision::model::tfjs::GraphModel> {
    use lookalike_vision::model::tfjs::{GraphModel, read_model_bytes};
    let (json, weights) = read_model_bytes(path)?;
    digest.update(&json);
    digest.update(&weights);
    Ok(GraphModel::parse(&json, &weights, &path.display().to_string())?)
}

impl DetectorFiles {
    /// Reads and checks every model's files (graphs, manifests, shards, the
    /// parser's records).
    pub fn read(&self) -> Result<DetectorModels> {
        let mut digest = Sha256::new();
        let garments = match &self.garments {
            GarmentModel::Parser(files) => GarmentRecords::Parser {
                head: read_digested(&files.head, &mut digest)?,
                backbone: read_digested(&files.backbone, &mut digest)?,
                files: files.clone(),
            },
            GarmentModel::Pose(path) => GarmentRecords::Pose(read_graph(path, &mut digest)?),
        };
        let objects = read_graph(&self.objects, &mut digest)?;
        Ok(DetectorModels { objects, garments, digest: format!("{:x}", digest.finalize()) })
    }

    pub fn load(&self, device: &Device) -> Result<lookalike_vision::detect::Detector> {
        Self::compile(&self.read()?, device)
    }

    fn compile(
        models: &DetectorModels,
        device: &Device,
    ) -> Result<lookalike_vision::detect::Detector> {
        use lookalike_vision::detect::Detector;
        let (files, head, backbone) = match &models.garments {
            GarmentRecords::Pose(pose) => {
                return Ok(Detector::new(Some(&models.objects), Some(pose), device)?);
            }
            GarmentRecords::Parser { files, head, backbone } => (files, head, backbone),
        };
        let backbone =
            weights::from_file_bytes(&files.backbone, backbone, device).with_context(|| {
                format!("loading the parser's backbone from {}", files.backbone.display())
            })?;
        let head = lookalike_vision::parse::head_from_burnpack_bytes(
            head.clone(),
            &backbone,
            &files.head.display().to_string(),
            device,
        )?;
        let parser = lookalike_vision::parse::Parser::new(backbone, head, device.clone());
        Ok(Detector::new(Some(&models.objects), None, device)?.with_parser(parser))
    }
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
        params.encoding = self.encoding.unwrap_or(if params.pca_dims.is_some() {
            Encoding::I8PerDim
        } else {
            Encoding::F16
        });
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
const PREPROCESS_VERSION: u32 = 5;

/// Values cached per crop: the embedding, then the colour signature.
const CACHED_DIMS: usize = FEATURE_DIM + COLOUR_BINS;

impl EmbeddingCache {
    /// A cache under `root` for the model whose weights are `model_bytes`,
    /// with images cut into crops by `crops`.
    pub fn new(root: &Path, model_bytes: &[u8], crops: &CropMode) -> Self {
        let mut hasher = Sha256::new();
        hasher.update(model_bytes);
        hasher.update(PREPROCESS_VERSION.to_le_bytes());
        hasher.update(crops.cache_key().as_bytes());
        let model_key = format!("{:x}", hasher.finalize());
        Self { dir: root.join(&model_key[..16]) }
    }

    fn path(&self, content_key: &str) -> PathBuf {
        self.dir.join(format!("{content_key}.f32"))
    }

    fn crops_path(&self, content_key: &str) -> PathBuf {
        self.dir.join(format!("{content_key}.crops.json"))
    }

    /// The vectors of an image's crops (one per crop: embedding, then colour
    /// signature) and what each crop is.
    fn get(&self, content_key: &str) -> Option<CachedCrops> {
        let bytes = std::fs::read(self.path(content_key)).ok()?;
        let crops: Vec<Option<Crop>> = match std::fs::read(self.crops_path(content_key)) {
            Ok(json) => serde_json::from_slice(&json).ok()?,
            Err(_) => vec![None],
        };
        if bytes.len() != crops.len() * CACHED_DIMS * 4 {
            return None;
        }
        let floats: Vec<f32> =
            bytes.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
        Some((floats.chunks_exact(CACHED_DIMS).map(<[f32]>::to_vec).collect(), crops))
    }

    fn put(&self, content_key: &str, vectors: &[&[f32]], crops: &[Option<Crop>]) {
        let bytes: Vec<u8> =
            vectors.iter().flat_map(|v| v.iter()).flat_map(|v| v.to_le_bytes()).collect();
        // A cache that cannot be written costs time on the next run, not this
        // build. The crops go first: vectors without them are never read.
        if crops.iter().any(Option::is_some) {
            let _ = write_atomic(
                &self.crops_path(content_key),
                &serde_json::to_vec(crops).unwrap_or_default(),
            );
        }
        let _ = write_atomic(&self.path(content_key), &bytes);
    }
}

/// Decoded pixels in flight across a build's parallel decodes: with the
/// per-image limit ([`preprocess::MAX_DECODED_BYTES`]) this bounds a build's
/// image memory whatever the catalog's images claim and however many cores
/// decode them.
static DECODE_BUDGET: crate::memory::MemoryBudget =
    crate::memory::MemoryBudget::new(512 * 1024 * 1024);

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
    /// Which parts of each image are embedded.
    pub crops: &'a CropMode,
}

/// One product's image, read and either found in the cache or prepared:
/// per crop, its cached vector (embedding and colour signature), or its
/// model input and colour signature.
enum Ready {
    Cached {
        vectors: Vec<Vec<f32>>,
        crops: Vec<Option<Crop>>,
        content_key: String,
    },
    Prepared {
        model_inputs: Vec<Vec<f32>>,
        colours: Vec<ColourSignature>,
        crops: Vec<Option<Crop>>,
        content_key: String,
    },
}

/// The embedded part of a catalog, one entry per item (a crop of a product's
/// image; a product has one item per crop, consecutive, in catalog order).
pub struct Embedded<'a> {
    /// The product of each item.
    pub products: Vec<&'a Product>,
    /// One 1280-d vector per item, row-major.
    pub vectors: Vec<f32>,
    /// One colour signature per item, row-major.
    pub colours: Vec<f32>,
    /// SHA-256 (hex) of each item's image bytes.
    pub content_keys: Vec<String>,
    /// The crop each item was embedded from (`None`: the whole image).
    pub crops: Vec<Option<Crop>>,
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
    let download_failures: std::collections::HashMap<usize, String> =
        job.fetcher.prefetch(&images).into_iter().collect();
    let mut out = Embedded {
        products: Vec::new(),
        vectors: Vec::with_capacity(catalog.products.len() * FEATURE_DIM),
        colours: Vec::with_capacity(catalog.products.len() * COLOUR_BINS),
        content_keys: Vec::new(),
        crops: Vec::new(),
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
        // Per prepared image: its first item, its crops' colours, its crops, its content key.
        let mut slots: Vec<PendingImage> = Vec::new();
        for (&(_, product), result) in batch.iter().zip(ready) {
            match result {
                Ok(Ready::Cached { vectors, crops, content_key }) => {
                    for (vector, crop) in vectors.iter().zip(crops) {
                        out.vectors.extend_from_slice(&vector[..FEATURE_DIM]);
                        out.colours.extend_from_slice(&vector[FEATURE_DIM..]);
                        out.content_keys.push(content_key.clone());
                        out.crops.push(crop);
                        out.products.push(product);
                    }
                    out.from_cache += 1;
                }
                Ok(Ready::Prepared { model_inputs, colours, crops, content_key }) => {
                    slots.push((
                        out.products.len(),
                        colours.clone(),
                        crops.clone(),
                        content_key.clone(),
                    ));
                    to_embed.extend(model_inputs);
                    for (crop, colour) in crops.into_iter().zip(&colours) {
                        out.vectors.extend(std::iter::repeat_n(0.0, FEATURE_DIM));
                        out.colours.extend_from_slice(colour);
                        out.content_keys.push(content_key.clone());
                        out.crops.push(crop);
                        out.products.push(product);
                    }
                }
                Err(reason) => {
                    eprintln!("\nskipping {} (line {}): {reason}", product.id, product.line);
                    out.skipped.push(Skipped {
                        id: product.id.clone(),
                        line: product.line,
                        image: product.image.clone(),
                        reason,
                    });
                }
            }
        }
        let mut embedded = job.embedder.embed_lanes(&to_embed, lanes)?.into_iter();
        for (first, colours, crops, content_key) in &slots {
            let vectors: Vec<Vec<f32>> = embedded.by_ref().take(crops.len()).collect();
            for (i, vector) in vectors.iter().enumerate() {
                let item = first + i;
                out.vectors[item * FEATURE_DIM..(item + 1) * FEATURE_DIM].copy_from_slice(vector);
            }
            if let Some(cache) = job.cache {
                let cached: Vec<Vec<f32>> = vectors
                    .iter()
                    .zip(colours)
                    .map(|(v, c)| [v.as_slice(), c.as_slice()].concat())
                    .collect();
                cache.put(
                    content_key,
                    &cached.iter().map(Vec::as_slice).collect::<Vec<_>>(),
                    crops,
                );
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
    if thumb_done && let Some((vectors, crops)) = cached {
        return Ok(Ready::Cached { vectors, crops, content_key });
    }
    // Decode for the thumbnail, the embedding, or both; the header says how
    // much memory that takes before any is taken. The decoded image, its
    // RGB copy and its crops are held until the model inputs are made.
    let image = preprocess::open(&bytes).map_err(|e| format!("{}: {e}", product.image))?;
    let _memory = DECODE_BUDGET.reserve(image.size().decoded_bytes.saturating_mul(3));
    let decoded = image.decode().map_err(|e| format!("{}: {e}", product.image))?;
    if let Some((path, size)) = thumb_file.filter(|_| !thumb_done) {
        write_thumbnail(&decoded, size, &path)?;
    }
    Ok(match cached {
        Some((vectors, crops)) => Ready::Cached { vectors, crops, content_key },
        None => {
            let (crops, images): (Vec<_>, Vec<_>) = job
                .crops
                .crops(&decoded)
                .map_err(|e| format!("{}: detection failed: {e}", product.image))?
                .into_iter()
                .unzip();
            let model_inputs = images.iter().map(preprocess::model_input).collect();
            let colours = images.iter().map(colour_signature).collect();
            Ready::Prepared { model_inputs, colours, crops, content_key }
        }
    })
}

/// Writes the JPEG thumbnail (`size` pixels) of a decoded image.
fn write_thumbnail(decoded: &image::DynamicImage, size: u32, path: &Path) -> Result<(), String> {
    let mut jpeg = Vec::new();
    preprocess::thumbnail(decoded, size)
        .write_to(&mut std::io::Cursor::new(&mut jpeg), image::ImageFormat::Jpeg)
        .map_err(|e| format!("cannot encode thumbnail: {e}"))?;
    write_atomic(path, &jpeg).map_err(|e| format!("writing {}: {e}", path.display()))
}

/// An image's thumbnail in the site `out`, made unless it is there (they
/// are named by content); returns its path in the site. Decoding is under
/// the build's memory budget, as for embedding.
pub(crate) fn thumbnail_of(
    fetcher: &Fetcher,
    base: &Path,
    image: &str,
    out: &Path,
    size: u32,
) -> Result<String, String> {
    let bytes = fetcher.bytes(base, image)?;
    let path = thumb_path(&format!("{:x}", Sha256::digest(&bytes)));
    if out.join(&path).exists() {
        return Ok(path);
    }
    let opened = preprocess::open(&bytes).map_err(|e| format!("{image}: {e}"))?;
    let _memory = DECODE_BUDGET.reserve(opened.size().decoded_bytes.saturating_mul(2));
    let decoded = opened.decode().map_err(|e| format!("{image}: {e}"))?;
    write_thumbnail(&decoded, size, &out.join(&path))?;
    Ok(path)
}

pub fn build_site(options: &BuildOptions) -> Result<BuildReport> {
    let started = Instant::now();
    check_similarity_options(options)?;
    if options.layout.layout == LayoutChoice::Paged {
        if options.crops == CropSpec::Detect {
            bail!(
                "--layout paged: a paged site indexes one item per product, and --crops detect makes several; use --crops foreground or whole, or --layout whole"
            );
        }
        if options.precompute.is_some() {
            bail!("--layout paged: --precompute reads the one-file index; use --layout whole");
        }
    }
    let (catalog, rejected) = if options.skip_bad {
        read_catalog_lenient(&options.catalog, &options.columns)?
    } else {
        (read_catalog(&options.catalog, &options.columns)?, Vec::new())
    };
    // A column that cannot be learned fails now, not after the embedding.
    for spec in &options.learn {
        let values: Vec<Option<String>> = catalog
            .products
            .iter()
            .map(|p| attributes::value_of(p, &spec.column, catalog.label_column.as_deref()))
            .collect();
        attributes::check_learnable(&spec.column, values.iter().map(Option::as_deref))
            .with_context(|| format!("--learn {}: {}", spec.column, options.catalog.display()))?;
    }
    let catalog_dir = options.catalog.parent().unwrap_or(Path::new(".")).to_path_buf();
    let web_assets = WebAssets::locate(options.assets.as_deref())?;
    eprintln!("catalog: {} products from {}", catalog.products.len(), options.catalog.display());

    // Read once: the bytes load the model, key the embedding cache and ship.
    let model_bytes = std::fs::read(&options.model)
        .with_context(|| format!("reading {}", options.model.display()))?;
    let device = Device::flex();
    let model = weights::from_file_bytes(&options.model, &model_bytes, &device)
        .with_context(|| format!("loading the embedder from {}", options.model.display()))?;
    let embedder = Embedder::new(model, device);

    // Every model file is read and checked before anything is written: a
    // bad one fails the build now, not after the embedding with half a site.
    // (Compiling the detector is left to the crops that run it, and to the page.)
    let detector_graphs = options
        .detector
        .as_ref()
        .map(DetectorFiles::read)
        .transpose()
        .context("reading the detector")?;
    let crop_mode = match (&options.crops, &options.detector, &detector_graphs) {
        (CropSpec::Whole, ..) => CropMode::Whole,
        (CropSpec::Foreground, ..) => CropMode::Foreground,
        (CropSpec::Detect, Some(files), Some(models)) => CropMode::Detect {
            detector: Box::new(DetectorFiles::compile(models, &Device::flex())?),
            options: files.options.clone(),
            models: models.digest.clone(),
        },
        (CropSpec::Detect, ..) => bail!("cropping by detection needs the detector models"),
    };
    drop(detector_graphs); // the weights are shipped from their files
    let head =
        options.labels.as_ref().map(|path| crate::labels::read_label_head(path)).transpose()?;

    let out = &options.out;
    std::fs::create_dir_all(out.join(site::THUMBS_DIR))
        .with_context(|| format!("creating {}", out.display()))?;
    let cache =
        EmbeddingCache::new(&options.cache_dir.join("embeddings"), &model_bytes, &crop_mode);
    let fetcher = Fetcher::new(FetchOptions {
        allow_private_redirects: options.allow_private_redirects,
        ..FetchOptions::new(options.cache_dir.join("images"))
    });
    let job = EmbedJob {
        catalog_dir: &catalog_dir,
        fetcher: &fetcher,
        embedder: &embedder,
        cache: Some(&cache),
        thumbnails: Some((out, options.thumb_size)),
        batch_size: options.batch_size,
        crops: &crop_mode,
    };
    let Embedded {
        products: kept,
        vectors,
        colours,
        content_keys,
        crops,
        mut skipped,
        from_cache,
        seconds: embed_seconds,
    } = embed_catalog(&catalog, &job)?;
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
    let product_count = distinct_products(&kept);
    if from_cache > 0 {
        eprintln!("{from_cache} of {product_count} images' embeddings came from the cache");
    }
    if kept.len() > product_count {
        eprintln!("{} crops of {product_count} products are indexed", kept.len());
    }

    // An item's label: with a label column, its product's (the catalog is
    // authoritative: a product it leaves unlabelled stays so); without one,
    // what the label head calls its crop, else the detector's class for it.
    let item_labels: Vec<Option<String>> = kept
        .iter()
        .zip(vectors.chunks_exact(FEATURE_DIM))
        .zip(&crops)
        .map(|((p, vector), crop)| match (&catalog.label_column, &head) {
            (Some(_), _) => p.label.clone(),
            (None, Some(head)) => Some(head.predict(vector).label),
            (None, None) => {
                crop.as_ref().filter(|_| options.crops == CropSpec::Detect).map(|c| c.class.clone())
            }
        })
        .collect();
    let mut label_names: Vec<String> = item_labels.iter().flatten().cloned().collect();
    label_names.sort();
    label_names.dedup();
    let labels: Vec<u32> = item_labels
        .iter()
        .map(|l| match l {
            Some(l) => label_names.binary_search(l).expect("label was collected") as u32,
            None => NO_LABEL,
        })
        .collect();
    let heads = learn_attributes(
        &options.learn,
        &kept,
        catalog.label_column.as_deref(),
        &vectors,
        &colours,
    )?;
    let appearance = appearance_table(options, &heads, &vectors, &colours)?;
    let site_products: Vec<SiteProduct> = kept
        .iter()
        .enumerate()
        .map(|(item, p)| SiteProduct {
            id: p.id.clone(),
            label: item_labels[item].clone(),
            thumb: thumb_path(&content_keys[item]),
            title: site::title_of(&p.metadata),
            metadata: p.metadata.clone(),
            crop: crops[item].clone(),
        })
        .collect();
    let ids: Vec<String> = kept.iter().map(|p| p.id.clone()).collect();
    let paged = options.layout.is_paged(kept.len(), product_count, options.precompute.is_some());
    let built = if paged {
        let (metric, seed) = (options.forest.metric, options.forest.seed);
        let dims = paged_dims(options.storage.pca_dims, FEATURE_DIM)?;
        let (vectors, projection) = if dims < FEATURE_DIM {
            let (projected, projection) =
                fit_and_project(&[&vectors], FEATURE_DIM, dims, metric, seed);
            (projected, Some(projection))
        } else {
            (vectors, None)
        };
        let record =
            |i: usize| serde_json::to_string(&site_products[i]).expect("a product serialises");
        let info = write_paged_index(
            out,
            &options.layout,
            metric,
            vectors,
            dims,
            &ids,
            &labels,
            &label_names,
            projection.as_ref(),
            &record,
        )?;
        BuiltIndex::Paged(info)
    } else {
        let (index, bytes) =
            build_whole_index(options, vectors, labels, ids, label_names, appearance)?;
        write_whole_index(out, &bytes)?;
        BuiltIndex::Whole(Box::new(index))
    };
    write_model_record(
        &options.model,
        &model_bytes,
        embedder.model(),
        &out.join(site::MODEL_PATH),
    )?;
    let detector = options.detector.as_ref().map(|files| ship_detector(files, out)).transpose()?;
    let attributes_file = if heads.is_empty() {
        let _ = std::fs::remove_file(out.join(site::ATTRIBUTES_PATH));
        None
    } else {
        write_atomic(&out.join(site::ATTRIBUTES_PATH), &serde_json::to_vec(&heads)?)
            .context("writing the attribute heads")?;
        Some(site::ATTRIBUTES_PATH.to_string())
    };
    let labels_file = match &options.labels {
        Some(path) => {
            copy_file(path, &out.join(site::LABELS_PATH))
                .with_context(|| format!("copying {}", path.display()))?;
            Some(site::LABELS_PATH.to_string())
        }
        None => {
            let _ = std::fs::remove_file(out.join(site::LABELS_PATH));
            None
        }
    };

    let (index_path, products, paged_info) = match &built {
        BuiltIndex::Whole(_) => (site::INDEX_PATH, site_products, None),
        BuiltIndex::Paged(info) => (site::PAGED_HEAD_PATH, Vec::new(), Some(info.clone())),
    };
    let manifest = SiteManifest {
        version: site::MANIFEST_VERSION,
        model: ModelInfo {
            name: format!("efficientnet-{}", embedder.model().variant().name()),
            file: site::MODEL_PATH.into(),
            input_size: EMBED_INPUT_SIZE,
            dims: FEATURE_DIM,
        },
        index: index_path.into(),
        id_column: catalog.id_column.clone(),
        label_column: catalog.label_column.clone(),
        products,
        detector,
        labels: labels_file,
        attributes: attributes_file,
        paged: paged_info,
    };
    write_atomic(&out.join(site::MANIFEST_PATH), &serde_json::to_vec(&manifest)?)
        .context("writing the manifest")?;
    if let (Some(n), BuiltIndex::Whole(index)) = (options.precompute, &built) {
        let same_label = catalog.label_column.is_some();
        let all = precompute(index, n, same_label);
        write_atomic(&out.join(RECOMMENDATIONS_PATH), &serde_json::to_vec(&all)?)
            .context("writing recommendations")?;
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
    precompress(out)?;

    Ok(BuildReport {
        products: product_count,
        skipped,
        from_cache,
        embed_seconds,
        total_seconds: started.elapsed().as_secs_f64(),
    })
}

/// The index a build wrote: one file, or paged.
enum BuiltIndex {
    Whole(Box<Index>),
    Paged(crate::site::PagedInfo),
}

/// The forest over every item, with the ids, labels and appearance parts
/// the one-file index carries; and the file's bytes.
fn build_whole_index(
    options: &BuildOptions,
    vectors: Vec<f32>,
    labels: Vec<u32>,
    ids: Vec<String>,
    label_names: Vec<String>,
    appearance: PartsTable,
) -> Result<(Index, Vec<u8>)> {
    let forest_started = Instant::now();
    let params = options.storage.resolve(options.forest.clone(), ids.len());
    let forest = Forest::build(vectors, FEATURE_DIM, Some(labels), &params)?;
    let index = Index { forest, ids, label_names, appearance: Some(appearance) };
    let index_bytes = index.to_bytes();
    eprintln!(
        "forest: {} trees{} over {} items in {}; index {:.1} MB, {:.0} bytes/item ({}{})",
        index.forest.n_trees(),
        index
            .forest
            .graph_params()
            .map(|g| format!(" and a graph of degree {}", g.degree))
            .unwrap_or_default(),
        index.forest.len(),
        format_duration(forest_started.elapsed().as_secs_f64()),
        index_bytes.len() as f64 / 1e6,
        index_bytes.len() as f64 / index.forest.len() as f64,
        index.forest.encoding().name(),
        index.forest.projection().map(|p| format!(", PCA to {}", p.out_dims)).unwrap_or_default(),
    );
    Ok((index, index_bytes))
}

/// The default weight of everything but the embedding.
fn non_visual_weight(options: &BuildOptions) -> f32 {
    options.colour_weight + options.learn.iter().map(|s| s.weight).sum::<f32>()
}

/// Checks the similarity's options before any work is done.
fn check_similarity_options(options: &BuildOptions) -> Result<()> {
    let specs = &options.learn;
    if let Some(twice) = specs
        .iter()
        .enumerate()
        .find_map(|(i, s)| specs[..i].iter().any(|t| t.column == s.column).then_some(&s.column))
    {
        bail!("--learn {twice} is given twice");
    }
    let others = non_visual_weight(options);
    if !(0.0..=1.0).contains(&others)
        || !options.colour_weight.is_finite()
        || options.colour_weight < 0.0
    {
        bail!(
            "the colour and learned weights add up to {others}; they share 1 with the embedding, so keep each at 0 or more and their sum within 0..1"
        );
    }
    Ok(())
}

/// Trains a head for each `--learn` column, with progress.
fn learn_attributes(
    specs: &[LearnSpec],
    items: &[&Product],
    label_column: Option<&str>,
    vectors: &[f32],
    colours: &[f32],
) -> Result<Vec<LabelHead>> {
    specs
        .iter()
        .map(|spec| {
            let started = Instant::now();
            let values: Vec<Option<String>> =
                items.iter().map(|p| attributes::value_of(p, &spec.column, label_column)).collect();
            let head = attributes::learn(&spec.column, &values, vectors, colours)?;
            eprintln!(
                "learned {} ({} values) in {}",
                spec.column,
                head.labels.len(),
                format_duration(started.elapsed().as_secs_f64())
            );
            Ok(head)
        })
        .collect()
}

/// Every item's appearance parts, and the default weights: the learned
/// attributes and colour take theirs, the embedding the rest of 1.
fn appearance_table(
    options: &BuildOptions,
    heads: &[LabelHead],
    vectors: &[f32],
    colours: &[f32],
) -> Result<PartsTable> {
    let attributes: Vec<(&LabelHead, f32)> =
        heads.iter().zip(&options.learn).map(|(h, s)| (h, s.weight)).collect();
    let layout = Layout::new(1.0 - non_visual_weight(options), options.colour_weight, &attributes);
    let rows: Vec<Vec<f32>> = (0..vectors.len() / FEATURE_DIM)
        .into_par_iter()
        .map(|item| {
            appearance::describe(
                &vectors[item * FEATURE_DIM..(item + 1) * FEATURE_DIM],
                signature_row(colours, item),
                heads,
            )
        })
        .collect();
    Ok(PartsTable::encode(layout, &rows))
}

/// Files a static host should send gzipped: text, the wasm module and the
/// index compress to between a quarter and a tenth; images and weights do not.
const COMPRESSIBLE: &[&str] = &["html", "js", "css", "json", "wasm", "lkf"];

/// Writes a `.gz` beside every compressible file of the site (what nginx's
/// `gzip_static` and most static hosts serve, and `lookalike serve` too), so
/// the first visit downloads a quarter of the bytes. Unchanged files keep
/// their `.gz`.
pub(crate) fn precompress(out: &Path) -> Result<()> {
    use flate2::{Compression, write::GzEncoder};
    use std::io::Write;
    let mut stack = vec![out.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in
            std::fs::read_dir(&dir).with_context(|| format!("listing {}", dir.display()))?
        {
            let path = entry?.path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            let wanted = path
                .extension()
                .and_then(|e| e.to_str())
                .is_some_and(|e| COMPRESSIBLE.contains(&e));
            if !wanted {
                continue;
            }
            let gz = PathBuf::from(format!("{}.gz", path.display()));
            let fresh = |p: &Path| p.metadata().and_then(|m| m.modified()).ok();
            if fresh(&gz).is_some() && fresh(&gz) >= fresh(&path) {
                continue;
            }
            let bytes =
                std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
            let mut encoder = GzEncoder::new(Vec::new(), Compression::best());
            encoder.write_all(&bytes)?;
            write_atomic(&gz, &encoder.finish()?)
                .with_context(|| format!("writing {}", gz.display()))?;
        }
    }
    Ok(())
}

/// How many distinct products `items` hold (a product's crops are consecutive).
fn distinct_products(items: &[&Product]) -> usize {
    items.windows(2).filter(|w| w[0].id != w[1].id).count() + usize::from(!items.is_empty())
}

/// Copies the detector's model files into the site, beside a description
/// the page reads to load them.
fn ship_detector(files: &DetectorFiles, out: &Path) -> Result<DetectorInfo> {
    let dir = out.join(site::DETECTOR_DIR);
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    // The pose model only runs without the parser: not shipped with it.
    let graphs: Vec<&PathBuf> = match &files.garments {
        GarmentModel::Parser(_) => vec![&files.objects],
        GarmentModel::Pose(pose) => vec![&files.objects, pose],
    };
    let mut shipped = Vec::new();
    for model in graphs {
        let json = std::fs::read(model).with_context(|| format!("reading {}", model.display()))?;
        let name = model.file_name().context("a model file name")?.to_string_lossy().to_string();
        let shards = lookalike_vision::model::tfjs::GraphModel::shard_paths(
            &json,
            &model.display().to_string(),
        )?;
        // Shard names are plain file names (checked by `shard_paths`), so
        // each lands in the detector folder and nowhere else.
        for shard in &shards {
            let from = model.parent().unwrap_or(Path::new(".")).join(shard);
            copy_file(&from, &dir.join(shard))
                .with_context(|| format!("copying {}", from.display()))?;
        }
        write_atomic(&dir.join(&name), &json)?;
        shipped.push((
            format!("{}/{name}", site::DETECTOR_DIR),
            shards.iter().map(|s| format!("{}/{s}", site::DETECTOR_DIR)).collect::<Vec<_>>(),
        ));
    }
    let parser = match &files.garments {
        GarmentModel::Parser(parser) => {
            let to = dir.join(site::PARSER_FILE);
            copy_file(&parser.head, &to)
                .with_context(|| format!("copying {}", parser.head.display()))?;
            Some(format!("{}/{}", site::DETECTOR_DIR, site::PARSER_FILE))
        }
        GarmentModel::Pose(_) => {
            crate::fsutil::remove_if_present(&dir.join(site::PARSER_FILE))?;
            None
        }
    };
    let mut shipped = shipped.into_iter();
    let objects = shipped.next().expect("the object detector is shipped");
    let pose = shipped.next();
    Ok(DetectorInfo {
        objects: objects.0,
        objects_shards: objects.1,
        pose: pose.as_ref().map(|p| p.0.clone()),
        pose_shards: pose.map(|p| p.1).unwrap_or_default(),
        parser,
        options: files.options.clone(),
    })
}

/// Where `--precompute` writes the report's JSON for the whole catalog.
pub const RECOMMENDATIONS_PATH: &str = "data/recommendations.json";

/// The top `n` look-alikes of every product, in the report's JSON shape,
/// same-label filtered when the catalog has labels (as the report did).
pub fn precompute(
    index: &Index,
    n: usize,
    same_label: bool,
) -> Vec<lookalike_index::rank::Recommendation> {
    let options =
        lookalike_index::rank::RecommendOptions { k: n, search_k: None, same_label, weights: None };
    let per_item: Vec<Vec<lookalike_index::rank::Recommendation>> = (0..index.forest.len() as u32)
        .into_par_iter()
        .map(|item| lookalike_index::rank::recommend_item(index, item, &options))
        .collect();
    per_item.into_iter().flatten().collect()
}

pub fn read_catalog_lenient(
    path: &Path,
    columns: &Columns,
) -> Result<(Catalog, Vec<crate::catalog::CatalogError>)> {
    let bytes =
        std::fs::read(path).with_context(|| format!("reading catalog {}", path.display()))?;
    let name = path.display().to_string();
    let text = Catalog::text_of(&bytes, &name)?;
    Ok(Catalog::parse_lenient(text, &name, CatalogFormat::from_file_name(&name), columns)?)
}

pub fn read_catalog(path: &Path, columns: &Columns) -> Result<Catalog> {
    let bytes =
        std::fs::read(path).with_context(|| format!("reading catalog {}", path.display()))?;
    let name = path.display().to_string();
    let text = Catalog::text_of(&bytes, &name)?;
    Ok(Catalog::parse(text, &name, CatalogFormat::from_file_name(&name), columns)?)
}

/// Removes thumbnails of products no longer in the catalog.
fn remove_stale_thumbnails(out: &Path, content_keys: &[String]) -> Result<()> {
    let wanted: std::collections::HashSet<String> =
        content_keys.iter().map(|k| thumb_path(k)).collect();
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
pub(crate) fn write_model_record(
    source: &Path,
    source_bytes: &[u8],
    model: &lookalike_vision::model::EfficientNetLite,
    target: &Path,
) -> Result<()> {
    if weights::is_burnpack(source) {
        write_atomic(target, source_bytes).with_context(|| format!("writing {}", target.display()))
    } else {
        let bytes = weights::to_burnpack_bytes(model, &target.display().to_string())?;
        write_atomic(target, &bytes).with_context(|| format!("writing {}", target.display()))
    }
}

/// The page: `index.html` and the `www/` folder with the wasm packages,
/// from a folder or from the binary.
pub(crate) enum WebAssets {
    Folder { index_html: PathBuf, www: PathBuf },
    Embedded,
}

impl WebAssets {
    pub(crate) fn locate(root: Option<&Path>) -> Result<WebAssets> {
        let Some(root) = root else {
            crate::assets::check_page()?;
            return Ok(WebAssets::Embedded);
        };
        let (index_html, www) = (root.join("index.html"), root.join("www"));
        if !index_html.is_file() {
            bail!(
                "{} not found; pass --assets with the folder holding index.html and www/",
                index_html.display()
            );
        }
        for package in crate::assets::WASM_PACKAGES {
            if !root.join(package).is_file() {
                bail!(
                    "the wasm package {} is missing; run ./build.sh to build it",
                    root.join(package).display()
                );
            }
        }
        Ok(WebAssets::Folder { index_html, www })
    }

    pub(crate) fn copy_into(&self, out: &Path) -> Result<()> {
        match self {
            WebAssets::Folder { index_html, www } => {
                // Copies onto themselves (assets taken from the site being
                // rebuilt) keep their files: see `copy_file`.
                copy_file(index_html, &out.join("index.html")).context("copying index.html")?;
                copy_dir(www, &out.join("www")).context("copying www/")?;
            }
            WebAssets::Embedded => {
                for (path, bytes) in crate::assets::page_files() {
                    let target = out.join(path);
                    if let Some(parent) = target.parent() {
                        std::fs::create_dir_all(parent)
                            .with_context(|| format!("creating {}", parent.display()))?;
                    }
                    write_atomic(&target, bytes)
                        .with_context(|| format!("writing {}", target.display()))?;
                }
            }
        }
        // A service worker controls only pages at or below its own folder:
        // at the root it serves the whole site.
        let worker = out.join("www/sw.js");
        if worker.is_file() {
            copy_file(&worker, &out.join("sw.js")).context("copying sw.js")?;
        }
        Ok(())
    }
}
