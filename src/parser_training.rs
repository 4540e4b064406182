//! `lookalike train-parser`: the garment parser's head trained on Clothing
//! Co-Parsing (CCP) street photos and their per-pixel labels.
//!
//! The backbone is the embedder, frozen, so its feature pyramid of every
//! photo is computed once and cached (`$LOOKALIKE_CACHE/parser-features/`,
//! keyed by the backbone's and the photos' bytes); training then only runs
//! the head. Photos are split by their group id's hash, so a photo is on
//! the same side of the split in every run and whatever photos are added.

use crate::fsutil::write_atomic;
use crate::progress::Progress;
use anyhow::{Context, Result, bail};
use burn::tensor::{Device, Tensor, TensorData};
use image::GenericImageView;
use lookalike_vision::model::{EfficientNetLite, weights};
use lookalike_vision::parse::train::{Sample, Shapes, TrainOptions, TrainReport, train};
use lookalike_vision::parse::{Parser, Part, head_to_burnpack_bytes, input_size};
use lookalike_vision::preprocess::{decode, resize_rgb, to_model_input};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};

/// Photos whose group id hashes into this share are the validation split.
const VALIDATION_PERCENT: u64 = 20;
/// CCP photos are 550 wide and 810 to 842 high; all are resized to the
/// input size of the most common (550 x 825), so features stack.
const TRAINING_PHOTO: (u32, u32) = (550, 825);

/// Whether a photo (by its group id) is held out of training.
pub fn is_validation(group_id: &str) -> bool {
    // FNV-1a: stable across runs, platforms and Rust versions.
    let hash = group_id
        .bytes()
        .fold(0xcbf29ce484222325u64, |h, b| (h ^ b as u64).wrapping_mul(0x100000001b3));
    hash % 100 < VALIDATION_PERCENT
}

/// One CCP photo: its image, its label map and its group.
#[derive(Debug, Clone)]
pub struct CcpPhoto {
    pub file: PathBuf,
    pub mask: PathBuf,
    pub group_id: String,
}

/// The photos of a CCP folder (`labels.csv`: file, group_id, mask) and the
/// class of every label id (`label_names.csv`).
pub fn read_ccp(dir: &Path) -> Result<(Vec<CcpPhoto>, Vec<Part>)> {
    let names = dir.join("label_names.csv");
    let mut classes = Vec::new();
    let mut reader =
        csv::Reader::from_path(&names).with_context(|| format!("reading {}", names.display()))?;
    for (line, record) in reader.records().enumerate() {
        let record = record.with_context(|| format!("{}: line {}", names.display(), line + 2))?;
        let (id, label) = (record.get(0).unwrap_or_default(), record.get(1).unwrap_or_default());
        let id: usize = id
            .parse()
            .with_context(|| format!("{}: line {}: label_id `{id}`", names.display(), line + 2))?;
        let part = Part::from_ccp_label(label).with_context(|| {
            format!("{}: line {}: unknown label `{label}`", names.display(), line + 2)
        })?;
        if id != classes.len() {
            bail!("{}: line {}: label ids must count up from 0", names.display(), line + 2);
        }
        classes.push(part);
    }
    let labels = dir.join("labels.csv");
    let mut reader =
        csv::Reader::from_path(&labels).with_context(|| format!("reading {}", labels.display()))?;
    let headers = reader.headers()?.clone();
    let column = |name: &str| {
        headers
            .iter()
            .position(|h| h == name)
            .with_context(|| format!("{}: no `{name}` column", labels.display()))
    };
    let (file, group, mask) = (column("file")?, column("group_id")?, column("mask")?);
    let mut photos = Vec::new();
    for (line, record) in reader.records().enumerate() {
        let record = record.with_context(|| format!("{}: line {}", labels.display(), line + 2))?;
        let field = |i: usize| record.get(i).unwrap_or_default();
        for relative in [field(file), field(mask)] {
            if Path::new(relative).is_absolute() || relative.split(['/', '\\']).any(|p| p == "..") {
                bail!("{}: line {}: `{relative}` leaves the folder", labels.display(), line + 2);
            }
        }
        photos.push(CcpPhoto {
            file: dir.join(field(file)),
            mask: dir.join(field(mask)),
            group_id: field(group).to_string(),
        });
    }
    Ok((photos, classes))
}

