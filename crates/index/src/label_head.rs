//! A small classifier on top of the embedder: names a crop with one of a
//! catalog's labels (e.g. articleType) and a confidence.
//!
//! It is a softmax regression over L2-normalised embeddings: the embeddings
//! already separate kinds of products well (same-articleType precision@10 is
//! about 0.67), so a linear head is enough and stays tiny (20 labels x 1280
//! weights), trains in seconds natively and runs in microseconds anywhere.
//! Saved as JSON, so it is readable and loads the same in the browser.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct LabelHead {
    /// The catalog column the labels came from (e.g. `articleType`).
    pub column: String,
    pub labels: Vec<String>,
    pub feature_dim: usize,
    /// `labels.len()` rows of `feature_dim` weights.
    #[serde(serialize_with = "four_decimals")]
    pub weights: Vec<f32>,
    #[serde(serialize_with = "four_decimals")]
    pub bias: Vec<f32>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Prediction {
    pub label: String,
    pub confidence: f32,
}

#[derive(Debug, thiserror::Error)]
pub enum LabelHeadError {
    #[error("{source_name}: not a label head: {message}")]
    Parse { source_name: String, message: String },
    #[error("{source_name}: {message}")]
    Shape { source_name: String, message: String },
}

impl LabelHead {
    /// Parses and checks a saved head.
    pub fn from_json(bytes: &[u8], source_name: &str) -> Result<Self, LabelHeadError> {
        let head: LabelHead = serde_json::from_slice(bytes).map_err(|e| LabelHeadError::Parse {
            source_name: source_name.to_string(),
            message: e.to_string(),
        })?;
        head.check(source_name)
    }

    /// Parses and checks a JSON array of heads (a site's learned attributes).
    pub fn list_from_json(bytes: &[u8], source_name: &str) -> Result<Vec<Self>, LabelHeadError> {
        let heads: Vec<LabelHead> = serde_json::from_slice(bytes).map_err(|e| {
            LabelHeadError::Parse { source_name: source_name.to_string(), message: e.to_string() }
        })?;
        heads.into_iter().map(|h| h.check(source_name)).collect()
    }

    /// Checks that the head takes inputs of `width` values (an embedding of
    /// this embedder, with its colour signature for attribute heads): a head
    /// saved for another model is refused before it is used.
    pub fn check_input_width(&self, width: usize, source_name: &str) -> Result<(), LabelHeadError> {
        if self.feature_dim == width {
            return Ok(());
        }
        Err(LabelHeadError::Shape {
            source_name: source_name.to_string(),
            message: format!(
                "{} takes {} values per item, this model gives {width}",
                self.column, self.feature_dim
            ),
        })
    }

    fn check(self, source_name: &str) -> Result<Self, LabelHeadError> {
        let classes = self.labels.len();
        let weights = classes.checked_mul(self.feature_dim);
        let finite = self.weights.iter().chain(&self.bias).all(|v| v.is_finite());
        if classes == 0
            || self.feature_dim == 0
            || weights != Some(self.weights.len())
            || self.bias.len() != classes
            || !finite
        {
            return Err(LabelHeadError::Shape {
                source_name: source_name.to_string(),
                message: format!(
                    "{} ({classes} labels of {} values) needs {} finite weights and {classes} biases; found {} and {}",
                    self.column,
                    self.feature_dim,
                    classes.saturating_mul(self.feature_dim),
                    self.weights.len(),
                    self.bias.len()
                ),
            });
        }
        Ok(self)
    }

    /// Class probabilities for one embedding (any scale; it is normalised).
    pub fn probabilities(&self, embedding: &[f32]) -> Vec<f32> {
        assert_eq!(embedding.len(), self.feature_dim, "embedding width");
        self.probabilities_of_unit(&normalized(embedding))
    }

    /// As [`Self::probabilities`], for an embedding already of unit length.
    fn probabilities_of_unit(&self, x: &[f32]) -> Vec<f32> {
        let logits: Vec<f32> = self
            .weights
            .chunks_exact(self.feature_dim)
            .zip(&self.bias)
            .map(|(w, b)| w.iter().zip(x).map(|(w, x)| w * x).sum::<f32>() + b)
            .collect();
        softmax(&logits)
    }

    /// The most likely label.
    pub fn predict(&self, embedding: &[f32]) -> Prediction {
        let p = self.probabilities(embedding);
        let (best, &confidence) =
            p.iter().enumerate().max_by(|a, b| a.1.total_cmp(b.1)).expect("at least one label");
        Prediction { label: self.labels[best].clone(), confidence }
    }
}

/// Writes parameters rounded to 4 decimals: the saved head ships to the
/// browser, and full f32 digits would make it 40% larger for changes of the
/// logits below 0.002 (rows hold unit vectors, so a logit moves by at most
/// 0.00005 times the square root of the row's width).
fn four_decimals<S: serde::Serializer>(values: &[f32], serializer: S) -> Result<S::Ok, S::Error> {
    use serde::ser::SerializeSeq;
    let mut seq = serializer.serialize_seq(Some(values.len()))?;
    for v in values {
        seq.serialize_element(&((v * 1e4).round() / 1e4))?;
    }
    seq.end()
}

pub fn normalized(v: &[f32]) -> Vec<f32> {
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-12);
    v.iter().map(|x| x / norm).collect()
}

pub fn softmax(logits: &[f32]) -> Vec<f32> {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let exp: Vec<f32> = logits.iter().map(|l| (l - max).exp()).collect();
    let total: f32 = exp.iter().sum();
    exp.into_iter().map(|e| e / total).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_mismatched_file_is_a_named_error() {
        let err = LabelHead::from_json(
            br#"{"column":"t","labels":["a"],"feature_dim":4,"weights":[1],"bias":[0]}"#,
            "h.json",
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("h.json") && err.contains("4 finite weights"), "{err}");
    }
}
