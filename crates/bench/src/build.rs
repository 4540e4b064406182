//! `lookalike bench build`: where the time of a build goes, on the shared
//! fashion catalog: decoding and pad-resizing, embedding, and both together
//! (the build's own pipeline, caches off). The embedder's FLOP/s is set
//! against a large matrix multiplication on the same backend in the same run:
//! the practical ceiling of this machine for this code.

use anyhow::Result;
use burn::tensor::{Device, Tensor, TensorData};
use lookalike::catalog::Columns;
use lookalike::fetch::{FetchOptions, Fetcher};
use lookalike::site_builder::{EmbedJob, embed_catalog, read_catalog};
use lookalike_vision::model::{EfficientNetLite, Embedder, weights};
use lookalike_vision::preprocess::{self, EMBED_INPUT_SIZE};
use rayon::prelude::*;
use std::path::PathBuf;
use std::time::Instant;

pub struct BuildBenchOptions {
    pub quick: bool,
    pub json: bool,
    pub data_dir: PathBuf,
    pub cache_dir: PathBuf,
    pub model: PathBuf,
}

pub fn run(options: &BuildBenchOptions) -> Result<()> {
    let catalog_path = options.data_dir.join("fashion-product-images/labels.csv");
    let columns =
        Columns { id: Some("product_id".into()), image: Some("file".into()), label: None };
    let mut catalog = read_catalog(&catalog_path, &columns)?;
    catalog.products.truncate(if options.quick { 256 } else { catalog.products.len() });
    let n = catalog.products.len();
    let catalog_dir = catalog_path.parent().expect("file in a folder");
    let device = Device::flex();
    let embedder = Embedder::new(weights::from_file(&options.model, &device)?, device.clone());
    let batch_size = 16;

    // 1. Read + decode + pad-resize + normalise, on all cores.
    let started = Instant::now();
    let inputs: Vec<Vec<f32>> = catalog
        .products
        .par_iter()
        .map(|p| {
            let bytes = std::fs::read(catalog_dir.join(&p.image)).expect("shared data is readable");
            preprocess::model_input(&preprocess::decode(&bytes).expect("shared data decodes"))
        })
        .collect();
    let decode_per_s = n as f64 / started.elapsed().as_secs_f64();

    // 2. Embedding alone, on prepared inputs: batched with Flex's own threads
    //    (the reference), then one image per lane, a lane per core (the build's way).
    let started = Instant::now();
    for batch in inputs.chunks(batch_size) {
        embedder.embed_batch(batch)?;
    }
    let batched_per_s = n as f64 / started.elapsed().as_secs_f64();
    let lanes = std::thread::available_parallelism().map_or(1, |n| n.get());
    let started = Instant::now();
    for batch in inputs.chunks(batch_size) {
        embedder.embed_lanes(batch, lanes)?;
    }
    let embed_per_s = n as f64 / started.elapsed().as_secs_f64();
    let flops_per_image =
        EfficientNetLite::feature_flops(embedder.model().variant(), EMBED_INPUT_SIZE as usize)
            as f64;
    let embed_gflops = flops_per_image * embed_per_s / 1e9;

    // 3. The build's pipeline end to end, without its caches.
    let fetcher = Fetcher::new(FetchOptions::new(options.cache_dir.join("images")));
    let job = EmbedJob {
        catalog_dir,
        fetcher: &fetcher,
        embedder: &embedder,
        cache: None,
        thumbnails: None,
        batch_size,
        crops: &lookalike::crops::CropMode::Whole,
    };
    let started = Instant::now();
    embed_catalog(&catalog, &job)?;
    let end_to_end_per_s = n as f64 / started.elapsed().as_secs_f64();

    // The reference: a 1024 x 1024 matmul on the same backend.
    let matmul_gflops = matmul_gflops(&device);

    let report = serde_json::json!({
        "images": n,
        "decode_resize_images_per_s": decode_per_s,
        "embed_images_per_s": embed_per_s,
        "embed_batched_images_per_s": batched_per_s,
        "end_to_end_images_per_s": end_to_end_per_s,
        "embedder_gflop_per_image": flops_per_image / 1e9,
        "embedder_gflops": embed_gflops,
        "matmul_gflops": matmul_gflops,
        "embedder_fraction_of_matmul": embed_gflops / matmul_gflops,
        "decode_share_of_end_to_end": end_to_end_per_s / decode_per_s,
    });
    if options.json {
        println!("{report}");
    } else {
        println!("{n} images of the fashion catalog, {} threads", rayon::current_num_threads());
        println!("  decode + pad-resize: {decode_per_s:>8.1} images/s");
        println!(
            "  embedding, batches of {batch_size} on Flex's threads: {batched_per_s:>8.1} images/s (reference)"
        );
        println!(
            "  embedding, {lanes} lanes of one image: {embed_per_s:>8.1} images/s = {:.2}x  ({:.2} GFLOP each, {embed_gflops:.1} GFLOP/s)",
            embed_per_s / batched_per_s,
            flops_per_image / 1e9
        );
        println!("  end to end:          {end_to_end_per_s:>8.1} images/s");
        println!(
            "  reference: 1024x1024 matmul on the same backend {matmul_gflops:.1} GFLOP/s; the embedder reaches {:.0}% of it",
            100.0 * embed_gflops / matmul_gflops
        );
    }
    Ok(())
}

fn matmul_gflops(device: &Device) -> f64 {
    let n = 1024;
    let data = |seed: f32| {
        TensorData::new(
            (0..n * n).map(|i| ((i as f32 * seed) % 1.0) - 0.5).collect::<Vec<f32>>(),
            [n, n],
        )
    };
    let a: Tensor<2> = Tensor::from_data(data(0.37), device);
    let b: Tensor<2> = Tensor::from_data(data(0.61), device);
    let _ = a.clone().matmul(b.clone()).into_data(); // warm up
    let rounds = 5;
    let started = Instant::now();
    for _ in 0..rounds {
        let _ = a.clone().matmul(b.clone()).into_data();
    }
    2.0 * (n * n * n) as f64 * rounds as f64 / started.elapsed().as_secs_f64() / 1e9
}
