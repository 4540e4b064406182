//! Turning forest neighbours into the report's recommendation records.

use crate::forest::{ForestError, LabelFilter, NO_LABEL, Neighbor, Query};
use crate::index_file::Index;
use serde::{Deserialize, Serialize};

/// One recommendation, in the report's JSON shape.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Recommendation {
    pub original_product_id: String,
    pub similar_product_id: String,
    /// Cosine similarity (angular metric); higher is more alike.
    pub score: f32,
}

/// How many look-alikes to return and how hard to search.
#[derive(Debug, Clone)]
pub struct RecommendOptions {
    pub k: usize,
    pub search_k: Option<usize>,
    /// Keep only products with the query's label (the report's class filter).
    /// An unlabelled query is not filtered.
    pub same_label: bool,
}

impl Default for RecommendOptions {
    fn default() -> Self {
        Self { k: 10, search_k: None, same_label: false }
    }
}

impl RecommendOptions {
    fn query(&self, label: u32) -> Query {
        let filter = if self.same_label && label != NO_LABEL {
            LabelFilter::Equals(label)
        } else {
            LabelFilter::Any
        };
        Query { k: self.k, search_k: self.search_k, filter }
    }
}

/// Look-alikes of the catalog product `item`, best first, itself excluded.
pub fn recommend_item(index: &Index, item: u32, options: &RecommendOptions) -> Vec<Recommendation> {
    let query = options.query(index.forest.label(item));
    to_recommendations(index, &index.ids[item as usize], index.forest.search_item(item, &query))
}

/// Look-alikes of an outside vector (a shopper's photo), labelled `query_id`.
pub fn recommend_vector(
    index: &Index,
    query_id: &str,
    vector: &[f32],
    label: Option<u32>,
    options: &RecommendOptions,
) -> Result<Vec<Recommendation>, ForestError> {
    let query = options.query(label.unwrap_or(NO_LABEL));
    Ok(to_recommendations(index, query_id, index.forest.search_vector(vector, &query)?))
}

fn to_recommendations(index: &Index, query_id: &str, neighbors: Vec<Neighbor>) -> Vec<Recommendation> {
    neighbors
        .into_iter()
        .map(|n| Recommendation {
            original_product_id: query_id.to_string(),
            similar_product_id: index.ids[n.item as usize].clone(),
            score: n.score,
        })
        .collect()
}
