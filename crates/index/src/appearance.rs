//! What "looks alike" means beyond the embedding: how an item's colour
//! signature and the attributes learned from the catalog are stored next to
//! the forest, and how they are blended with the visual cosine by weights
//! chosen at query time.
//!
//! An item is described by parts: `visual` (the embedding, which the forest
//! indexes), `colour` (its [`ColourSignature`]), and one part per attribute
//! learned at build time from a catalog column (e.g. articleType,
//! baseColour): the probabilities a softmax head gives each value. Every
//! part has a similarity in [0, 1]-ish (cosine, Bhattacharyya coefficient,
//! the probability that two items share the attribute), and the score of a
//! candidate is their weighted mean:
//!
//! `score = Σ weight[p] · similarity[p] / Σ weight[p]`
//!
//! No label is used at query time: a query's attributes are predicted from
//! its pixels, the same way for a catalog product and a shopper's photo.
//!
//! ```
//! use lookalike_index::appearance::{Layout, Part, Weights};
//! let layout = Layout { visual_weight: 0.3, parts: vec![Part { name: "colour".into(), dims: 2, weight: 0.0 }] };
//! let weights = Weights::defaults(&layout).with_overrides(&[("colour".into(), 0.7)], &layout).unwrap();
//! let score = weights.blend(0.9, &[1.0, 0.0], &[0.0, 1.0]); // same shape, other colour
//! assert!((score - 0.27).abs() < 1e-6);
//! ```

use crate::colour::{COLOUR_BINS, ColourSignature};
use crate::label_head::{LabelHead, normalized};
use serde::{Deserialize, Serialize};

pub const VISUAL: &str = "visual";
pub const COLOUR: &str = "colour";

/// The parts stored for every item after the visual embedding, in order,
/// with the weights a query gets unless it says otherwise.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Layout {
    pub visual_weight: f32,
    pub parts: Vec<Part>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Part {
    /// `colour`, or the catalog column an attribute was learned from.
    pub name: String,
    pub dims: usize,
    /// Default weight.
    pub weight: f32,
}

impl Layout {
    /// Values stored per item.
    pub fn dims(&self) -> usize {
        self.parts.iter().map(|p| p.dims).sum()
    }

    /// [`Self::dims`] of a layout read from a file, checked: part sizes that
    /// overflow when added, non-finite or negative weights and repeated
    /// names are refused, so blending a loaded layout cannot panic.
    pub fn checked_dims(&self) -> Result<usize, AppearanceError> {
        if !self.visual_weight.is_finite() || self.visual_weight < 0.0 {
            return Err(AppearanceError::BadWeight {
                name: VISUAL.into(),
                weight: self.visual_weight,
            });
        }
        let mut total = 0usize;
        for (i, part) in self.parts.iter().enumerate() {
            if !part.weight.is_finite() || part.weight < 0.0 {
                return Err(AppearanceError::BadWeight {
                    name: part.name.clone(),
                    weight: part.weight,
                });
            }
            if part.name == VISUAL || self.parts[..i].iter().any(|p| p.name == part.name) {
                return Err(AppearanceError::RepeatedPart(part.name.clone()));
            }
            total = total.checked_add(part.dims).ok_or(AppearanceError::SizesOverflow)?;
        }
        Ok(total)
    }

    /// The layout of a site: colour, then one part per learned attribute.
    pub fn new(visual_weight: f32, colour_weight: f32, attributes: &[(&LabelHead, f32)]) -> Self {
        let mut parts =
            vec![Part { name: COLOUR.into(), dims: COLOUR_BINS, weight: colour_weight }];
        parts.extend(attributes.iter().map(|(head, weight)| Part {
            name: head.column.clone(),
            dims: head.labels.len(),
            weight: *weight,
        }));
        Layout { visual_weight, parts }
    }
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum AppearanceError {
    #[error("unknown similarity part `{name}`; this index has: {known}")]
    UnknownPart { name: String, known: String },
    #[error("weight of `{name}` is {weight}; weights must be finite and not negative")]
    BadWeight { name: String, weight: f32 },
    #[error("all weights are zero; give at least one part a positive weight")]
    AllZero,
    #[error("`{0}` is not NAME=WEIGHT (e.g. colour=0.3)")]
    Syntax(String),
    #[error("part name `{0}` is reserved or repeated")]
    RepeatedPart(String),
    #[error("part sizes overflow")]
    SizesOverflow,
    #[error("{heads} attribute heads for the index's {parts} learned parts")]
    HeadCount { heads: usize, parts: usize },
    #[error(
        "head `{head}` ({head_values} values) is not the index's part `{part}` ({part_values} values)"
    )]
    HeadMismatch { head: String, head_values: usize, part: String, part_values: usize },
    #[error("head `{head}` takes {takes} values, the model gives {gives}")]
    HeadWidth { head: String, takes: usize, gives: usize },
}

