//! The `lookalike` command line.

use crate::catalog::Columns;
use crate::eval::{column_values, evaluate};
use crate::fetch::{FetchOptions, Fetcher};
use crate::site::{self, SiteManifest};
use crate::site_builder::{
    BuildOptions, CropSpec, DetectorFiles, EmbedJob, GarmentModel, ParserFiles, Storage,
    build_site, embed_catalog, read_catalog,
};
use anyhow::{Context, Result, bail};
use burn::tensor::Device;
use clap::{Args, Parser, Subcommand};
use lookalike_forest::{Encoding, ForestParams, GraphParams, Metric};
use lookalike_index::Index;
use lookalike_index::rank::{RecommendOptions, recommend_item, recommend_vector};
use lookalike_vision::model::{Embedder, weights};
use lookalike_vision::parse::train::TrainOptions;
use std::path::{Path, PathBuf};

/// Find the products that look most alike: build a static site from a
/// catalog, query it, evaluate it, serve it.
#[derive(Parser, Debug)]
#[command(name = "lookalike", version)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Turn a catalog (CSV, JSON or JSON Lines) into a static site.
    Build(Box<BuildArgs>),
    /// Print the look-alikes of a product (or of a photo) as JSON.
    Query(QueryArgs),
    /// Precision@k of same label and recall against exact search.
    Eval(EvalArgs),
    /// Embed a catalog's images: writes vectors.npy (float32, N x 1280) and ids.txt.
    Embed {
        #[command(flatten)]
        input: CatalogArgs,
        #[arg(long)]
        out: PathBuf,
        #[arg(long)]
        model: Option<PathBuf>,
        #[arg(long, default_value_t = 16)]
        batch_size: usize,
        /// What of each image is embedded (`detect` is not offered: one
        /// vector per product here).
        #[arg(long, value_enum, default_value_t = CropSpec::Whole)]
        crops: CropSpec,
        /// Follow image redirects from a public address to a loopback,
        /// private or link-local one (refused by default).
        #[arg(long)]
        allow_private_redirects: bool,
        /// Embed only share I of N (0-based) of the catalog: the products
        /// of rows `I*n/N..(I+1)*n/N`, so N machines split the work and
        /// `build --vectors` takes their outputs in order
        /// (cluster/ray_embed.py runs them on a Ray cluster).
        #[arg(long, value_name = "I/N", value_parser = parse_shard)]
        shard: Option<(usize, usize)>,
    },
    /// Train the label head: names crops with a catalog column's values (e.g. articleType).
    TrainLabels {
        #[command(flatten)]
        input: CatalogArgs,
        /// The column to learn.
        #[arg(long)]
        label_col: String,
        /// Learn the most frequent values only.
        #[arg(long, default_value_t = 20)]
        top: usize,
        /// Share of products held out to measure accuracy.
        #[arg(long, default_value_t = 0.2)]
        holdout: f64,
        #[arg(long, default_value = "models/labels.json")]
        out: PathBuf,
        #[arg(long)]
        model: Option<PathBuf>,
    },
    /// Train the garment parser's head on Clothing Co-Parsing photos and
    /// their per-pixel labels (the embedder's backbone, frozen, underneath).
    TrainParser {
        /// The CCP folder: labels.csv, label_names.csv, images/, masks/.
        #[arg(long)]
        data: PathBuf,
        /// The head's record; a .json beside it says how it was made.
        #[arg(long, default_value = "models/parser.bpk")]
        out: PathBuf,
        /// The backbone (the embedder's weights) [default: the shipped one].
        #[arg(long)]
        model: Option<PathBuf>,
        #[arg(long, default_value_t = TrainOptions::default().epochs)]
        epochs: usize,
        #[arg(long, default_value_t = TrainOptions::default().seed)]
        seed: u64,
        /// Train on at most this many photos (and validate on a quarter as
        /// many): for quick checks.
        #[arg(long)]
        limit: Option<usize>,
        /// Train on only the first N photos of the training split, still
        /// validating on all of its validation split (a learning curve).
        #[arg(long, value_name = "N")]
        training_photos: Option<usize>,
    },
    /// Print the fashion items found in a photo (boxes, classes, scores) as JSON.
    Detect {
        image: PathBuf,
        #[command(flatten)]
        detect: DetectArgs,
        /// Also write the items' masks and outlines over a transparent
        /// layer of the photo's size, as a PNG (what the page draws).
        #[arg(long)]
        overlay: Option<PathBuf>,
    },
    /// Serve a built site on 127.0.0.1.
    Serve {
        /// The built site folder.
        dir: PathBuf,
        #[arg(long, default_value_t = 8080)]
        port: u16,
    },
    /// Convert a PyTorch EfficientNet-Lite0 checkpoint into a Burnpack record.
    ConvertModel {
        #[arg(long)]
        from: PathBuf,
        #[arg(long)]
        to: PathBuf,
    },
}

