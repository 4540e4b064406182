//! Turning forest neighbours into the report's recommendation records,
//! re-ranked by the blended appearance (colour, learned attributes) when the
//! query's weights ask for more than the embedding.

use crate::appearance::{PartsTable, Weights};
use crate::index_file::Index;
use lookalike_forest::{ForestError, LabelFilter, NO_LABEL, Neighbor, Query};
use serde::{Deserialize, Serialize};

/// One recommendation, in the report's JSON shape.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Recommendation {
    pub original_product_id: String,
    pub similar_product_id: String,
    /// Cosine similarity of the embeddings, or with a blend, the weighted
    /// mean of the parts' similarities; higher is more alike.
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
    /// How the parts are blended; `None`: the index's default weights.
    pub weights: Option<Weights>,
}

impl Default for RecommendOptions {
    fn default() -> Self {
        Self { k: 10, search_k: None, same_label: false, weights: None }
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

/// The blend a query asks for, with the table it reads; `None` when only
/// the embedding counts (no table, or every other weight is zero).
pub fn blend_of<'a>(
    index: &'a Index,
    weights: Option<&Weights>,
) -> Option<(Weights, &'a PartsTable)> {
    let table = index.appearance.as_ref()?;
    let weights = weights.cloned().unwrap_or_else(|| Weights::defaults(&table.layout));
    weights.blends().then_some((weights, table))
}

/// Candidates the forest hands to the blend for `k` results: the blend
/// reorders them, so it needs far more than `k` (on the fashion catalog, 200
/// candidates kept 97% of the gain of blending over every item).
pub fn blend_pool(k: usize, n_items: usize) -> usize {
    (k * 20).max(1000).min(n_items)
}

/// Re-scores candidates by the blend and sorts them, best first.
fn rerank(
    mut hits: Vec<Neighbor>,
    query: &[f32],
    table: &PartsTable,
    weights: &Weights,
) -> Vec<Neighbor> {
    for hit in &mut hits {
        hit.score = table.blend(weights, hit.score, query, hit.item);
    }
    hits.sort_by(|a, b| b.score.total_cmp(&a.score));
    hits
}

/// Look-alikes of the catalog product `item`, best first, itself excluded.
pub fn recommend_item(index: &Index, item: u32, options: &RecommendOptions) -> Vec<Recommendation> {
    let query = options.query(index.forest.label(item));
    to_recommendations(
        index,
        &index.ids[item as usize],
        search_item_distinct(index, item, &query, options.weights.as_ref()),
    )
}

/// Neighbours of catalog item `item` from other products, one per product.
pub fn search_item_distinct(
    index: &Index,
    item: u32,
    query: &Query,
    weights: Option<&Weights>,
) -> Vec<Neighbor> {
    let own = index.ids[item as usize].as_str();
    let search = |k| index.forest.search_item(item, &Query { k, ..query.clone() });
    match blend_of(index, weights) {
        None => distinct_products(index, Some(own), query.k, search),
        Some((weights, table)) => {
            let parts = table.item(item);
            let n = index.forest.len();
            distinct_products(index, Some(own), query.k, |k| {
                rerank(search(blend_pool(k, n)), &parts, table, &weights)
            })
        }
    }
}

/// Neighbours of an outside vector, one per product. `parts` are the
/// query's appearance parts ([`crate::appearance::describe`]); without them
/// only the embedding counts.
pub fn search_vector_distinct(
    index: &Index,
    vector: &[f32],
    parts: Option<&[f32]>,
    query: &Query,
    weights: Option<&Weights>,
) -> Result<Vec<Neighbor>, ForestError> {
    if let (Some(parts), Some(table)) = (parts, &index.appearance)
        && parts.len() != table.layout.dims()
    {
        return Err(ForestError::WrongDimension {
            found: parts.len(),
            expected: table.layout.dims(),
        });
    }
    let blend = parts.and_then(|parts| Some((parts, blend_of(index, weights)?)));
    let pool = |k: usize| match blend {
        Some(_) => blend_pool(k, index.forest.len()),
        None => k,
    };
    // The first search also validates the vector; widened ones reuse it.
    let mut first =
        Some(index.forest.search_vector(vector, &Query { k: pool(query.k), ..query.clone() })?);
    Ok(distinct_products(index, None, query.k, |k| {
        let hits = match first.take() {
            Some(hits) if k == query.k => hits,
            _ => index
                .forest
                .search_vector(vector, &Query { k: pool(k), ..query.clone() })
                .unwrap_or_default(),
        };
        match &blend {
            Some((parts, (weights, table))) => rerank(hits, parts, table, weights),
            None => hits,
        }
    }))
}

/// The best `k` neighbours of distinct products, `exclude` left out. A
/// product indexed from several crops is found once, by its best crop; the
/// search widens (doubling k) only when duplicates crowded the first answer.
pub fn distinct_products(
    index: &Index,
    exclude: Option<&str>,
    k: usize,
    mut search: impl FnMut(usize) -> Vec<Neighbor>,
) -> Vec<Neighbor> {
    let mut want = k;
    loop {
        let hits = search(want);
        let exhausted = hits.len() < want || want >= index.forest.len();
        let mut seen = std::collections::HashSet::new();
        let distinct: Vec<Neighbor> = hits
            .into_iter()
            .filter(|n| {
                let id = index.ids[n.item as usize].as_str();
                Some(id) != exclude && seen.insert(id)
            })
            .take(k)
            .collect();
        if distinct.len() >= k || exhausted {
            return distinct;
        }
        want = (want * 2).min(index.forest.len());
    }
}

/// Look-alikes of an outside vector (a shopper's photo), labelled `query_id`.
pub fn recommend_vector(
    index: &Index,
    query_id: &str,
    vector: &[f32],
    parts: Option<&[f32]>,
    label: Option<u32>,
    options: &RecommendOptions,
) -> Result<Vec<Recommendation>, ForestError> {
    let query = options.query(label.unwrap_or(NO_LABEL));
    Ok(to_recommendations(
        index,
        query_id,
        search_vector_distinct(index, vector, parts, &query, options.weights.as_ref())?,
    ))
}

fn to_recommendations(
    index: &Index,
    query_id: &str,
    neighbors: Vec<Neighbor>,
) -> Vec<Recommendation> {
    neighbors
        .into_iter()
        .map(|n| Recommendation {
            original_product_id: query_id.to_string(),
            similar_product_id: index.ids[n.item as usize].clone(),
            score: n.score,
        })
        .collect()
}