/// A photo's and its mask's bytes, read once: for the data's hash, the
/// feature cache's key, the features and the targets.
struct Read<'a> {
    photo: &'a CcpPhoto,
    image: Vec<u8>,
    /// SHA-256 of `image`.
    digest: [u8; 32],
    mask: Vec<u8>,
}

impl<'a> Read<'a> {
    fn new(photo: &'a CcpPhoto) -> Result<Self> {
        let read = |path: &Path| {
            std::fs::read(path).with_context(|| format!("reading {}", path.display()))
        };
        let image = read(&photo.file)?;
        let digest = Sha256::digest(&image).into();
        Ok(Self { photo, image, digest, mask: read(&photo.mask)? })
    }
}

/// The soft target of one photo (mirrored when `flip`): each stride-8
/// cell's share of every class.
fn target(read: &Read, classes: &[Part], grid: [usize; 2], flip: bool) -> Result<Vec<f32>> {
    let path = &read.photo.mask;
    let mask = decode(&read.mask).with_context(|| format!("decoding {}", path.display()))?;
    let (w, h) = mask.dimensions();
    let mask = mask.to_luma8();
    let [gh, gw] = grid;
    let mut counts = vec![0.0f32; Part::COUNT * gh * gw];
    for (x, y, label) in mask.enumerate_pixels() {
        let part = classes.get(label.0[0] as usize).with_context(|| {
            format!(
                "{}: pixel ({x}, {y}) has label {}, not in label_names.csv",
                path.display(),
                label.0[0]
            )
        })?;
        let x = if flip { w - 1 - x } else { x };
        let cell = (y as usize * gh / h as usize) * gw + x as usize * gw / w as usize;
        counts[part.index() * gh * gw + cell] += 1.0;
    }
    for cell in 0..gh * gw {
        let total: f32 = (0..Part::COUNT).map(|c| counts[c * gh * gw + cell]).sum();
        for c in 0..Part::COUNT {
            counts[c * gh * gw + cell] /= total.max(1.0);
        }
    }
    Ok(counts)
}

/// The pyramid's shapes for the training input.
fn shapes(backbone: &EfficientNetLite) -> Shapes {
    let (w, h) = input_size(TRAINING_PHOTO.0, TRAINING_PHOTO.1);
    let (w, h) = (w as usize, h as usize);
    Shapes {
        channels: Parser::head_channels(backbone),
        grids: [[h / 8, w / 8], [h / 16, w / 16], [h / 32, w / 32], [h / 32, w / 32]],
    }
}

/// The backbone's pyramid of one photo (mirrored when `flip`), resized to
/// the training input.
fn pyramid(
    backbone: &EfficientNetLite,
    read: &Read,
    flip: bool,
    device: &Device,
) -> Result<[Vec<f32>; 4]> {
    let path = &read.photo.file;
    let image = decode(&read.image).with_context(|| format!("decoding {}", path.display()))?;
    let image = image.to_rgb8();
    let (w, h) = input_size(TRAINING_PHOTO.0, TRAINING_PHOTO.1);
    let mut resized = resize_rgb(&image, w, h);
    if flip {
        image::imageops::flip_horizontal_in_place(&mut resized);
    }
    let input = to_model_input(&resized);
    let x: Tensor<4> =
        Tensor::from_data(TensorData::new(input, [1, 3, h as usize, w as usize]), device);
    let maps = backbone.pyramid(x);
    let read = |t: Tensor<4>| -> Result<Vec<f32>> {
        t.into_data()
            .convert::<f32>()
            .try_into_vec::<f32>()
            .map_err(|e| anyhow::anyhow!("reading features: {e:?}"))
    };
    Ok([read(maps.s8)?, read(maps.s16)?, read(maps.s32)?, read(maps.head)?])
}