/// The report's detection parameters, and the detector models.
#[derive(Args, Debug, Clone)]
struct DetectArgs {
    /// Classes to look for, comma-separated [default: upper body, lower body,
    /// full length, shoes, handbag, backpack, tie].
    #[arg(long, value_delimiter = ',')]
    classes: Option<Vec<String>>,
    /// Minimum detector score.
    #[arg(long, default_value_t = 0.6)]
    min_score: f32,
    /// At most this many boxes per photo (the report used 3; an outfit
    /// often has five items).
    #[arg(long, default_value_t = lookalike_vision::detect::DEFAULT_MAX_BOXES)]
    max_boxes: usize,
    /// Object detector: a TF.js NanoDet model.json [default: models/nanodet.json].
    #[arg(long)]
    detector: Option<PathBuf>,
    /// Pose model: a TF.js MoveNet model.json [default: models/movenet-lightning.json];
    /// runs only without the garment parser.
    #[arg(long)]
    pose: Option<PathBuf>,
    /// The garment parser's head (from `train-parser`) [default: models/parser.bpk].
    #[arg(long)]
    parser: Option<PathBuf>,
    /// Find garments with the pose model instead of the parser (the
    /// composed detector of earlier versions).
    #[arg(long, conflicts_with = "parser")]
    no_parser: bool,
    /// The parser's backbone: the embedder's weights [default: the shipped embedder].
    #[arg(long)]
    backbone: Option<PathBuf>,
}

impl DetectArgs {
    fn options(&self) -> Result<lookalike_vision::detect::DetectOptions> {
        let mut options = lookalike_vision::detect::DetectOptions::default();
        if let Some(classes) = &self.classes {
            options.classes = classes.iter().map(|c| c.trim().to_string()).collect();
        }
        options.min_score = self.min_score;
        options.max_boxes = self.max_boxes;
        options.validate()?;
        Ok(options)
    }

    fn files(&self) -> Result<DetectorFiles> {
        let garments = if self.no_parser {
            GarmentModel::Pose(model_or_default(self.pose.clone(), DEFAULT_POSE_MODEL)?)
        } else {
            GarmentModel::Parser(ParserFiles {
                head: model_or_default(self.parser.clone(), DEFAULT_PARSER)?,
                backbone: model_or_default(self.backbone.clone(), DEFAULT_MODEL)?,
            })
        };
        Ok(DetectorFiles {
            objects: model_or_default(self.detector.clone(), DEFAULT_OBJECT_DETECTOR)?,
            garments,
            options: self.options()?,
        })
    }

    fn detector(&self, device: &Device) -> Result<lookalike_vision::detect::Detector> {
        self.files()?.load(device)
    }
}

/// Which catalog, and which of its columns hold the id and the image.
#[derive(Args, Debug)]
struct CatalogArgs {
    /// The catalog file; image paths in it are relative to it.
    #[arg(long)]
    catalog: PathBuf,
    /// Column with the product id [default: id, product_id, sku or item_id].
    #[arg(long)]
    id_col: Option<String>,
    /// Column with the image path or URL [default: image, file, path, url...].
    #[arg(long)]
    image_col: Option<String>,
}

