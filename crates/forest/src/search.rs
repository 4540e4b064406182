//! Querying the forest: best-first over all trees at once, as Annoy does,
//! with the label filter applied while walking.

use super::graph::{self, Beam, Graph, Trace, Visited};
use super::{Forest, ForestError, Metric, NO_LABEL, Node, RESCORE_POOL, VectorStore, metric};
use serde::Serialize;
use std::cmp::Ordering;
use std::collections::BinaryHeap;

/// Which items a query may return.
#[derive(Debug, Clone, Default, PartialEq)]
pub enum LabelFilter {
    #[default]
    Any,
    /// Only items with this label.
    Equals(u32),
    /// Only items whose label is one of these.
    In(Vec<u32>),
}

impl LabelFilter {
    /// Whether an item with `label` may be returned.
    #[inline]
    pub fn accepts(&self, label: u32) -> bool {
        match self {
            LabelFilter::Any => true,
            LabelFilter::Equals(wanted) => label == *wanted && label != NO_LABEL,
            LabelFilter::In(wanted) => wanted.contains(&label),
        }
    }
}

/// What to look for.
#[derive(Debug, Clone, PartialEq)]
pub struct Query {
    /// How many neighbours to return.
    pub k: usize,
    /// How hard to look; larger is slower and more accurate. Without a
    /// graph: the candidates to collect before ranking (Annoy's `search_k`;
    /// `None` means `n_trees * k`). With a graph: the candidates the walk
    /// keeps (HNSW's `ef`; `None` means [`DEFAULT_BEAM`], at least `k`).
    pub search_k: Option<usize>,
    pub filter: LabelFilter,
}

impl Query {
    pub fn top(k: usize) -> Self {
        Self { k, search_k: None, filter: LabelFilter::Any }
    }

    pub fn with_search_k(mut self, search_k: usize) -> Self {
        self.search_k = Some(search_k);
        self
    }

    pub fn with_filter(mut self, filter: LabelFilter) -> Self {
        self.filter = filter;
        self
    }
}

/// A graph search's default pool of candidates (HNSW's `ef`): recall@10
/// about 0.95 on the benchmark sets (`bench ann`).
pub const DEFAULT_BEAM: usize = 64;

/// What one graph search did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct WalkStats {
    /// Sequential steps (rounds of fetches for a paged index).
    pub rounds: usize,
    /// Items whose links were followed.
    pub expanded: usize,
    /// Items scored (each a stored vector read).
    pub scored: usize,
    /// Bytes of one item's row of links.
    pub row_bytes: usize,
}

/// One result: an item and its similarity score (higher is more alike;
/// cosine similarity for the angular metric).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Neighbor {
    pub item: u32,
    pub score: f32,
}

/// A heap entry: the best margin seen on the way to `node`.
#[derive(Clone, Copy, PartialEq)]
struct Pending {
    priority: f32,
    node: u32,
}

impl Eq for Pending {}

impl Ord for Pending {
    fn cmp(&self, other: &Self) -> Ordering {
        self.priority.total_cmp(&other.priority)
    }
}

impl PartialOrd for Pending {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// A query in tree space, with the store's view of it precomputed, and in
/// input space when the forest re-scores.
struct TreeQuery {
    vector: Vec<f32>,
    prepared: Vec<f32>,
    full: Option<Vec<f32>>,
}

impl Forest {
    /// The `k` items most like `item`, the item itself excluded.
    pub fn search_item(&self, item: u32, query: &Query) -> Vec<Neighbor> {
        self.search(&self.item_query(item), query, Some(item))
    }

    /// The `k` items most like `vector` (in the input dimension).
    pub fn search_vector(
        &self,
        vector: &[f32],
        query: &Query,
    ) -> Result<Vec<Neighbor>, ForestError> {
        Ok(self.search(&self.vector_query(vector)?, query, None))
    }

    /// Brute force over every item: the reference for recall and evaluation.
    pub fn exact_search_item(&self, item: u32, query: &Query) -> Vec<Neighbor> {
        self.exact(&self.item_query(item), query, Some(item))
    }

    /// Brute force for an outside vector.
    pub fn exact_search_vector(
        &self,
        vector: &[f32],
        query: &Query,
    ) -> Result<Vec<Neighbor>, ForestError> {
        Ok(self.exact(&self.vector_query(vector)?, query, None))
    }