/// Every job's pyramid (a photo, mirrored or not), from the cache when the
/// backbone and the photos are the ones it was computed from; computed on
/// every core otherwise.
fn pyramids(
    backbone: &EfficientNetLite,
    backbone_hash: &str,
    jobs: &[(&Read, bool)],
    cache_dir: &Path,
) -> Result<Vec<[Vec<f32>; 4]>> {
    use rayon::prelude::*;
    let shapes = shapes(backbone);
    let mut key = Sha256::new();
    key.update(backbone_hash.as_bytes());
    key.update(format!("{shapes:?}"));
    for (read, flip) in jobs {
        key.update(read.digest);
        key.update([*flip as u8]);
    }
    let key = format!("{:x}", key.finalize());
    let path = cache_dir.join("parser-features").join(format!("{}.f16", &key[..16]));
    let sizes: Vec<usize> =
        (0..4).map(|l| shapes.channels[l] * shapes.grids[l][0] * shapes.grids[l][1]).collect();
    let per_photo: usize = sizes.iter().sum();
    if let Ok(bytes) = std::fs::read(&path)
        && bytes.len() == jobs.len() * per_photo * 2
    {
        eprintln!("backbone features: from {}", path.display());
        // Decoded photo by photo: CCP's features take a gigabyte as f32,
        // and a whole decoded copy beside the split one doubled the peak.
        let level = |bytes: &[u8]| -> Vec<f32> {
            bytes.chunks_exact(2).map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32()).collect()
        };
        return Ok(bytes
            .chunks_exact(per_photo * 2)
            .map(|p| {
                let (a, rest) = p.split_at(sizes[0] * 2);
                let (b, rest) = rest.split_at(sizes[1] * 2);
                let (c, d) = rest.split_at(sizes[2] * 2);
                [level(a), level(b), level(c), level(d)]
            })
            .collect());
    }
    let progress = std::sync::Mutex::new(Progress::new("backbone features", jobs.len()));
    let device = Device::flex();
    // One photo per core, each on a one-thread pool (as the embedder's lanes).
    let lanes = rayon::current_num_threads();
    let pool = rayon::ThreadPoolBuilder::new().num_threads(lanes).build()?;
    let computed: Vec<[Vec<f32>; 4]> = pool.install(|| {
        jobs.par_iter()
            .map(|(read, flip)| {
                let maps = pyramid(backbone, read, *flip, &device);
                progress.lock().expect("progress lock").advance(1);
                maps
            })
            .collect::<Result<_>>()
    })?;
    progress.into_inner().expect("progress lock").finish();
    let mut bytes = Vec::with_capacity(jobs.len() * per_photo * 2);
    for maps in &computed {
        for v in maps.iter().flatten() {
            bytes.extend_from_slice(&half::f16::from_f32(*v).to_le_bytes());
        }
    }
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("creating {}", parent.display()))?;
    }
    write_atomic(&path, &bytes).with_context(|| format!("writing {}", path.display()))?;
    // The cached (f16) values, so a run from the cache trains on the same numbers.
    Ok(computed
        .into_iter()
        .map(|maps| maps.map(|m| m.into_iter().map(|v| half::f16::from_f32(v).to_f32()).collect()))
        .collect())
}

pub struct TrainParserArgs {
    pub data: PathBuf,
    pub out: PathBuf,
    pub backbone: PathBuf,
    pub cache_dir: PathBuf,
    pub options: TrainOptions,
    /// Train on at most this many photos of each split (tests, quick runs).
    pub limit: Option<usize>,
    /// Train on only the first this many photos of the training split, and
    /// validate on the whole validation split: a point of the learning
    /// curve (`bench parser-curve`). The backbone's features of every photo
    /// are still computed, so every point reads the same cache.
    pub training_photos: Option<usize>,
}

/// What `train-parser` writes next to the head's record (`parser.json`):
/// how it was made and how well it did.
#[derive(Debug, serde::Serialize)]
pub struct ParserProvenance {
    pub command: String,
    pub classes: Vec<&'static str>,
    pub backbone_sha256: String,
    /// SHA-256 over every photo and mask trained or validated on, in order.
    pub data_sha256: String,
    pub training_photos: usize,
    pub validation_photos: usize,
    pub seed: u64,
    pub epochs: usize,
    pub report: TrainReport,
}