#[derive(Args, Debug)]
struct BuildArgs {
    #[command(flatten)]
    input: CatalogArgs,
    /// Folder to write the site into.
    #[arg(long)]
    out: PathBuf,
    /// Column with the product's class, for same-class filtering.
    #[arg(long)]
    label_col: Option<String>,
    /// Embedder weights: a .bpk record or a .pth checkpoint.
    #[arg(long)]
    model: Option<PathBuf>,
    /// Folder holding index.html and www/ (with the built wasm in www/pkg).
    #[arg(long)]
    assets: Option<PathBuf>,
    /// Trees in the forest: more gives better recall and a bigger index.
    #[arg(long, default_value_t = ForestParams::new(Metric::Angular).n_trees)]
    n_trees: usize,
    /// Most items per leaf: larger gives a smaller index and slower queries.
    #[arg(long, default_value_t = ForestParams::new(Metric::Angular).leaf_size)]
    leaf_size: usize,
    #[arg(long, default_value_t = 0x100c_a11c)]
    seed: u64,
    /// How stored vectors are encoded: f32, f16, i8-vector or i8-dim
    /// [default: i8-dim with PCA for 512+ products, else f16].
    #[arg(long, value_parser = parse_encoding)]
    encoding: Option<Encoding>,
    /// Project vectors to this many dimensions by PCA before indexing; 0 for
    /// none [default: 128 for 512+ products, else none].
    #[arg(long)]
    pca_dims: Option<usize>,
    /// Also keep the full vectors (f16) to re-rank candidates exactly: higher
    /// recall, about 2.5 KB more per product.
    #[arg(long)]
    rescore: bool,
    /// Link the products into a neighbour graph of this degree (32 is a good
    /// start; 0 for none), which then answers unfiltered queries: faster at
    /// high recall on large catalogs, 2 to 4 bytes per link per product
    /// (docs/forest.md).
    #[arg(long, default_value_t = 0)]
    graph_degree: usize,
    #[arg(long, default_value_t = 160)]
    thumb_size: u32,
    #[arg(long, default_value_t = 16)]
    batch_size: usize,
    /// Downloaded images and embeddings are kept here between builds
    /// [default: $LOOKALIKE_CACHE or ~/.cache/lookalike].
    #[arg(long)]
    cache: Option<PathBuf>,
    /// Set bad catalog rows aside (listed in data/skipped.json) instead of stopping.
    #[arg(long)]
    skip_bad: bool,
    /// Also write data/recommendations.json: the top N look-alikes of every product.
    #[arg(long, value_name = "N")]
    precompute: Option<usize>,
    /// What of each image is indexed: the whole image, the product in a
    /// packshot, or every item the detector finds (each crop indexed).
    #[arg(long, value_enum, default_value_t = CropSpec::Foreground)]
    crops: CropSpec,
    #[command(flatten)]
    detect: DetectArgs,
    /// Do not ship the detector with the site (photo search then embeds the
    /// whole photo).
    #[arg(long)]
    no_detector: bool,
    /// Label head from train-labels [default: models/labels.json if present].
    #[arg(long)]
    labels: Option<PathBuf>,
    /// Learn a catalog column as part of what "alike" means, with the
    /// default weight of its part (e.g. `--learn articleType=0.5`; without a
    /// weight, 0.25). Repeatable. Queries predict it from their pixels.
    #[arg(long, value_name = "COLUMN[=W]", value_parser = parse_learn_arg)]
    learn: Vec<crate::attributes::LearnSpec>,
    /// Default weight of the colour signature (queries can change it).
    #[arg(long, default_value_t = 0.0)]
    colour_weight: f32,
    /// Follow image redirects from a public address to a loopback, private
    /// or link-local one (refused by default).
    #[arg(long)]
    allow_private_redirects: bool,
    /// Build from vectors embedded elsewhere (`embed`, or its shards):
    /// float32 .npy files, concatenated in order. Repeatable; each needs
    /// its --ids. The catalog then gives only metadata and thumbnails.
    #[arg(long, value_name = "NPY", requires = "ids")]
    vectors: Vec<PathBuf>,
    /// The ids of a --vectors file's rows, one per line (embed's ids.txt).
    #[arg(long, value_name = "TXT", requires = "vectors")]
    ids: Vec<PathBuf>,
    /// The index's layout: one file, paged for byte-range reads, or paged
    /// from 20,000 products (auto: when each product is one item and no
    /// --precompute is asked for).
    #[arg(long, value_enum, default_value_t = crate::paged_site::LayoutChoice::Auto)]
    layout: crate::paged_site::LayoutChoice,
    /// Also cut a paged index into chunk files of this many bytes, for
    /// hosts that do not answer byte-range requests.
    #[arg(long, value_name = "BYTES")]
    chunk_size: Option<u64>,
    /// Items per list of a paged index.
    #[arg(long, default_value_t = lookalike_index::paged::PagedParams::default().list_size)]
    list_size: usize,
}

#[derive(Args, Debug)]
struct QueryArgs {
    /// The built site folder.
    #[arg(long)]
    site: PathBuf,
    /// A product id of the catalog.
    #[arg(long, conflicts_with = "image", required_unless_present = "image")]
    id: Option<String>,
    /// A photo: its look-alikes in the catalog.
    #[arg(long)]
    image: Option<PathBuf>,
    #[arg(short, default_value_t = 10)]
    k: usize,
    /// Candidates to examine [default: n_trees * k]; with a graph, the
    /// candidates its walk keeps [default: 64].
    #[arg(long)]
    search_k: Option<usize>,
    /// Keep only products with the query's label (for a photo: the label
    /// the site's label head gives each detected item).
    #[arg(long)]
    same_label: bool,
    /// Weight of one part of the similarity, replacing the site's default:
    /// `visual`, `colour`, or a learned column (e.g. `--weight colour=0.3`).
    /// Repeatable.
    #[arg(long = "weight", value_name = "PART=W", value_parser = parse_weight_arg)]
    weights: Vec<(String, f32)>,
    #[command(flatten)]
    detect: DetectArgs,
}

