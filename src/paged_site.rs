//! `lookalike build --vectors`: a site from vectors embedded elsewhere
//! (`embed`, or its shards run on a cluster), laid out for its size.
//!
//! Below [`PAGED_FROM`] items the site ships one index file and one
//! manifest, as a catalog build does. From there on it is paged
//! (`lookalike_index::paged`): a head the page downloads first and a pages
//! file it reads by byte range, optionally also cut into fixed-size chunk
//! files for hosts that ignore ranges.
//!
//! Memory stays bounded on a million products: the vectors are mapped
//! from their `.npy` files (projected by PCA in blocks when they are wider
//! than the index), the catalog is held once (its rows become the
//! metadata records as the pages are written), and pages stream to disk.

use crate::catalog::{Catalog, Columns, Product};
use crate::fetch::{FetchOptions, Fetcher};
use crate::fsutil::{remove_if_present, temp_file_beside, write_atomic};
use crate::progress::format_duration;
use crate::site::{self, ChunkInfo, ModelInfo, PagedInfo, SiteManifest, SiteProduct};
use crate::site_builder::{WebAssets, precompress, read_catalog, thumbnail_of, write_model_record};
use anyhow::{Context, Result, bail};
use lookalike_forest::{Forest, ForestParams, Metric, NO_LABEL, Projection};
use lookalike_index::Index;
use lookalike_index::paged::{PagedParams, PagedSource, write_paged};
use lookalike_vision::preprocess;
use rayon::prelude::*;
use std::collections::HashMap;
use std::io::{BufWriter, Read, Seek, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Items from which a site is paged: below this the whole index is a
/// couple of megabytes (about 1 KB per item with its manifest row), which a
/// first visit downloads in about a second; above it the download grows
/// with the catalog while a paged query stays near 200 KB.
pub const PAGED_FROM: usize = 20_000;
/// Dimensions a wide embedding is projected to (as a catalog build does).
pub const DEFAULT_PCA_DIMS: usize = 128;
/// Rows the projection is fitted on (what `Projection::fit` uses at most).
const PCA_SAMPLE: usize = 8192;
/// Rows projected at a time: bounds the projection's working memory.
const PROJECT_BLOCK: usize = 8192;

/// Which layout to write.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LayoutChoice {
    /// Paged from [`PAGED_FROM`] items.
    Auto,
    Whole,
    Paged,
}

/// How a site's index is laid out: shared by catalog and `--vectors` builds.
#[derive(Debug, Clone, PartialEq)]
pub struct PagedOutput {
    pub layout: LayoutChoice,
    /// Also write the pages as chunk files of this many bytes.
    pub chunk_size: Option<u64>,
    pub params: PagedParams,
}

impl Default for PagedOutput {
    fn default() -> Self {
        PagedOutput { layout: LayoutChoice::Auto, chunk_size: None, params: PagedParams::default() }
    }
}

impl PagedOutput {
    /// Whether a site of `items` index items of `products` products is
    /// paged. Auto pages from [`PAGED_FROM`] items when each product is one
    /// item and no recommendations file (which reads the one-file index)
    /// is asked for; builds refuse a forced paged layout they cannot make.
    pub fn is_paged(&self, items: usize, products: usize, precompute: bool) -> bool {
        match self.layout {
            LayoutChoice::Auto => items >= PAGED_FROM && items == products && !precompute,
            LayoutChoice::Whole => false,
            LayoutChoice::Paged => true,
        }
    }
}

#[derive(Debug, Clone)]
pub struct VectorsBuild {
    pub catalog: PathBuf,
    pub columns: Columns,
    pub out: PathBuf,
    /// `.npy` float32 matrices, concatenated in order; `ids[i]` names the
    /// rows of `vectors[i]`.
    pub vectors: Vec<PathBuf>,
    pub ids: Vec<PathBuf>,
    pub metric: Metric,
    /// `None`: [`DEFAULT_PCA_DIMS`] when the vectors are wider; `Some(0)`: none.
    pub pca_dims: Option<usize>,
    pub layout: PagedOutput,
    pub thumb_size: u32,
    pub cache_dir: PathBuf,
    pub assets: Option<PathBuf>,
    /// The embedder the vectors came from, shipped for photo search.
    pub model: PathBuf,
    pub seed: u64,
    pub allow_private_redirects: bool,
}