/// A weight per part (visual first), resolved against a [`Layout`].
#[derive(Debug, Clone, PartialEq)]
pub struct Weights {
    pub visual: f32,
    /// One per [`Layout::parts`], with each part's width to walk the values.
    parts: Vec<(f32, usize)>,
}

impl Weights {
    pub fn defaults(layout: &Layout) -> Self {
        Weights {
            visual: layout.visual_weight,
            parts: layout.parts.iter().map(|p| (p.weight, p.dims)).collect(),
        }
    }

    /// Only the embedding: what the forest ranks by.
    pub fn visual_only(layout: &Layout) -> Self {
        Weights { visual: 1.0, parts: layout.parts.iter().map(|p| (0.0, p.dims)).collect() }
    }

    /// These weights with some replaced, by part name (`visual` included).
    pub fn with_overrides(
        mut self,
        overrides: &[(String, f32)],
        layout: &Layout,
    ) -> Result<Self, AppearanceError> {
        for (name, weight) in overrides {
            if !weight.is_finite() || *weight < 0.0 {
                return Err(AppearanceError::BadWeight { name: name.clone(), weight: *weight });
            }
            if name == VISUAL {
                self.visual = *weight;
                continue;
            }
            let Some(i) = layout.parts.iter().position(|p| &p.name == name) else {
                let known = std::iter::once(VISUAL)
                    .chain(layout.parts.iter().map(|p| p.name.as_str()))
                    .collect::<Vec<_>>()
                    .join(", ");
                return Err(AppearanceError::UnknownPart { name: name.clone(), known });
            };
            self.parts[i].0 = *weight;
        }
        if self.visual + self.parts.iter().map(|p| p.0).sum::<f32>() <= 0.0 {
            return Err(AppearanceError::AllZero);
        }
        Ok(self)
    }

    /// Whether anything but the embedding counts (else the forest's own
    /// order is the answer and nothing is re-ranked).
    pub fn blends(&self) -> bool {
        self.parts.iter().any(|p| p.0 > 0.0)
    }

    /// The weighted mean of the parts' similarities: `visual` is the
    /// embeddings' cosine, `query` and `item` the stored parts.
    pub fn blend(&self, visual: f32, query: &[f32], item: &[f32]) -> f32 {
        self.blend_by(visual, query, |i| item[i])
    }

    /// [`Self::blend`] with the item's value `i` read by `item(i)`.
    fn blend_by(&self, visual: f32, query: &[f32], item: impl Fn(usize) -> f32) -> f32 {
        let mut total = self.visual * visual;
        let mut weights = self.visual;
        let mut at = 0;
        for &(weight, dims) in &self.parts {
            if weight > 0.0 {
                let similarity: f32 = (at..at + dims).map(|i| query[i] * item(i)).sum();
                total += weight * similarity;
                weights += weight;
            }
            at += dims;
        }
        total / weights
    }
}

/// Parses `NAME=WEIGHT` (the command line's `--weight`).
pub fn parse_weight(text: &str) -> Result<(String, f32), AppearanceError> {
    let (name, weight) =
        text.split_once('=').ok_or_else(|| AppearanceError::Syntax(text.into()))?;
    let weight: f32 = weight.trim().parse().map_err(|_| AppearanceError::Syntax(text.into()))?;
    Ok((name.trim().to_string(), weight))
}

/// What an attribute head reads: the unit embedding and the colour
/// signature side by side (the head normalises the whole row again).
pub fn head_input(embedding: &[f32], colour: &ColourSignature) -> Vec<f32> {
    let mut row = normalized(embedding);
    row.extend_from_slice(colour);
    row
}

/// An item's stored parts, from its embedding and colour signature, with
/// the attribute heads of the layout (in its order).
pub fn describe(embedding: &[f32], colour: &ColourSignature, heads: &[LabelHead]) -> Vec<f32> {
    let mut parts = colour.to_vec();
    if !heads.is_empty() {
        let input = head_input(embedding, colour);
        for head in heads {
            parts.extend(head.probabilities(&input));
        }
    }
    parts
}

/// Checks that `heads` (a site's `attributes.json`) are the learned parts of
/// `layout` (the index's), in order and size, and take `embedding_dims`
/// values plus a colour signature: a file from another build is refused
/// before it is used.
pub fn check_heads(
    layout: &Layout,
    heads: &[LabelHead],
    embedding_dims: usize,
) -> Result<(), AppearanceError> {
    let learned = layout.parts.iter().skip(1);
    if heads.len() != learned.len() {
        return Err(AppearanceError::HeadCount { heads: heads.len(), parts: learned.len() });
    }
    for (head, part) in heads.iter().zip(learned) {
        if head.column != part.name || head.labels.len() != part.dims {
            return Err(AppearanceError::HeadMismatch {
                head: head.column.clone(),
                head_values: head.labels.len(),
                part: part.name.clone(),
                part_values: part.dims,
            });
        }
        if head.feature_dim != embedding_dims + COLOUR_BINS {
            return Err(AppearanceError::HeadWidth {
                head: head.column.clone(),
                takes: head.feature_dim,
                gives: embedding_dims + COLOUR_BINS,
            });
        }
    }
    Ok(())
}