fn parse_weight_arg(text: &str) -> Result<(String, f32), String> {
    lookalike_index::appearance::parse_weight(text).map_err(|e| e.to_string())
}

fn parse_learn_arg(text: &str) -> Result<crate::attributes::LearnSpec, String> {
    crate::attributes::parse_learn(text)
}

/// The query's weights: the site's defaults with the `--weight` overrides.
fn query_weights(
    index: &Index,
    overrides: &[(String, f32)],
    site: &Path,
) -> Result<Option<lookalike_index::appearance::Weights>> {
    match &index.appearance {
        Some(table) => Ok(Some(
            lookalike_index::appearance::Weights::defaults(&table.layout)
                .with_overrides(overrides, &table.layout)?,
        )),
        None if overrides.is_empty() => Ok(None),
        None => bail!(
            "{} was built without colour or learned parts; rebuild it to weigh them",
            site.display()
        ),
    }
}

#[derive(Args, Debug)]
struct EvalArgs {
    #[arg(long)]
    site: PathBuf,
    /// Catalog column to judge by (e.g. articleType).
    #[arg(long)]
    label: String,
    #[arg(short, default_value_t = 10)]
    k: usize,
    #[arg(long)]
    search_k: Option<usize>,
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
}

/// The model a flag names, else the default this binary carries
/// (`crate::assets`), whichever folder the tool runs in: a stranger's
/// `models/nanodet.json` lying in the working directory is never picked up.
fn model_or_default(given: Option<PathBuf>, default: &str) -> Result<PathBuf> {
    match given {
        Some(path) => Ok(path),
        None => crate::assets::default_model(&default_cache_dir(), default),
    }
}

/// `I/N` with `I < N`.
fn parse_shard(text: &str) -> Result<(usize, usize), String> {
    let (i, n) = text.split_once('/').ok_or("expected I/N, e.g. 0/4")?;
    let i: usize = i.trim().parse().map_err(|_| format!("'{i}' is not a shard number"))?;
    let n: usize = n.trim().parse().map_err(|_| format!("'{n}' is not a shard count"))?;
    if n == 0 || i >= n {
        return Err(format!("shard {i}/{n}: need 0 <= I < N"));
    }
    Ok((i, n))
}

/// The catalog rows shard `index` of `count` embeds: contiguous, so the
/// shards' outputs in order are the catalog's order.
pub fn shard_rows(rows: usize, index: usize, count: usize) -> std::ops::Range<usize> {
    rows * index / count..rows * (index + 1) / count
}

fn parse_encoding(name: &str) -> Result<Encoding, String> {
    Encoding::from_name(name)
        .ok_or_else(|| format!("unknown encoding '{name}' (f32, f16, i8-vector, i8-dim)"))
}

/// `$LOOKALIKE_CACHE`, else `~/.cache/lookalike`.
pub fn default_cache_dir() -> PathBuf {
    std::env::var_os("LOOKALIKE_CACHE").map(PathBuf::from).unwrap_or_else(|| {
        PathBuf::from(std::env::var_os("HOME").unwrap_or_else(|| ".".into()))
            .join(".cache/lookalike")
    })
}

/// The default models, by name in `models/` (embedded in the binary).
pub const DEFAULT_MODEL: &str = "efficientnet-lite0.bpk";
pub const DEFAULT_OBJECT_DETECTOR: &str = "nanodet.json";
pub const DEFAULT_POSE_MODEL: &str = "movenet-lightning.json";
pub const DEFAULT_PARSER: &str = "parser.bpk";
pub const DEFAULT_LABELS: &str = "labels.json";