    fn item_query(&self, item: u32) -> TreeQuery {
        let mut vector = self.stored_vector(item);
        if self.metric == Metric::Dot {
            *vector.last_mut().expect("dot vectors are augmented") = 0.0;
        }
        let full = self.rescore.as_ref().map(|store| store.decode(item as usize, self.input_dims));
        self.tree_query(vector, full)
    }

    fn vector_query(&self, vector: &[f32]) -> Result<TreeQuery, ForestError> {
        let tree = self.to_tree_space(vector)?;
        let full = self.rescore.as_ref().map(|_| {
            let mut full = vector.to_vec();
            if self.metric == Metric::Angular {
                metric::normalize(&mut full);
            }
            full
        });
        Ok(self.tree_query(tree, full))
    }

    fn tree_query(&self, vector: Vec<f32>, full: Option<Vec<f32>>) -> TreeQuery {
        let prepared = self.store.prepare_query(&vector);
        let full = match (&self.rescore, full) {
            (Some(store), Some(full)) => Some(store.prepare_query(&full)),
            _ => None,
        };
        TreeQuery { vector, prepared, full }
    }

    fn passes(&self, item: u32, query: &Query, exclude: Option<u32>, any_deleted: bool) -> bool {
        // Each lookup is a likely cache miss on a big index: skip those that cannot fail.
        Some(item) != exclude
            && !(any_deleted && self.deleted[item as usize])
            && (query.filter == LabelFilter::Any
                || query.filter.accepts(self.labels[item as usize]))
    }

    fn exact(&self, tree_query: &TreeQuery, query: &Query, exclude: Option<u32>) -> Vec<Neighbor> {
        let any_deleted = self.has_removed();
        let candidates =
            (0..self.len() as u32).filter(|&i| self.passes(i, query, exclude, any_deleted));
        self.rank(tree_query, candidates, query.k)
    }

    fn search(&self, tree_query: &TreeQuery, query: &Query, exclude: Option<u32>) -> Vec<Neighbor> {
        if query.k == 0 || self.is_empty() {
            return Vec::new();
        }
        if let Some(graph) = &self.graph
            && let Some(found) = self.graph_search(graph, tree_query, query, exclude, 1, None)
        {
            return found;
        }
        self.tree_search(tree_query, query, exclude)
    }

    /// The graph's walk; `None` when it found fewer than `k` items that pass
    /// the filter (a rare label), which the trees then answer.
    fn graph_search(
        &self,
        graph: &Graph,
        tree_query: &TreeQuery,
        query: &Query,
        exclude: Option<u32>,
        width: usize,
        stats: Option<&mut WalkStats>,
    ) -> Option<Vec<Neighbor>> {
        // A pool never holds more than every item: a hostile `search_k` or
        // `k` (the page passes them through) cannot make it allocate more.
        let n = self.len();
        let ef = query.search_k.unwrap_or(DEFAULT_BEAM).max(query.k).min(n);
        let mut trace = Trace::default();
        let keep =
            if self.rescore.is_some() { query.k.saturating_mul(RESCORE_POOL) } else { query.k }
                .min(n);
        let any_deleted = self.has_removed();
        let filtered = exclude.is_some() || any_deleted || query.filter != LabelFilter::Any;
        let mut passing: Vec<(f32, u32)> = Vec::with_capacity(keep + 1);
        let mut visited = Visited::new(self.len());
        let mut seeds = vec![graph.entry];
        seeds.extend(self.leaf_seeds(&tree_query.vector));
        let pool = graph::walk(
            |item| graph.row(item),
            &seeds,
            Beam { ef, width },
            &mut visited,
            |item| {
                let distance = -self.walk_score(tree_query, item);
                if filtered && self.passes(item, query, exclude, any_deleted) {
                    graph::insert(&mut passing, keep, distance, item);
                }
                distance
            },
            |item| self.store.prefetch(item as usize, self.dims),
            stats.is_some().then_some(&mut trace),
        );
        if let Some(stats) = stats {
            *stats = WalkStats {
                rounds: trace.rounds,
                expanded: trace.expanded.len(),
                scored: visited.count(),
                row_bytes: graph.params.degree * 4,
            };
        }
        let best = if filtered { passing } else { pool };
        let wanted = query.k.min(self.live_len() - usize::from(exclude.is_some()));
        if best.len().min(keep) < wanted {
            return None;
        }
        Some(self.rank(tree_query, best.iter().take(keep).map(|&(_, item)| item), query.k))
    }