pub struct VectorsReport {
    pub items: usize,
    pub paged: bool,
    pub seconds: f64,
}

pub fn build_from_vectors(options: &VectorsBuild) -> Result<VectorsReport> {
    let started = Instant::now();
    if options.vectors.is_empty() || options.vectors.len() != options.ids.len() {
        bail!(
            "give one --ids file per --vectors file ({} and {})",
            options.ids.len(),
            options.vectors.len()
        );
    }
    let web_assets = WebAssets::locate(options.assets.as_deref())?;
    let catalog = read_catalog(&options.catalog, &options.columns)?;
    let (ids, per_file) = read_ids(&options.ids)?;
    let by_id: HashMap<&str, usize> =
        catalog.products.iter().enumerate().map(|(i, p)| (p.id.as_str(), i)).collect();
    let products: Vec<&Product> = ids
        .iter()
        .enumerate()
        .map(|(i, id)| {
            by_id.get(id.as_str()).map(|&p| &catalog.products[p]).with_context(|| {
                let (file, line) = origin(&options.ids, &per_file, i);
                format!(
                    "{}:{line}: id '{id}' is not in the catalog {}",
                    file.display(),
                    options.catalog.display()
                )
            })
        })
        .collect::<Result<_>>()?;
    let missing = catalog.products.len() - products.len();
    eprintln!(
        "vectors: {} items from {} file(s); {} catalog products have no vector{}",
        ids.len(),
        options.vectors.len(),
        missing,
        if missing > 0 { " and are left out" } else { "" }
    );
    let (labels, label_names) = labels_of(&catalog, &products);

    let paged = options.layout.is_paged(ids.len(), ids.len(), false);
    // Every input is read and checked before anything is written: bad
    // vectors fail the build with the site as it was. A paged index takes
    // them projected; the forest projects by itself, as in a catalog build.
    let vectors = read_vectors(options, &per_file, paged)?;
    let out = &options.out;
    std::fs::create_dir_all(out.join(site::THUMBS_DIR))
        .with_context(|| format!("creating {}", out.display()))?;
    let thumbs = write_thumbnails(options, &catalog, &products)?;
    let product_of = |i: usize| SiteProduct {
        id: products[i].id.clone(),
        label: products[i].label.clone(),
        thumb: thumbs.get(&products[i].image).cloned().unwrap_or_default(),
        title: site::title_of(&products[i].metadata),
        metadata: products[i].metadata.clone(),
        crop: None,
    };
    let items = ids.len();
    let index_started = Instant::now();
    let (index_path, paged_info, manifest_products) = if paged {
        let record =
            |i: usize| serde_json::to_string(&product_of(i)).expect("a product serialises");
        let info = write_paged_index(
            out,
            &options.layout,
            options.metric,
            vectors.values,
            vectors.dims,
            &ids,
            &labels,
            &label_names,
            vectors.projection.as_ref(),
            &record,
        )?;
        (site::PAGED_HEAD_PATH.to_string(), Some(info), Vec::new())
    } else {
        let mut params = ForestParams::new(options.metric);
        params.seed = options.seed;
        let storage = crate::site_builder::Storage { encoding: None, pca_dims: options.pca_dims };
        let params = storage.resolve(params, items);
        let forest = Forest::build(vectors.values, vectors.dims, Some(labels), &params)?;
        let index = Index { forest, ids, label_names, appearance: None };
        write_whole_index(out, &index.to_bytes())?;
        (site::INDEX_PATH.to_string(), None, (0..items).map(product_of).collect())
    };
    eprintln!(
        "index: {} layout over {items} items in {}",
        if paged { "paged" } else { "one-file" },
        format_duration(index_started.elapsed().as_secs_f64())
    );

    let model_bytes = std::fs::read(&options.model)
        .with_context(|| format!("reading {}", options.model.display()))?;
    let device = burn::tensor::Device::flex();
    let model =
        lookalike_vision::model::weights::from_file_bytes(&options.model, &model_bytes, &device)
            .with_context(|| format!("loading the embedder from {}", options.model.display()))?;
    write_model_record(&options.model, &model_bytes, &model, &out.join(site::MODEL_PATH))?;
    let manifest = SiteManifest {
        version: site::MANIFEST_VERSION,
        model: ModelInfo {
            name: format!("efficientnet-{}", model.variant().name()),
            file: site::MODEL_PATH.into(),
            input_size: preprocess::EMBED_INPUT_SIZE,
            dims: vectors.input_dims,
        },
        index: index_path,
        id_column: catalog.id_column.clone(),
        label_column: catalog.label_column.clone(),
        products: manifest_products,
        detector: None,
        labels: None,
        attributes: None,
        paged: paged_info,
    };
    write_atomic(&out.join(site::MANIFEST_PATH), &serde_json::to_vec(&manifest)?)
        .context("writing the manifest")?;
    web_assets.copy_into(out)?;
    precompress(out)?;
    Ok(VectorsReport { items, paged, seconds: started.elapsed().as_secs_f64() })
}

