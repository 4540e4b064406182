//! A catalog's embeddings through the build's per-image cache (keyed by
//! image, model and preprocessing version): what `eval`, `train-labels` and
//! the benchmarks read instead of embedding a catalog again.

use crate::catalog::{Catalog, Columns, Product};
use crate::crops::CropMode;
use crate::fetch::{FetchOptions, Fetcher};
use crate::site_builder::{EmbedJob, EmbeddingCache, embed_catalog, read_catalog};
use anyhow::{Context, Result, bail};
use burn::tensor::Device;
use lookalike_vision::model::{Embedder, weights};
use std::path::Path;

/// A shared catalog's products (all of them; the data is clean) and their
/// embeddings, from the build's per-image cache (keyed by image, model and
/// preprocessing version), computed the first time.
pub fn catalog_embeddings(
    data_dir: &Path,
    cache_dir: &Path,
    model: &Path,
    name: &str,
    label: Option<&str>,
) -> Result<CachedEmbeddings> {
    catalog_embeddings_of(data_dir, cache_dir, model, name, label, &CropMode::Whole)
}

/// As [`catalog_embeddings`], of the parts of each image `crops` keeps.
pub fn catalog_embeddings_of(
    data_dir: &Path,
    cache_dir: &Path,
    model: &Path,
    name: &str,
    label: Option<&str>,
    crops: &CropMode,
) -> Result<CachedEmbeddings> {
    let catalog_path = data_dir.join(name).join("labels.csv");
    let columns = Columns {
        id: Some("file".into()),
        image: Some("file".into()),
        label: label.map(String::from),
    };
    let embedded = embed_cached(&catalog_path, &columns, cache_dir, model, crops)?;
    if embedded.skipped > 0 {
        bail!("{} images of {name} could not be read", embedded.skipped);
    }
    Ok(embedded)
}

/// A catalog's readable products and their embeddings, through the build's
/// per-image cache; `skipped` counts unreadable images.
pub struct CachedEmbeddings {
    pub products: Vec<Product>,
    pub vectors: Vec<f32>,
    /// Colour signatures, one row per product.
    pub colours: Vec<f32>,
    pub skipped: usize,
}

/// Whole images: what the benchmarks' references measured.
pub fn embed_with_cache(
    catalog_path: &Path,
    columns: &Columns,
    cache_dir: &Path,
    model: &Path,
) -> Result<CachedEmbeddings> {
    embed_cached(catalog_path, columns, cache_dir, model, &CropMode::Whole)
}

fn embed_cached(
    catalog_path: &Path,
    columns: &Columns,
    cache_dir: &Path,
    model: &Path,
    crops: &CropMode,
) -> Result<CachedEmbeddings> {
    let catalog: Catalog = read_catalog(catalog_path, columns)?;
    let device = Device::flex();
    // Read once: the bytes load the model and key the embedding cache.
    let model_bytes =
        std::fs::read(model).with_context(|| format!("reading {}", model.display()))?;
    let embedder = Embedder::new(weights::from_file_bytes(model, &model_bytes, &device)?, device);
    let cache = EmbeddingCache::new(&cache_dir.join("embeddings"), &model_bytes, crops);
    let fetcher = Fetcher::new(FetchOptions::new(cache_dir.join("images")));
    let job = EmbedJob {
        catalog_dir: catalog_path.parent().unwrap_or(Path::new(".")),
        fetcher: &fetcher,
        embedder: &embedder,
        cache: Some(&cache),
        thumbnails: None,
        batch_size: 16,
        crops,
    };
    let embedded = embed_catalog(&catalog, &job)?;
    Ok(CachedEmbeddings {
        products: embedded.products.into_iter().cloned().collect(),
        vectors: embedded.vectors,
        colours: embedded.colours,
        skipped: embedded.skipped.len(),
    })
}