    /// A graph search of `vector` that expands `width` candidates per step,
    /// with what it cost: the measure of a paged index, where each step is
    /// one round of fetches. Without a graph, the trees answer and the
    /// figures are zero.
    pub fn search_vector_traced(
        &self,
        vector: &[f32],
        query: &Query,
        width: usize,
    ) -> Result<(Vec<Neighbor>, WalkStats), ForestError> {
        let tree_query = self.vector_query(vector)?;
        let mut stats = WalkStats::default();
        let found = match &self.graph {
            Some(graph) if query.k > 0 && !self.is_empty() => {
                self.graph_search(graph, &tree_query, query, None, width, Some(&mut stats))
            }
            _ => None,
        };
        let found = found.unwrap_or_else(|| self.search(&tree_query, query, None));
        Ok((found, stats))
    }

    /// Bytes of one item's stored vector (codes and any per-item scale).
    pub fn item_bytes(&self) -> usize {
        self.store.encoded_bytes() / self.len().max(1)
    }

    /// What a walk orders candidates by (higher is nearer): the similarity
    /// for angular and dot, `2 q.x - |x|^2` (the squared distance less the
    /// query's constant `|q|^2`) for Euclidean: one dot product either way.
    #[inline]
    fn walk_score(&self, tree_query: &TreeQuery, item: u32) -> f32 {
        let dot = self.store.dot(&tree_query.prepared, item as usize);
        match self.metric {
            Metric::Angular | Metric::Dot => dot,
            Metric::Euclidean => 2.0 * dot - self.sq_norms[item as usize],
        }
    }

    /// Annoy's walk: best-first over all trees by margin, then ranking.
    fn tree_search(
        &self,
        tree_query: &TreeQuery,
        query: &Query,
        exclude: Option<u32>,
    ) -> Vec<Neighbor> {
        let search_k =
            query.search_k.unwrap_or(self.n_trees().saturating_mul(query.k)).max(query.k);
        let any_deleted = self.has_removed();
        let mut seen = vec![0u64; self.len().div_ceil(64)];
        let mut candidates: Vec<u32> = Vec::with_capacity(search_k.min(self.len()));
        let mut heap: BinaryHeap<Pending> =
            self.roots.iter().map(|&node| Pending { priority: f32::INFINITY, node }).collect();
        while candidates.len() < search_k {
            let Some(Pending { priority, node }) = heap.pop() else { break };
            match self.node(node) {
                Node::Leaf { start, len } => {
                    for &item in &self.leaf_items[start as usize..(start + len) as usize] {
                        let (word, bit) = (item as usize / 64, 1u64 << (item % 64));
                        if seen[word] & bit != 0 {
                            continue;
                        }
                        seen[word] |= bit;
                        if self.passes(item, query, exclude, any_deleted) {
                            candidates.push(item);
                        }
                    }
                }
                Node::Split { split, left, right } => {
                    let margin = self.margin(split, &tree_query.vector);
                    heap.push(Pending { priority: priority.min(margin), node: right });
                    heap.push(Pending { priority: priority.min(-margin), node: left });
                }
            }
        }
        self.rank(tree_query, candidates.into_iter(), query.k)
    }

    pub(crate) fn margin(&self, split: u32, vector: &[f32]) -> f32 {
        let start = split as usize * self.dims;
        metric::dot(&self.planes[start..start + self.dims], vector) + self.offsets[split as usize]
    }

    /// Scores candidates against the stored vectors and keeps the best `k`,
    /// best first. With re-scoring, the best `RESCORE_POOL * k` by the codes
    /// are scored again with the full vectors.
    fn rank(
        &self,
        tree_query: &TreeQuery,
        candidates: impl Iterator<Item = u32>,
        k: usize,
    ) -> Vec<Neighbor> {
        let score_with =
            |store: &VectorStore, prepared: &[f32], raw: &[f32], item: u32| match self.metric {
                Metric::Angular | Metric::Dot => store.dot(prepared, item as usize),
                Metric::Euclidean => -store.squared_distance(raw, item as usize).sqrt(),
            };
        // The stored vectors' norms make a Euclidean distance one dot
        // product with the codes, whatever their encoding.
        let query_norm = metric::dot(&tree_query.vector, &tree_query.vector);
        let scored = candidates
            .map(|item| Neighbor {
                item,
                score: match self.metric {
                    Metric::Euclidean if !self.sq_norms.is_empty() => {
                        -(query_norm - self.walk_score(tree_query, item)).max(0.0).sqrt()
                    }
                    _ => score_with(&self.store, &tree_query.prepared, &tree_query.vector, item),
                },
            })
            .collect();
        match (&self.rescore, &tree_query.full) {
            (Some(full_store), Some(full)) => {
                let mut pool = best(scored, k.saturating_mul(RESCORE_POOL));
                for n in &mut pool {
                    n.score = score_with(full_store, full, full, n.item);
                }
                best(pool, k)
            }
            _ => best(scored, k),
        }
    }
}

/// The best `k` of `scored`, best first.
fn best(mut scored: Vec<Neighbor>, k: usize) -> Vec<Neighbor> {
    let by_score =
        |a: &Neighbor, b: &Neighbor| b.score.total_cmp(&a.score).then(a.item.cmp(&b.item));
    if scored.len() > k {
        scored.select_nth_unstable_by(k, by_score);
        scored.truncate(k);
    }
    scored.sort_unstable_by(by_score);
    scored
}

#[cfg(test)]
mod tests {
    use super::super::{Encoding, ForestParams, NO_LABEL};
    use super::*;
    use proptest::prelude::*;
    use rand::{RngExt, SeedableRng, rngs::StdRng};