/// The ids files' lines, in order, and how many each file gave.
fn read_ids(files: &[PathBuf]) -> Result<(Vec<String>, Vec<usize>)> {
    let mut ids = Vec::new();
    let mut per_file = Vec::with_capacity(files.len());
    for file in files {
        let text =
            std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
        let before = ids.len();
        ids.extend(text.lines().map(str::to_string));
        per_file.push(ids.len() - before);
    }
    let mut seen: HashMap<&str, usize> = HashMap::with_capacity(ids.len());
    for (i, id) in ids.iter().enumerate() {
        let (file, line) = origin(files, &per_file, i);
        if id.is_empty() {
            bail!("{}:{line}: empty id", file.display());
        }
        if let Some(first) = seen.insert(id, i) {
            let (file0, line0) = origin(files, &per_file, first);
            bail!("{}:{line}: id '{id}' also on {}:{line0}", file.display(), file0.display());
        }
    }
    Ok((ids, per_file))
}

/// The file and line (1-based) that id `i` of the concatenation came from.
fn origin<'f>(files: &'f [PathBuf], per_file: &[usize], mut i: usize) -> (&'f Path, usize) {
    for (file, &count) in files.iter().zip(per_file) {
        if i < count {
            return (file, i + 1);
        }
        i -= count;
    }
    unreachable!("an id index inside the files")
}

/// The build's vectors in the index's space.
struct Vectors {
    values: Vec<f32>,
    dims: usize,
    /// The embedder's width (what a photo's vector has).
    input_dims: usize,
    projection: Option<Projection>,
}