pub fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Build(args) => build(*args),
        Command::Query(args) => query(args),
        Command::Eval(args) => eval(args),
        Command::TrainLabels { input, label_col, top, holdout, out, model } => {
            let columns = Columns {
                id: input.id_col,
                image: input.image_col,
                label: Some(label_col.clone()),
            };
            let model = model_or_default(model, DEFAULT_MODEL)?;
            let embedded = crate::catalog_embeddings::embed_with_cache(
                &input.catalog,
                &columns,
                &default_cache_dir(),
                &model,
            )?;
            let trained = crate::labels::train_labels(
                &embedded.products,
                &embedded.vectors,
                &label_col,
                top,
                holdout,
            )?;
            crate::fsutil::write_atomic(&out, &serde_json::to_vec(&trained.head)?)?;
            eprintln!(
                "wrote {} ({} labels of {label_col}); top-1 accuracy {:.3} on {} held-out products (trained on {})",
                out.display(),
                trained.head.labels.len(),
                trained.accuracy,
                trained.tested_on,
                trained.trained_on
            );
            Ok(())
        }
        Command::TrainParser { data, out, model, epochs, seed, limit, training_photos } => {
            let args = crate::parser_training::TrainParserArgs {
                data,
                out,
                backbone: model_or_default(model, DEFAULT_MODEL)?,
                cache_dir: default_cache_dir(),
                options: TrainOptions { epochs, seed, ..TrainOptions::default() },
                limit,
                training_photos,
            };
            let report = crate::parser_training::train_parser(&args)?.report;
            println!("validation: {:.3} of cells right; IoU per class:", report.pixel_accuracy);
            for class in &report.iou {
                println!("  {:<12} {:.3}  ({} cells)", class.class, class.iou, class.cells);
            }
            Ok(())
        }
        Command::Detect { image, detect, overlay } => {
            let options = detect.options()?;
            let detector = detect.detector(&Device::flex())?;
            let bytes =
                std::fs::read(&image).with_context(|| format!("reading {}", image.display()))?;
            let decoded = lookalike_vision::preprocess::decode(&bytes)
                .with_context(|| format!("decoding {}", image.display()))?;
            let items = lookalike_vision::detect::readback::block_on(
                detector.detect(&decoded.to_rgb8(), &options),
            )?;
            if let Some(path) = overlay {
                let layer =
                    lookalike_vision::detect::overlay(&items, decoded.width(), decoded.height());
                let mut png = Vec::new();
                layer
                    .write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
                    .context("encoding the overlay")?;
                crate::fsutil::write_atomic(&path, &png)
                    .with_context(|| format!("writing {}", path.display()))?;
            }
            println!("{}", serde_json::to_string_pretty(&items)?);
            Ok(())
        }
        Command::Serve { dir, port } => crate::serve::serve(&dir, port, |addr| {
            eprintln!("serving {} on http://{addr}/ (Ctrl-C to stop)", dir.display());
        }),
        Command::Embed { input, out, model, batch_size, crops, allow_private_redirects, shard } => {
            let columns = Columns { id: input.id_col, image: input.image_col, label: None };
            let crops = match crops {
                CropSpec::Whole => crate::crops::CropMode::Whole,
                CropSpec::Foreground => crate::crops::CropMode::Foreground,
                CropSpec::Detect => {
                    bail!("embed writes one vector per product; use --crops whole or foreground")
                }
            };
            let fetch = FetchOptions {
                allow_private_redirects,
                ..FetchOptions::new(default_cache_dir().join("images"))
            };
            let model = model_or_default(model, DEFAULT_MODEL)?;
            let catalog = read_catalog(&input.catalog, &columns)?;
            embed(&input.catalog, catalog, &out, &model, batch_size, &crops, fetch, shard)
        }
        Command::ConvertModel { from, to } => {
            let model = weights::from_pytorch_file(&from, &Device::flex())?;
            let bytes = weights::to_burnpack_bytes(&model, &to.display().to_string())?;
            crate::fsutil::write_atomic(&to, &bytes)
                .with_context(|| format!("writing {}", to.display()))?;
            eprintln!("wrote {}", to.display());
            Ok(())
        }
    }
}