pub fn train_parser(args: &TrainParserArgs) -> Result<ParserProvenance> {
    let (photos, classes) = read_ccp(&args.data)?;
    let (mut validation, mut training): (Vec<CcpPhoto>, Vec<CcpPhoto>) =
        photos.into_iter().partition(|p| is_validation(&p.group_id));
    if let Some(limit) = args.limit {
        training.truncate(limit);
        validation.truncate(limit.div_ceil(4));
    }
    if training.is_empty() || validation.is_empty() {
        bail!("{}: too few photos to train and validate", args.data.display());
    }
    let trained_on = match args.training_photos {
        None => training.len(),
        Some(n) if (1..=training.len()).contains(&n) => n,
        Some(n) => bail!(
            "--training-photos {n}: the training split of {} has 1 to {} photos",
            args.data.display(),
            training.len()
        ),
    };
    let device = Device::flex();
    let backbone_bytes = std::fs::read(&args.backbone)
        .with_context(|| format!("reading {}", args.backbone.display()))?;
    let backbone = weights::from_file_bytes(&args.backbone, &backbone_bytes, &device)?;
    let backbone_hash = format!("{:x}", Sha256::digest(&backbone_bytes));
    let shapes = shapes(&backbone);
    // Training photos are seen as they are and mirrored (a garment's
    // left and right are alike); validation photos as they are.
    let read: Vec<Read> =
        training.iter().chain(&validation).map(Read::new).collect::<Result<_>>()?;
    let (read_training, read_validation) = read.split_at(training.len());
    let jobs: Vec<(&Read, bool)> = read_training
        .iter()
        .flat_map(|r| [(r, false), (r, true)])
        .chain(read_validation.iter().map(|r| (r, false)))
        .collect();
    let features = pyramids(&backbone, &backbone_hash, &jobs, &args.cache_dir)?;
    let mut samples = Vec::with_capacity(jobs.len());
    for ((r, flip), pyramid) in jobs.iter().zip(features) {
        samples.push(Sample { pyramid, target: target(r, &classes, shapes.grids[0], *flip)? });
    }
    let validation_samples = samples.split_off(2 * training.len());
    samples.truncate(2 * trained_on);
    let mut data_hash = Sha256::new();
    for r in read_training[..trained_on].iter().chain(read_validation) {
        data_hash.update(&r.image);
        data_hash.update(&r.mask);
    }
    eprintln!(
        "training the parser's head on {} photos, each also mirrored ({} held out for validation), {} epochs",
        trained_on,
        validation_samples.len(),
        args.options.epochs
    );
    let started = std::time::Instant::now();
    let (head, report) = train(
        &samples,
        &validation_samples,
        &shapes,
        &args.options,
        &mut |epoch| {
            eprintln!(
                "epoch {:>3}/{}: training loss {:.4}, validation loss {:.4}, item IoU {:.3} ({:.0} s)",
                epoch.epoch,
                args.options.epochs,
                epoch.train_loss,
                epoch.validation_loss,
                epoch.validation_item_iou,
                started.elapsed().as_secs_f64()
            );
        },
    );
    let bytes = head_to_burnpack_bytes(&head, &args.out.display().to_string())?;
    if let Some(parent) = args.out.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("creating {}", parent.display()))?;
    }
    let provenance = ParserProvenance {
        command: format!(
            "lookalike train-parser --data <ccp-street-fashion> --epochs {} --seed {}{}",
            args.options.epochs,
            args.options.seed,
            args.training_photos.map(|n| format!(" --training-photos {n}")).unwrap_or_default()
        ),
        classes: Part::ALL.iter().map(|p| p.name()).collect(),
        backbone_sha256: backbone_hash,
        data_sha256: format!("{:x}", data_hash.finalize()),
        training_photos: trained_on,
        validation_photos: validation_samples.len(),
        seed: args.options.seed,
        epochs: args.options.epochs,
        report,
    };
    write_atomic(&args.out, &bytes).with_context(|| format!("writing {}", args.out.display()))?;
    let sidecar = args.out.with_extension("json");
    write_atomic(&sidecar, serde_json::to_string_pretty(&provenance)?.as_bytes())
        .with_context(|| format!("writing {}", sidecar.display()))?;
    eprintln!("wrote {} and {}", args.out.display(), sidecar.display());
    Ok(provenance)
}