/// All vectors, concatenated, checked against their ids files' lengths,
/// and projected when `project` and PCA is asked for.
fn read_vectors(options: &VectorsBuild, per_file: &[usize], project: bool) -> Result<Vectors> {
    let matrices =
        options.vectors.iter().map(|p| crate::npy::map_f32(p)).collect::<Result<Vec<_>>>()?;
    let cols = matrices[0].cols;
    for (m, path) in matrices.iter().zip(&options.vectors) {
        if m.cols != cols {
            bail!(
                "{}: {} columns, {} has {cols}",
                path.display(),
                m.cols,
                options.vectors[0].display()
            );
        }
    }
    for (((m, path), ids), &lines) in
        matrices.iter().zip(&options.vectors).zip(&options.ids).zip(per_file)
    {
        if m.rows != lines {
            bail!("{}: {} rows, but {} has {lines} ids", path.display(), m.rows, ids.display());
        }
    }
    let rows: usize = matrices.iter().map(|m| m.rows).sum();
    let dims = paged_dims(options.pca_dims, cols)?;
    for (m, path) in matrices.iter().zip(&options.vectors) {
        if let Some(row) =
            m.values().chunks_exact(cols).position(|r| r.iter().any(|v| !v.is_finite()))
        {
            bail!("{}: row {row} has a non-finite value", path.display());
        }
    }
    if dims == cols || !project {
        let mut values = Vec::with_capacity(rows * cols);
        matrices.iter().for_each(|m| values.extend_from_slice(m.values()));
        return Ok(Vectors { values, dims: cols, input_dims: cols, projection: None });
    }
    let parts: Vec<&[f32]> = matrices.iter().map(|m| m.values()).collect();
    let (values, projection) = fit_and_project(&parts, cols, dims, options.metric, options.seed);
    Ok(Vectors { values, dims, input_dims: cols, projection: Some(projection) })
}

/// The dimensions a paged index keeps of `cols`-wide vectors: `--pca-dims`
/// (0: all of them), by default [`DEFAULT_PCA_DIMS`].
pub(crate) fn paged_dims(pca_dims: Option<usize>, cols: usize) -> Result<usize> {
    Ok(match pca_dims {
        Some(0) => cols,
        Some(d) if d > cols => bail!("--pca-dims {d} is more than the vectors' {cols}"),
        Some(d) => d,
        None => cols.min(DEFAULT_PCA_DIMS),
    })
}

/// Fits a PCA to `dims` on evenly spaced rows of `parts` (row-major,
/// `cols` wide, concatenated), chosen by their place in the whole so that
/// sharding cannot change it, and projects every row, a block at a time.
pub(crate) fn fit_and_project(
    parts: &[&[f32]],
    cols: usize,
    dims: usize,
    metric: Metric,
    seed: u64,
) -> (Vec<f32>, Projection) {
    let rows: usize = parts.iter().map(|p| p.len() / cols).sum();
    let step = rows.div_ceil(PCA_SAMPLE).max(1);
    let mut sample = Vec::with_capacity(PCA_SAMPLE.min(rows) * cols);
    let mut first = 0usize;
    for part in parts {
        let count = part.len() / cols;
        for row in (first.next_multiple_of(step) - first..count).step_by(step) {
            sample.extend_from_slice(&part[row * cols..(row + 1) * cols]);
        }
        first += count;
    }
    let projection = Projection::fit(&sample, cols, dims, metric == Metric::Euclidean, seed);
    let mut all = Vec::with_capacity(rows * dims);
    for part in parts {
        for block in part.chunks(PROJECT_BLOCK * cols) {
            all.extend(projection.apply_all(block));
        }
    }
    (all, projection)
}

fn labels_of(catalog: &Catalog, products: &[&Product]) -> (Vec<u32>, Vec<String>) {
    // Sorted, as a catalog build numbers them.
    let mut names = catalog.label_names();
    names.sort();
    names.dedup();
    let number: HashMap<&str, u32> =
        names.iter().enumerate().map(|(i, n)| (n.as_str(), i as u32)).collect();
    let labels = products
        .iter()
        .map(|p| p.label.as_deref().and_then(|l| number.get(l).copied()).unwrap_or(NO_LABEL))
        .collect();
    (labels, names)
}