fn build(args: BuildArgs) -> Result<()> {
    if !args.vectors.is_empty() {
        return build_from_vectors(args);
    }
    let layout = paged_output(&args);
    let options = BuildOptions {
        catalog: args.input.catalog,
        out: args.out,
        columns: Columns {
            id: args.input.id_col,
            image: args.input.image_col,
            label: args.label_col,
        },
        model: model_or_default(args.model, DEFAULT_MODEL)?,
        assets: args.assets,
        forest: ForestParams {
            metric: Metric::Angular,
            n_trees: args.n_trees,
            leaf_size: args.leaf_size,
            seed: args.seed,
            rescore: args.rescore.then_some(Encoding::F16),
            graph: (args.graph_degree > 0)
                .then(|| GraphParams { degree: args.graph_degree, ..GraphParams::default() }),
            ..ForestParams::new(Metric::Angular)
        },
        storage: Storage { encoding: args.encoding, pca_dims: args.pca_dims },
        thumb_size: args.thumb_size,
        batch_size: args.batch_size,
        cache_dir: args.cache.unwrap_or_else(default_cache_dir),
        skip_bad: args.skip_bad,
        precompute: args.precompute,
        crops: args.crops,
        detector: if args.no_detector { None } else { Some(args.detect.files()?) },
        labels: match args.labels {
            Some(path) => Some(path),
            None if crate::assets::has_default_model(DEFAULT_LABELS) => {
                Some(model_or_default(None, DEFAULT_LABELS)?)
            }
            None => None,
        },
        learn: args.learn,
        colour_weight: args.colour_weight,
        allow_private_redirects: args.allow_private_redirects,
        layout,
    };
    if let Some(files) = &options.detector {
        let garments = match &files.garments {
            GarmentModel::Parser(parser) => &parser.head,
            GarmentModel::Pose(pose) => pose,
        };
        for file in [&files.objects, garments] {
            if !file.is_file() {
                bail!(
                    "detector model {} not found; run ./build.sh to fetch it, or pass --no-detector",
                    file.display()
                );
            }
        }
    }
    let report = build_site(&options)?;
    eprintln!(
        "built {} with {} products ({} skipped) in {:.1}s; embedding took {:.1}s ({:.1} images/s)",
        options.out.display(),
        report.products,
        report.skipped.len(),
        report.total_seconds,
        report.embed_seconds,
        (report.products + report.skipped.len()) as f64 / report.embed_seconds.max(1e-9)
    );
    Ok(())
}

/// The index layout the build's flags ask for.
fn paged_output(args: &BuildArgs) -> crate::paged_site::PagedOutput {
    crate::paged_site::PagedOutput {
        layout: args.layout,
        chunk_size: args.chunk_size,
        params: lookalike_index::paged::PagedParams {
            list_size: args.list_size,
            seed: args.seed,
            ..Default::default()
        },
    }
}

fn build_from_vectors(args: BuildArgs) -> Result<()> {
    use crate::paged_site::{VectorsBuild, build_from_vectors};
    let layout = paged_output(&args);
    let options = VectorsBuild {
        catalog: args.input.catalog,
        columns: Columns {
            id: args.input.id_col,
            image: args.input.image_col,
            label: args.label_col,
        },
        out: args.out,
        vectors: args.vectors,
        ids: args.ids,
        metric: Metric::Angular,
        pca_dims: args.pca_dims,
        layout,
        thumb_size: args.thumb_size,
        cache_dir: args.cache.unwrap_or_else(default_cache_dir),
        assets: args.assets,
        model: model_or_default(args.model, DEFAULT_MODEL)?,
        seed: args.seed,
        allow_private_redirects: args.allow_private_redirects,
    };
    let report = build_from_vectors(&options)?;
    eprintln!(
        "built {} with {} products ({} index) in {}",
        options.out.display(),
        report.items,
        if report.paged { "paged" } else { "one-file" },
        crate::progress::format_duration(report.seconds)
    );
    Ok(())
}

#[allow(clippy::too_many_arguments)] // the command's flags, passed through once
fn embed(
    catalog_path: &Path,
    mut catalog: crate::catalog::Catalog,
    out: &Path,
    model: &Path,
    batch_size: usize,
    crops: &crate::crops::CropMode,
    fetch: FetchOptions,
    shard: Option<(usize, usize)>,
) -> Result<()> {
    if let Some((index, count)) = shard {
        let rows = shard_rows(catalog.products.len(), index, count);
        eprintln!(
            "shard {index}/{count}: catalog rows {}..{} of {}",
            rows.start,
            rows.end,
            catalog.products.len()
        );
        catalog.products = catalog.products.drain(rows).collect();
    }
    let device = Device::flex();
    let model = weights::from_file(model, &device)
        .with_context(|| format!("loading the embedder from {}", model.display()))?;
    let embedder = Embedder::new(model, device);
    let catalog_dir = catalog_path.parent().unwrap_or(Path::new("."));
    let fetcher = Fetcher::new(fetch);
    let job = EmbedJob {
        catalog_dir,
        fetcher: &fetcher,
        embedder: &embedder,
        cache: None,
        thumbnails: None,
        batch_size,
        crops,
    };
    let embedded = embed_catalog(&catalog, &job)?;
    let rows = embedded.products.len();
    let npy = crate::npy::encode_f32(&embedded.vectors, rows, lookalike_vision::model::FEATURE_DIM);
    crate::fsutil::write_atomic(&out.join("vectors.npy"), &npy)?;
    let ids: String = embedded.products.iter().map(|p| format!("{}\n", p.id)).collect();
    crate::fsutil::write_atomic(&out.join("ids.txt"), ids.as_bytes())?;
    eprintln!("wrote {rows} vectors to {} ({} skipped)", out.display(), embedded.skipped.len());
    Ok(())
}