/// Every item's parts, stored as bytes (all values lie in [0, 1]): 8 bits
/// keep the blended score within 0.004 of its f32 value, at a quarter of
/// the size.
#[derive(Debug, Clone, PartialEq)]
pub struct PartsTable {
    pub layout: Layout,
    pub codes: Vec<u8>,
}

impl PartsTable {
    pub fn encode(layout: Layout, rows: &[Vec<f32>]) -> Self {
        let codes = rows
            .iter()
            .flat_map(|r| r.iter().map(|v| (v.clamp(0.0, 1.0) * 255.0).round() as u8))
            .collect();
        PartsTable { layout, codes }
    }

    pub fn len(&self) -> usize {
        self.codes.len() / self.layout.dims().max(1)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Item `item`'s parts, decoded.
    pub fn item(&self, item: u32) -> Vec<f32> {
        self.codes_of(item).iter().map(|&c| decode(c)).collect()
    }

    /// [`Weights::blend`] of a query against item `item`, read from its
    /// bytes in place (re-ranking scores a thousand candidates per query).
    pub fn blend(&self, weights: &Weights, visual: f32, query: &[f32], item: u32) -> f32 {
        let codes = self.codes_of(item);
        weights.blend_by(visual, query, |i| decode(codes[i]))
    }

    fn codes_of(&self, item: u32) -> &[u8] {
        let dims = self.layout.dims();
        &self.codes[item as usize * dims..(item as usize + 1) * dims]
    }
}

fn decode(code: u8) -> f32 {
    code as f32 / 255.0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layout() -> Layout {
        Layout {
            visual_weight: 0.5,
            parts: vec![
                Part { name: COLOUR.into(), dims: 2, weight: 0.25 },
                Part { name: "kind".into(), dims: 3, weight: 0.25 },
            ],
        }
    }

    #[test]
    fn the_blend_is_the_weighted_mean_of_the_parts() {
        let w = Weights::defaults(&layout());
        let query = [1.0, 0.0, 0.0, 1.0, 0.0];
        let item = [0.0, 1.0, 0.0, 1.0, 0.0];
        // visual 0.8, colour 0, kind 1.
        assert!((w.blend(0.8, &query, &item) - (0.5 * 0.8 + 0.25) / 1.0).abs() < 1e-6);
    }

    #[test]
    fn zero_weights_drop_a_part_and_visual_only_does_not_blend() {
        let w = Weights::defaults(&layout())
            .with_overrides(&[("kind".into(), 0.0)], &layout())
            .unwrap();
        assert!(
            (w.blend(0.8, &[1.0, 0.0, 0.0, 0.0, 0.0], &[1.0, 0.0, 1.0, 1.0, 1.0])
                - (0.4 + 0.25) / 0.75)
                .abs()
                < 1e-6
        );
        assert!(!Weights::visual_only(&layout()).blends());
    }

    #[test]
    fn bad_weights_are_named() {
        let l = layout();
        assert!(matches!(
            Weights::defaults(&l).with_overrides(&[("size".into(), 1.0)], &l),
            Err(AppearanceError::UnknownPart { .. })
        ));
        assert!(matches!(
            Weights::defaults(&l).with_overrides(&[("colour".into(), -1.0)], &l),
            Err(AppearanceError::BadWeight { .. })
        ));
        let zero: Vec<(String, f32)> =
            ["visual", "colour", "kind"].iter().map(|n| (n.to_string(), 0.0)).collect();
        assert_eq!(Weights::defaults(&l).with_overrides(&zero, &l), Err(AppearanceError::AllZero));
        assert_eq!(parse_weight("colour=0.3"), Ok(("colour".into(), 0.3)));
        assert!(parse_weight("colour").is_err());
    }

    #[test]
    fn bytes_keep_the_parts_close() {
        let rows = vec![vec![0.0, 1.0, 0.2, 0.3, 0.5], vec![0.7, 0.7, 1.0, 0.0, 0.0]];
        let table = PartsTable::encode(layout(), &rows);
        assert_eq!(table.len(), 2);
        for (i, row) in rows.iter().enumerate() {
            for (a, b) in table.item(i as u32).iter().zip(row) {
                assert!((a - b).abs() <= 0.5 / 255.0 + 1e-6);
            }
        }
    }
}