/// One thumbnail per distinct image of the products (a catalog that
/// shows one picture for many products makes it once); returns each
/// image's thumbnail path. An image that cannot be read leaves its
/// products without a thumbnail, reported, not fatal: their vectors exist.
fn write_thumbnails(
    options: &VectorsBuild,
    catalog: &Catalog,
    products: &[&Product],
) -> Result<HashMap<String, String>> {
    let mut images: Vec<&str> = products.iter().map(|p| p.image.as_str()).collect();
    images.sort_unstable();
    images.dedup();
    let catalog_dir = options.catalog.parent().unwrap_or(Path::new(".")).to_path_buf();
    let fetcher = Fetcher::new(FetchOptions {
        allow_private_redirects: options.allow_private_redirects,
        ..FetchOptions::new(options.cache_dir.join("images"))
    });
    let mut progress = crate::progress::Progress::new("thumbnails", images.len());
    let done = std::sync::Mutex::new(&mut progress);
    let made: Vec<(String, Result<String, String>)> = images
        .par_iter()
        .map(|image| {
            let made =
                thumbnail_of(&fetcher, &catalog_dir, image, &options.out, options.thumb_size);
            done.lock().unwrap().advance(1);
            (image.to_string(), made)
        })
        .collect();
    progress.finish();
    let failed: Vec<String> =
        made.iter().filter_map(|(i, r)| r.as_ref().err().map(|e| format!("{i}: {e}"))).collect();
    if !failed.is_empty() {
        eprintln!(
            "{} images could not be made into thumbnails ({} of {}), e.g. {}",
            failed.len(),
            catalog.source,
            images.len(),
            failed[0]
        );
    }
    Ok(made.into_iter().filter_map(|(i, r)| r.ok().map(|t| (i, t))).collect())
}

/// Writes the pages (streamed into a temporary file that replaces the old
/// one only when complete), the head, and the chunk files if asked; a
/// one-file index left by an earlier build is removed.
#[allow(clippy::too_many_arguments)]
pub(crate) fn write_paged_index(
    out: &Path,
    output: &PagedOutput,
    metric: Metric,
    vectors: Vec<f32>,
    dims: usize,
    ids: &[String],
    labels: &[u32],
    label_names: &[String],
    projection: Option<&Projection>,
    record: &(dyn Fn(usize) -> String + Sync),
) -> Result<PagedInfo> {
    let pages_path = out.join(site::PAGED_PAGES_PATH);
    let tmp = temp_file_beside(&pages_path)
        .with_context(|| format!("creating a file beside {}", pages_path.display()))?;
    let source =
        PagedSource { metric, dims, vectors, ids, labels, label_names, projection, record };
    let mut writer = BufWriter::with_capacity(1 << 20, tmp.as_file());
    let head = write_paged(source, &output.params, &mut writer, &mut |stage| {
        eprintln!("paged index: {stage}")
    })?;
    writer.flush()?;
    drop(writer);
    tmp.as_file().sync_all()?;
    tmp.persist(&pages_path)
        .map_err(|e| e.error)
        .with_context(|| format!("writing {}", pages_path.display()))?;
    let head_bytes = head.encode();
    write_atomic(&out.join(site::PAGED_HEAD_PATH), &head_bytes)
        .context("writing the paged head")?;
    let chunks = match output.chunk_size {
        Some(size) => Some(write_chunks(out, &pages_path, size)?),
        None => {
            remove_if_present(&out.join(site::PAGED_CHUNKS_DIR))?;
            None
        }
    };
    remove_if_present(&out.join(site::INDEX_PATH))?;
    eprintln!(
        "paged index: {} lists in {} cells; head {:.0} KB, pages {:.1} MB",
        head.lists.len(),
        head.cells(),
        head_bytes.len() as f64 / 1e3,
        head.pages_len as f64 / 1e6
    );
    Ok(PagedInfo {
        head: site::PAGED_HEAD_PATH.into(),
        pages: site::PAGED_PAGES_PATH.into(),
        pages_bytes: head.pages_len,
        items: head.items,
        chunks,
    })
}