/// Loads a built site's index and manifest.
pub fn load_site(dir: &Path) -> Result<(Index, SiteManifest)> {
    let index = Index::open(&dir.join(site::INDEX_PATH))?;
    let manifest_path = dir.join(site::MANIFEST_PATH);
    let text = std::fs::read_to_string(&manifest_path)
        .with_context(|| format!("reading {}", manifest_path.display()))?;
    let manifest: SiteManifest = serde_json::from_str(&text)
        .with_context(|| format!("parsing {}", manifest_path.display()))?;
    if manifest.products.len() != index.forest.len() {
        bail!(
            "{} lists {} items but the index has {}",
            manifest_path.display(),
            manifest.products.len(),
            index.forest.len()
        );
    }
    Ok((index, manifest))
}

fn query(args: QueryArgs) -> Result<()> {
    if let Some(mut paged) = crate::paged_site::open_paged(&args.site)? {
        let Some(id) = &args.id else {
            bail!(
                "{} is a paged site: query it with --id here (photos are searched in its page)",
                args.site.display()
            );
        };
        let query = lookalike_index::paged::PagedQuery {
            same_label: args.same_label,
            ..lookalike_index::paged::PagedQuery::top(args.k)
        };
        let hits = paged
            .query_item(id, &query)?
            .with_context(|| format!("no product with id '{id}' in {}", args.site.display()))?;
        let results: Vec<lookalike_index::rank::Recommendation> = hits
            .into_iter()
            .map(|h| lookalike_index::rank::Recommendation {
                original_product_id: id.clone(),
                similar_product_id: h.id,
                score: h.score,
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&results)?);
        return Ok(());
    }
    let (index, manifest) = load_site(&args.site)?;
    let weights = query_weights(&index, &args.weights, &args.site)?;
    let options = RecommendOptions {
        k: args.k,
        search_k: args.search_k,
        same_label: args.same_label,
        weights,
    };
    let results = match (&args.id, &args.image) {
        (Some(id), _) => {
            let item = index
                .item_of(id)
                .with_context(|| format!("no product with id '{id}' in {}", args.site.display()))?;
            recommend_item(&index, item, &options)
        }
        (None, Some(image)) => return query_image(&args, &index, &manifest, image),
        (None, None) => bail!("pass --id or --image"),
    };
    println!("{}", serde_json::to_string_pretty(&results)?);
    Ok(())
}

/// One item found in a query photo and its look-alikes.
#[derive(serde::Serialize)]
struct PhotoItem {
    class: Option<String>,
    score: Option<f32>,
    /// x, y, width, height in the photo's pixels.
    #[serde(rename = "box")]
    bbox: [u32; 4],
    /// What the label head calls the crop, when the site has one.
    label: Option<String>,
    label_confidence: Option<f32>,
    recommendations: Vec<lookalike_index::rank::Recommendation>,
}