    fn random_vectors(n: usize, dims: usize, seed: u64) -> Vec<f32> {
        let mut rng = StdRng::seed_from_u64(seed);
        (0..n * dims).map(|_| rng.random_range(-1.0f32..1.0)).collect()
    }

    fn recall(forest: &Forest, queries: usize, k: usize, search_k: usize) -> f64 {
        let mut found = 0;
        for item in 0..queries as u32 {
            let query = Query::top(k).with_search_k(search_k);
            let approx = forest.search_item(item, &query);
            let exact = forest.exact_search_item(item, &query);
            found += exact.iter().filter(|e| approx.iter().any(|a| a.item == e.item)).count();
        }
        found as f64 / (queries * k) as f64
    }

    #[test]
    fn recall_against_brute_force_is_high_at_generous_search_k() {
        for metric in [Metric::Angular, Metric::Euclidean, Metric::Dot] {
            for encoding in
                [Encoding::F32, Encoding::F16, Encoding::I8PerVector, Encoding::I8PerDim]
            {
                let vectors = random_vectors(2000, 24, 7);
                let params = ForestParams { encoding, ..ForestParams::new(metric) };
                let forest = Forest::build(vectors, 24, None, &params).unwrap();
                let r = recall(&forest, 100, 10, 1500);
                assert!(r >= 0.99, "{metric:?} {encoding:?}: recall@10 {r}");
            }
        }
    }

    #[test]
    fn rescoring_recovers_what_compact_codes_lose() {
        // Embedding-like data: a 12-d subspace of 48-d, plus noise that PCA drops.
        let vectors = super::super::low_rank_vectors(3000, 48, 12, 0.15, 21);
        let exact = Forest::build(
            vectors.clone(),
            48,
            None,
            &ForestParams { encoding: Encoding::F32, ..ForestParams::new(Metric::Angular) },
        )
        .unwrap();
        let compact = ForestParams {
            encoding: Encoding::I8PerDim,
            pca_dims: Some(12),
            ..ForestParams::new(Metric::Angular)
        };
        let plain = Forest::build(vectors.clone(), 48, None, &compact).unwrap();
        let rescored = Forest::build(
            vectors.clone(),
            48,
            None,
            &ForestParams { rescore: Some(Encoding::F16), ..compact },
        )
        .unwrap();
        let query = Query::top(10).with_search_k(3000);
        let recall_of = |forest: &Forest| {
            let mut found = 0;
            for q in vectors.chunks_exact(48).take(40) {
                let want = exact.exact_search_vector(q, &query).unwrap();
                let got = forest.search_vector(q, &query).unwrap();
                found += want.iter().filter(|w| got.iter().any(|g| g.item == w.item)).count();
            }
            found as f64 / 400.0
        };
        let (r_plain, r_rescored) = (recall_of(&plain), recall_of(&rescored));
        assert!(
            r_rescored >= 0.95 && r_rescored > r_plain,
            "plain {r_plain}, rescored {r_rescored}"
        );
    }

    #[test]
    fn dot_metric_ranks_by_inner_product() {
        // Items of very different norms: the longest aligned one wins.
        let vectors = vec![1.0, 0.0, 3.0, 0.1, 0.5, 0.5, -2.0, 0.0, 0.0, 1.0];
        let params = ForestParams { encoding: Encoding::F32, ..ForestParams::new(Metric::Dot) };
        let forest = Forest::build(vectors, 2, None, &params).unwrap();
        let hits = forest.search_vector(&[1.0, 0.0], &Query::top(5)).unwrap();
        let order: Vec<u32> = hits.iter().map(|h| h.item).collect();
        assert_eq!(order, [1, 0, 2, 4, 3]);
        assert!((hits[0].score - 3.0).abs() < 1e-5);
    }

