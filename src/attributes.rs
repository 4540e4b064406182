//! Learning a catalog's attributes at build time (`build --learn COLUMN=W`):
//! a softmax head per column, over each item's embedding and colour
//! signature, whose probabilities become a part of the item's appearance
//! (see [`lookalike_index::appearance`]). The catalog's labels are used here, once;
//! a query's attributes are predicted from its pixels.

use crate::catalog::{Product, metadata_value};
use anyhow::{Result, bail};
use lookalike_index::LabelHead;
use lookalike_index::appearance::{AppearanceError, COLOUR, VISUAL, head_input};
use lookalike_vision::colour::signature_row;
use lookalike_vision::model::FEATURE_DIM;
use lookalike_vision::model::label_head;
use std::collections::HashMap;

/// A value needs this many products to be learned; rarer ones are left out
/// (their products still get probabilities over the learned values).
pub const MIN_EXAMPLES: usize = 5;
/// Full passes over the catalog; the loss has flattened well before.
pub const EPOCHS: usize = 150;
/// Weight of an attribute given without one (`--learn articleType`).
pub const DEFAULT_WEIGHT: f32 = 0.25;

/// A column to learn and the default weight of its part.
#[derive(Debug, Clone, PartialEq)]
pub struct LearnSpec {
    pub column: String,
    pub weight: f32,
}

/// Parses `COLUMN` or `COLUMN=WEIGHT`. `visual` and `colour` name the
/// embedding and the colour signature, so they cannot name a learned part.
pub fn parse_learn(text: &str) -> Result<LearnSpec, String> {
    let spec = match text.split_once('=') {
        None => LearnSpec { column: text.trim().to_string(), weight: DEFAULT_WEIGHT },
        Some(_) => {
            let (column, weight) =
                lookalike_index::appearance::parse_weight(text).map_err(|e| e.to_string())?;
            LearnSpec { column, weight }
        }
    };
    if [VISUAL, COLOUR].contains(&spec.column.as_str()) {
        return Err(format!(
            "`{}` names a built-in part of the similarity; rename the catalog column to learn it",
            spec.column
        ));
    }
    if !spec.weight.is_finite() || spec.weight < 0.0 {
        return Err(
            AppearanceError::BadWeight { name: spec.column, weight: spec.weight }.to_string()
        );
    }
    Ok(spec)
}

/// A product's value of `column`: its label when that is the label column,
/// else the metadata field (empty means none).
pub fn value_of(product: &Product, column: &str, label_column: Option<&str>) -> Option<String> {
    if label_column == Some(column) {
        return product.label.clone().filter(|s| !s.is_empty());
    }
    metadata_value(&product.metadata, column)
}

/// Whether `values` hold at least two values with [`MIN_EXAMPLES`]+ items;
/// else an error naming `column`.
pub fn check_learnable<'a>(
    column: &str,
    values: impl Iterator<Item = Option<&'a str>>,
) -> Result<Vec<&'a str>> {
    let mut counts: HashMap<&str, usize> = HashMap::new();
    for v in values.flatten() {
        *counts.entry(v).or_default() += 1;
    }
    let mut learned: Vec<&str> =
        counts.iter().filter(|(_, n)| **n >= MIN_EXAMPLES).map(|(v, _)| *v).collect();
    learned.sort_unstable();
    if learned.len() < 2 {
        bail!(
            "column `{column}` has fewer than two values with {MIN_EXAMPLES}+ products; nothing to learn"
        );
    }
    Ok(learned)
}

/// Trains a head on the items whose `values` are frequent enough.
/// `embeddings` and `colours` are row-major, one row per item.
pub fn learn(
    column: &str,
    values: &[Option<String>],
    embeddings: &[f32],
    colours: &[f32],
) -> Result<LabelHead> {
    let learned = check_learnable(column, values.iter().map(Option::as_deref))?;
    let number: HashMap<&str, usize> = learned.iter().enumerate().map(|(i, v)| (*v, i)).collect();
    let (mut rows, mut targets) = (Vec::new(), Vec::new());
    for (item, value) in values.iter().enumerate() {
        let Some(&target) = value.as_deref().and_then(|v| number.get(v)) else { continue };
        rows.push(item_input(embeddings, colours, item));
        targets.push(target);
    }
    let labels = learned.iter().map(|v| v.to_string()).collect();
    Ok(label_head::train(column, labels, &rows, &targets, EPOCHS))
}

/// The head input of item `item`.
pub fn item_input(embeddings: &[f32], colours: &[f32], item: usize) -> Vec<f32> {
    head_input(
        &embeddings[item * FEATURE_DIM..(item + 1) * FEATURE_DIM],
        signature_row(colours, item),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use lookalike_vision::colour::COLOUR_BINS;

    #[test]
    fn learn_specs_parse_with_and_without_weights() {
        assert_eq!(
            parse_learn("articleType").unwrap(),
            LearnSpec { column: "articleType".into(), weight: DEFAULT_WEIGHT }
        );
        assert_eq!(
            parse_learn("baseColour=0.2").unwrap(),
            LearnSpec { column: "baseColour".into(), weight: 0.2 }
        );
        assert!(parse_learn("baseColour=much").is_err());
        assert!(parse_learn("colour=0.3").unwrap_err().contains("built-in"));
        assert!(parse_learn("kind=-1").is_err());
    }

    #[test]
    fn rare_values_are_not_learned() {
        let n = 12;
        let values: Vec<Option<String>> = (0..n)
            .map(|i| {
                Some(if i == 11 {
                    "rare".to_string()
                } else if i % 2 == 0 {
                    "even".into()
                } else {
                    "odd".into()
                })
            })
            .collect();
        let embeddings: Vec<f32> = (0..n * FEATURE_DIM)
            .map(|i| ((i / FEATURE_DIM) % 2) as f32 + (i % 7) as f32 * 0.01)
            .collect();
        let colours = vec![0.5f32; n * COLOUR_BINS];
        let head = learn("kind", &values, &embeddings, &colours).unwrap();
        assert_eq!(head.labels, vec!["even", "odd"]);
        assert_eq!(head.feature_dim, FEATURE_DIM + COLOUR_BINS);
        let only_one: Vec<Option<String>> = (0..n).map(|_| Some("same".to_string())).collect();
        assert!(
            learn("kind", &only_one, &embeddings, &colours)
                .unwrap_err()
                .to_string()
                .contains("`kind`")
        );
    }
}