/// `query --image`: detects the items in the photo (with the site's shipped
/// detector, else the default models) and finds look-alikes of each crop:
/// a packshot's foreground (as the catalog indexed its own), a street
/// photo's items cut out by their masks. A photo where nothing is found is
/// searched whole.
fn query_image(
    args: &QueryArgs,
    index: &Index,
    manifest: &SiteManifest,
    image: &Path,
) -> Result<()> {
    use lookalike_vision::detect::readback::block_on;
    let device = Device::flex();
    let bytes = std::fs::read(image).with_context(|| format!("reading {}", image.display()))?;
    let decoded = lookalike_vision::preprocess::decode(&bytes)
        .with_context(|| format!("decoding {}", image.display()))?;
    let rgb = decoded.to_rgb8();
    let flags_name_models = args.detect.detector.is_some()
        || args.detect.pose.is_some()
        || args.detect.parser.is_some()
        || args.detect.no_parser;
    let detector = match &manifest.detector {
        Some(info) if !flags_name_models => DetectorFiles {
            objects: args.site.join(&info.objects),
            garments: match (&info.parser, &info.pose) {
                (Some(head), _) => GarmentModel::Parser(ParserFiles {
                    head: args.site.join(head),
                    backbone: args.site.join(site::MODEL_PATH),
                }),
                (None, Some(pose)) => GarmentModel::Pose(args.site.join(pose)),
                (None, None) => GarmentModel::Pose(model_or_default(None, DEFAULT_POSE_MODEL)?),
            },
            options: info.options.clone(),
        }
        .load(&device)?,
        _ => args.detect.detector(&device)?,
    };
    let items = block_on(detector.detect(&rgb, &args.detect.options()?))?;
    let head = match &manifest.labels {
        Some(path) => Some(crate::labels::read_label_head(&args.site.join(path))?),
        None => None,
    };
    // Each item's crop (cut out of the street when the parser masked it);
    // the whole photo when nothing was found.
    let (w, h) = rgb.dimensions();
    type Region<'a> = (Option<&'a lookalike_vision::detect::Item>, [u32; 4]);
    let (regions, crop_images): (Vec<Region>, Vec<image::DynamicImage>) = if items.is_empty() {
        (vec![(None, [0, 0, w, h])], vec![decoded.clone()])
    } else {
        items
            .iter()
            .map(|i| {
                let (x, y, cw, ch) = i.region(w, h);
                ((Some(i), [x, y, cw, ch]), i.crop(&decoded))
            })
            .unzip()
    };
    let crops: Vec<Vec<f32>> =
        crop_images.iter().map(lookalike_vision::preprocess::model_input).collect();
    let model = weights::from_file(&args.site.join(site::MODEL_PATH), &device)?;
    let vectors = Embedder::new(model, device).embed_batch(&crops)?;
    let heads = load_attribute_heads(&args.site, manifest)?;
    if let Some(table) = &index.appearance {
        lookalike_index::appearance::check_heads(
            &table.layout,
            &heads,
            lookalike_vision::model::FEATURE_DIM,
        )
        .map_err(|e| {
            anyhow::anyhow!(
                "{}: {e}; rebuild the site",
                args.site.join(site::ATTRIBUTES_PATH).display()
            )
        })?;
    }
    let weights = query_weights(index, &args.weights, &args.site)?;
    let options = RecommendOptions {
        k: args.k,
        search_k: args.search_k,
        same_label: args.same_label,
        weights,
    };
    let mut out = Vec::new();
    for (((item, bbox), vector), crop) in regions.iter().zip(&vectors).zip(&crop_images) {
        let parts = lookalike_index::appearance::describe(
            vector,
            &lookalike_vision::colour::colour_signature(crop),
            &heads,
        );
        let prediction = head.as_ref().map(|h| h.predict(vector));
        let label = prediction.as_ref().and_then(|p| index.label_number(&p.label));
        let name = format!("{}#{}", image.display(), out.len());
        out.push(PhotoItem {
            class: item.map(|i| i.class.clone()),
            score: item.map(|i| i.score),
            bbox: *bbox,
            label: prediction.as_ref().map(|p| p.label.clone()),
            label_confidence: prediction.as_ref().map(|p| p.confidence),
            recommendations: recommend_vector(index, &name, vector, Some(&parts), label, &options)?,
        });
    }
    println!("{}", serde_json::to_string_pretty(&out)?);
    Ok(())
}

/// The attribute heads a site learned from its catalog (none if it learned none).
pub fn load_attribute_heads(
    site_dir: &Path,
    manifest: &SiteManifest,
) -> Result<Vec<lookalike_index::LabelHead>> {
    let Some(path) = &manifest.attributes else { return Ok(Vec::new()) };
    let path = site_dir.join(path);
    let bytes = std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
    Ok(lookalike_index::LabelHead::list_from_json(&bytes, &path.display().to_string())?)
}

fn eval(args: EvalArgs) -> Result<()> {
    let (index, manifest) = load_site(&args.site)?;
    let labels = column_values(&manifest, &args.label);
    if labels.iter().all(Option::is_none) {
        bail!("no product of {} has a value in column '{}'", args.site.display(), args.label);
    }
    let report = evaluate(&index, &labels, &args.label, args.k, args.search_k);
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        println!(
            "{} products, k={}: precision@{} of same {} {:.3} (exact search {:.3}); recall vs exact {:.3}",
            report.n,
            report.k,
            report.k,
            report.label,
            report.precision_at_k,
            report.exact_precision_at_k,
            report.recall_vs_exact
        );
        if let Some(blended) = report.blended_precision_at_k {
            println!(
                "with the site's default blend of colour and learned parts: precision@{} {blended:.3}",
                report.k
            );
        }
    }
    Ok(())
}