    #[test]
    fn pca_keeps_neighbours_of_low_rank_data() {
        // 1500 points near a 6-d subspace of 64-d: PCA to 8 loses nothing that matters.
        let vectors = super::super::low_rank_vectors(1500, 64, 6, 0.01, 11);
        let full = Forest::build(
            vectors.clone(),
            64,
            None,
            &ForestParams { encoding: Encoding::F32, ..ForestParams::new(Metric::Euclidean) },
        )
        .unwrap();
        let params = ForestParams {
            pca_dims: Some(8),
            encoding: Encoding::I8PerDim,
            ..ForestParams::new(Metric::Euclidean)
        };
        let small = Forest::build(vectors, 64, None, &params).unwrap();
        assert_eq!(small.stored_dims(), 8);
        let query = Query::top(10).with_search_k(1000);
        let mut found = 0;
        for item in 0..50 {
            let want = full.exact_search_item(item, &query);
            let got = small.search_item(item, &query);
            found += want.iter().filter(|w| got.iter().any(|g| g.item == w.item)).count();
        }
        assert!(found as f64 / 500.0 >= 0.9, "recall {}", found as f64 / 500.0);
    }

    #[test]
    fn filtered_query_returns_k_whenever_k_items_pass() {
        let n = 3000;
        let vectors = random_vectors(n, 16, 3);
        // Label 1 is rare: every 100th item.
        let labels: Vec<u32> = (0..n).map(|i| if i % 100 == 0 { 1 } else { 0 }).collect();
        let forest =
            Forest::build(vectors, 16, Some(labels), &ForestParams::new(Metric::Angular)).unwrap();
        let query = Query::top(10).with_filter(LabelFilter::Equals(1));
        let hits = forest.search_item(5, &query);
        assert_eq!(hits.len(), 10);
        assert!(hits.iter().all(|h| forest.label(h.item) == 1));
        // More asked than exist: all 30 that pass, no more.
        let hits = forest.search_item(5, &Query::top(50).with_filter(LabelFilter::Equals(1)));
        assert_eq!(hits.len(), 30);
    }

    #[test]
    fn unlabelled_items_never_match_a_label_filter() {
        assert!(!LabelFilter::Equals(NO_LABEL).accepts(NO_LABEL));
        assert!(LabelFilter::In(vec![2, 3]).accepts(3));
    }

    #[test]
    fn duplicates_and_tiny_inputs_build_and_search() {
        let same = vec![0.5f32; 100 * 4];
        let forest = Forest::build(same, 4, None, &ForestParams::new(Metric::Angular)).unwrap();
        let hits = forest.search_item(0, &Query::top(5));
        assert_eq!(hits.len(), 5);
        assert!(hits.iter().all(|h| h.item != 0 && (h.score - 1.0).abs() < 1e-5));
        let one =
            Forest::build(vec![1.0, 2.0], 2, None, &ForestParams::new(Metric::Angular)).unwrap();
        assert!(one.search_item(0, &Query::top(3)).is_empty());
    }

    #[test]
    fn builds_are_deterministic() {
        let params = ForestParams::new(Metric::Angular);
        let a = Forest::build(random_vectors(500, 8, 1), 8, None, &params).unwrap();
        let b = Forest::build(random_vectors(500, 8, 1), 8, None, &params).unwrap();
        assert_eq!(a, b);
    }

    #[test]
    fn bad_inputs_are_errors() {
        let params = ForestParams::new(Metric::Angular);
        assert!(Forest::build(vec![1.0; 5], 2, None, &params).is_err());
        assert!(Forest::build(vec![f32::NAN, 1.0], 2, None, &params).is_err());
        assert!(Forest::build(vec![1.0; 4], 2, Some(vec![0]), &params).is_err());
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(24))]
        /// Results are sorted, unique, never the query, and at most k.
        #[test]
        fn results_are_well_formed(seed in 0u64..1000, n in 2usize..300, k in 1usize..20) {
            let forest = Forest::build(random_vectors(n, 6, seed), 6, None, &ForestParams::new(Metric::Angular)).unwrap();
            let hits = forest.search_item(0, &Query::top(k));
            prop_assert!(hits.len() <= k);
            prop_assert!(hits.iter().all(|h| h.item != 0));
            prop_assert!(hits.windows(2).all(|w| w[0].score >= w[1].score && w[0].item != w[1].item));
        }
    }
}