/// Cuts the pages file into `size`-byte files `000000.bin`, `000001.bin`...
/// (the last one shorter), replacing any earlier set.
fn write_chunks(out: &Path, pages: &Path, size: u64) -> Result<ChunkInfo> {
    if !(4096..=64 << 20).contains(&size) {
        bail!("--chunk-size {size}: use 4 KiB to 64 MiB");
    }
    let dir = out.join(site::PAGED_CHUNKS_DIR);
    remove_if_present(&dir)?;
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut file = std::fs::File::open(pages)?;
    let mut buffer = vec![0u8; size as usize];
    for n in 0.. {
        let mut filled = 0;
        while filled < buffer.len() {
            match file.read(&mut buffer[filled..])? {
                0 => break,
                read => filled += read,
            }
        }
        if filled == 0 {
            break;
        }
        write_atomic(&dir.join(format!("{n:06}.bin")), &buffer[..filled])?;
        if filled < buffer.len() {
            break;
        }
    }
    Ok(ChunkInfo { dir: site::PAGED_CHUNKS_DIR.into(), size })
}

/// Writes a one-file index, removing a paged one left by an earlier build.
pub(crate) fn write_whole_index(out: &Path, bytes: &[u8]) -> Result<()> {
    write_atomic(&out.join(site::INDEX_PATH), bytes).context("writing the index")?;
    Ok(remove_if_present(&out.join(site::PAGED_DIR))?)
}

/// A paged site opened natively: the head in memory, pages read from the
/// file as queries ask for them (the same reader the page drives).
pub struct PagedSite {
    index: lookalike_index::paged::PagedIndex,
    pages: std::fs::File,
    path: PathBuf,
}

/// Opens `site` when its manifest says it is paged.
pub fn open_paged(site_dir: &Path) -> Result<Option<PagedSite>> {
    let manifest_path = site_dir.join(site::MANIFEST_PATH);
    let text = std::fs::read_to_string(&manifest_path)
        .with_context(|| format!("reading {}", manifest_path.display()))?;
    let manifest: SiteManifest = serde_json::from_str(&text)
        .with_context(|| format!("parsing {}", manifest_path.display()))?;
    if manifest.paged.is_none() {
        return Ok(None);
    }
    // The builder's fixed paths, not the manifest's: a manifest is input,
    // and must not send the tool to read files outside the site.
    let head_path = site_dir.join(site::PAGED_HEAD_PATH);
    let head =
        std::fs::read(&head_path).with_context(|| format!("reading {}", head_path.display()))?;
    let index = lookalike_index::paged::PagedIndex::from_head(&head, 64 << 20)
        .with_context(|| head_path.display().to_string())?;
    let path = site_dir.join(site::PAGED_PAGES_PATH);
    let pages =
        std::fs::File::open(&path).with_context(|| format!("opening {}", path.display()))?;
    let length = pages.metadata()?.len();
    if length != index.head().pages_len {
        bail!("{}: {length} bytes, its head says {}", path.display(), index.head().pages_len);
    }
    Ok(Some(PagedSite { index, pages, path }))
}

impl PagedSite {
    /// A product's look-alikes; `None` for an id the site lacks.
    pub fn query_item(
        &mut self,
        id: &str,
        query: &lookalike_index::paged::PagedQuery,
    ) -> Result<Option<Vec<lookalike_index::paged::PagedHit>>> {
        use lookalike_index::paged::Step;
        for _ in 0..16 {
            match self
                .index
                .query_item(id, query)
                .with_context(|| self.path.display().to_string())?
            {
                Step::Done(hits) => return Ok(hits),
                Step::Need(pages) => {
                    for (start, end) in lookalike_index::paged::coalesce(&pages, 0) {
                        let mut bytes = vec![0u8; (end - start) as usize];
                        self.pages
                            .seek(std::io::SeekFrom::Start(start))
                            .and_then(|_| self.pages.read_exact(&mut bytes))
                            .with_context(|| format!("reading {}", self.path.display()))?;
                        self.index
                            .accept(&pages, start, &bytes)
                            .with_context(|| self.path.display().to_string())?;
                    }
                }
            }
        }
        bail!("{}: a query that does not end", self.path.display())
    }
}
