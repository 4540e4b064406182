//! `lookalike eval`: how good are the look-alikes of a built site?
//!
//! - precision@k: the share of each product's k look-alikes (itself excluded,
//!   no label filter) that carry the same label, averaged over products;
//! - recall vs exact: the share of the exact top-k that the forest finds;
//! - with a site whose default weights blend in colour or learned
//!   attributes, precision@k of what its queries return (the blend).

use crate::catalog::metadata_value;
use crate::site::SiteManifest;
use lookalike_forest::{LabelFilter, Query};
use lookalike_index::Index;
use serde::Serialize;

#[derive(Debug, Clone, Serialize)]
pub struct EvalReport {
    pub n: usize,
    pub k: usize,
    pub label: String,
    /// Same-label precision of the forest's answers.
    pub precision_at_k: f64,
    /// Same-label precision of exact search (the ceiling for this embedding).
    pub exact_precision_at_k: f64,
    pub recall_vs_exact: f64,
    /// Same-label precision of the site's default blend, when it has one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub blended_precision_at_k: Option<f64>,
}

/// The value of `column` for each product, from its label or its metadata.
pub fn column_values(manifest: &SiteManifest, column: &str) -> Vec<Option<String>> {
    manifest
        .products
        .iter()
        .map(|p| {
            if manifest.label_column.as_deref() == Some(column) {
                return p.label.clone();
            }
            metadata_value(&p.metadata, column)
        })
        .collect()
}

pub fn evaluate(
    index: &Index,
    labels: &[Option<String>],
    label: &str,
    k: usize,
    search_k: Option<usize>,
) -> EvalReport {
    let forest = &index.forest;
    let (mut precision, mut exact_precision, mut recall, mut n) = (0.0, 0.0, 0.0, 0usize);
    let query = Query { k, search_k, filter: LabelFilter::Any };
    let same =
        |a: u32, b: u32| labels[a as usize].is_some() && labels[a as usize] == labels[b as usize];
    for item in 0..forest.len() as u32 {
        if labels[item as usize].is_none() {
            continue;
        }
        let approx = forest.search_item(item, &query);
        let exact = forest.exact_search_item(item, &query);
        if exact.is_empty() {
            continue;
        }
        n += 1;
        precision += approx.iter().filter(|h| same(item, h.item)).count() as f64 / k as f64;
        exact_precision += exact.iter().filter(|h| same(item, h.item)).count() as f64 / k as f64;
        recall += exact.iter().filter(|e| approx.iter().any(|a| a.item == e.item)).count() as f64
            / exact.len() as f64;
    }
    let mean = |sum: f64| if n == 0 { 0.0 } else { sum / n as f64 };
    let blended = lookalike_index::rank::blend_of(index, None).map(|_| {
        let options = lookalike_index::rank::RecommendOptions { k, search_k, ..Default::default() };
        // A product's first item stands for it (its crops share its label).
        let mut item_of: std::collections::HashMap<&str, u32> = std::collections::HashMap::new();
        for (item, id) in index.ids.iter().enumerate() {
            item_of.entry(id.as_str()).or_insert(item as u32);
        }
        let labelled = (0..forest.len() as u32).filter(|&item| labels[item as usize].is_some());
        let sum: f64 = labelled
            .map(|item| {
                let hits = lookalike_index::rank::recommend_item(index, item, &options);
                hits.iter()
                    .filter(|h| {
                        item_of
                            .get(h.similar_product_id.as_str())
                            .is_some_and(|&other| same(item, other))
                    })
                    .count() as f64
                    / k as f64
            })
            .sum();
        mean(sum)
    });
    EvalReport {
        n,
        k,
        label: label.to_string(),
        precision_at_k: mean(precision),
        exact_precision_at_k: mean(exact_precision),
        recall_vs_exact: mean(recall),
        blended_precision_at_k: blended,
    }
}
