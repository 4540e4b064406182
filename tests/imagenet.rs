//! The converted weights are the real ImageNet weights: the classifier head
//! recognises a cat and a cup, and the shipped record (no head) gives the
//! same features as the checkpoint.

mod common;

use burn::tensor::Device;
use lookalike_vision::model::{Embedder, weights};
use lookalike_vision::preprocess;

fn top5(logits: &[f32]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..logits.len()).collect();
    order.sort_by(|&a, &b| logits[b].total_cmp(&logits[a]));
    order.truncate(5);
    order
}

fn input(name: &str) -> Vec<f32> {
    let bytes = std::fs::read(common::fixture(name)).unwrap();
    preprocess::model_input(&preprocess::decode(&bytes).unwrap())
}

#[test]
fn imagenet_head_recognises_a_cat_and_a_cup() {
    let device = Device::flex();
    let model = weights::from_pytorch_file(&common::pytorch_weights(), &device).unwrap();
    let embedder = Embedder::new(model, device);
    let logits =
        embedder.classify_batch(&[input("chelsea.png"), input("coffee.png")]).unwrap().unwrap();

    // 281 tabby, 282 tiger cat, 283 Persian, 284 Siamese, 285 Egyptian cat.
    let cat = top5(&logits[0]);
    assert!((281..=285).contains(&cat[0]), "chelsea top-5 {cat:?}");
    // 504 coffee mug, 967 espresso, 968 cup.
    let cup = top5(&logits[1]);
    assert!([504, 967, 968].contains(&cup[0]), "coffee top-5 {cup:?}");
}

#[test]
fn shipped_record_matches_the_checkpoint() {
    let device = Device::flex();
    let full = Embedder::new(
        weights::from_pytorch_file(&common::pytorch_weights(), &device).unwrap(),
        device.clone(),
    );
    let shipped =
        Embedder::new(weights::from_file(&common::burnpack_weights(), &device).unwrap(), device);
    assert!(!shipped.model().has_classifier());
    let x = input("chelsea.png");
    let a = full.embed_batch(std::slice::from_ref(&x)).unwrap().remove(0);
    let b = shipped.embed_batch(&[x]).unwrap().remove(0);
    assert_eq!(a.len(), 1280);
    let max_diff = a.iter().zip(&b).map(|(x, y)| (x - y).abs()).fold(0.0f32, f32::max);
    assert!(max_diff < 1e-5, "features differ by {max_diff}");
}

#[test]
fn weights_for_another_network_are_refused() {
    let device = Device::flex();
    let dir = std::env::temp_dir().join(format!("lookalike-badweights-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let bogus = dir.join("bogus.bpk");
    std::fs::write(&bogus, b"this is not a burnpack record").unwrap();
    let err = weights::from_file(&bogus, &device).unwrap_err().to_string();
    assert!(err.contains("bogus.bpk"), "{err}");
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn lanes_give_the_same_vectors_as_a_batch() {
    let device = Device::flex();
    let embedder =
        Embedder::new(weights::from_file(&common::burnpack_weights(), &device).unwrap(), device);
    let images = common::data_dir().join("fashion-product-images/images");
    let inputs: Vec<Vec<f32>> = ["1563", "1580", "10049", "10082", "10106"]
        .iter()
        .map(|id| {
            preprocess::model_input(
                &preprocess::decode(&std::fs::read(images.join(format!("{id}.jpg"))).unwrap())
                    .unwrap(),
            )
        })
        .collect();
    let batched = embedder.embed_batch(&inputs).unwrap();
    let laned = embedder.embed_lanes(&inputs, 2).unwrap();
    assert_eq!(batched.len(), laned.len());
    for (a, b) in batched.iter().zip(&laned) {
        let max_diff = a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0f32, f32::max);
        assert!(max_diff < 1e-3, "lanes differ from the batch by {max_diff}");
    }
}
