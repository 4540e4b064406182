//! `lookalike train-labels`: fits the label head on a labelled catalog's
//! embeddings and measures it on products it did not train on.

use crate::catalog::Product;
use anyhow::{Context, Result, bail};
use lookalike_index::LabelHead;
use lookalike_vision::model::FEATURE_DIM;
use lookalike_vision::model::label_head;
use std::collections::HashMap;
use std::path::Path;

/// A label head record (`train-labels`' JSON), read and checked: a head
/// for another embedder fails here, not after the embedding.
pub fn read_label_head(path: &Path) -> Result<LabelHead> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let source = path.display().to_string();
    let head = LabelHead::from_json(&bytes, &source)?;
    head.check_input_width(FEATURE_DIM, &source)?;
    Ok(head)
}

/// Full passes over the training set; the loss has flattened well before.
pub const EPOCHS: usize = 150;

pub struct Trained {
    pub head: LabelHead,
    /// Top-1 accuracy on the held-out products.
    pub accuracy: f64,
    /// The reference: always answering the most frequent label (labels are
    /// numbered by frequency, so label 0), on the same held-out products.
    pub majority_accuracy: f64,
    pub trained_on: usize,
    pub tested_on: usize,
}

/// A product's label (the catalog was read with `column` as its label column).
fn label_of(product: &Product) -> Option<&str> {
    product.label.as_deref().filter(|s| !s.is_empty())
}

/// Whether a product is held out: a hash of its id, so the split is stable
/// across runs and machines and independent of catalog order.
pub fn held_out(id: &str, share: f64) -> bool {
    (stable_hash(id) % 10_000) as f64 / 10_000.0 < share
}

/// FNV-1a of an id: the same on every run and machine.
pub fn stable_hash(id: &str) -> u64 {
    id.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ b as u64).wrapping_mul(0x100_0000_01b3))
}

/// Trains on the products of the `top` most frequent labels (others are left
/// out: too rare to learn), holding `holdout` of them out. `column` names the
/// catalog column the labels were read from.
pub fn train_labels(
    products: &[Product],
    vectors: &[f32],
    column: &str,
    top: usize,
    holdout: f64,
) -> Result<Trained> {
    let mut counts: HashMap<&str, usize> = HashMap::new();
    for p in products {
        if let Some(v) = label_of(p) {
            *counts.entry(v).or_default() += 1;
        }
    }
    let mut frequent: Vec<(&str, usize)> = counts.into_iter().collect();
    frequent.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
    frequent.truncate(top);
    if frequent.len() < 2 {
        bail!("column `{column}` has fewer than two distinct values; nothing to learn");
    }
    let labels: Vec<String> = frequent.iter().map(|(l, _)| l.to_string()).collect();
    let number: HashMap<&str, usize> =
        frequent.iter().enumerate().map(|(i, (l, _))| (*l, i)).collect();
    let (mut train_rows, mut train_targets, mut test_rows, mut test_targets) =
        (vec![], vec![], vec![], vec![]);
    for (p, v) in products.iter().zip(vectors.chunks_exact(FEATURE_DIM)) {
        let Some(&t) = label_of(p).and_then(|l| number.get(l)) else { continue };
        if held_out(&p.id, holdout) {
            test_rows.push(v.to_vec());
            test_targets.push(t);
        } else {
            train_rows.push(v.to_vec());
            train_targets.push(t);
        }
    }
    if train_rows.is_empty() {
        bail!("no product left to train on");
    }
    let head = label_head::train(column, labels, &train_rows, &train_targets, EPOCHS);
    let correct = test_rows
        .iter()
        .zip(&test_targets)
        .filter(|&(r, &t)| head.predict(r).label == head.labels[t])
        .count();
    let tested = test_rows.len().max(1) as f64;
    Ok(Trained {
        accuracy: correct as f64 / tested,
        majority_accuracy: test_targets.iter().filter(|&&t| t == 0).count() as f64 / tested,
        trained_on: train_rows.len(),
        tested_on: test_rows.len(),
        head,
    })
}
