//! A navigable neighbour graph over the items: the fast path of a search.
//!
//! Random-projection trees find a query's region cheaply, but to reach high
//! recall they must score thousands of candidates, most of them far from the
//! query. A graph whose links join each item to a few near and a few longer-
//! range neighbours lets a search walk greedily towards the query instead,
//! scoring only the neighbours of the best items seen so far (HNSW, NSG and
//! DiskANN's Vamana all work this way). At recall 0.95 that scores about a
//! tenth of what the trees need.
//!
//! # How it is built
//!
//! Vamana's construction (Subramanya et al., NeurIPS 2019), made
//! deterministic: items are linked in a seeded order, in batches whose
//! members search the graph as it stood before the batch (in parallel
//! natively), so the result does not depend on the thread count. Each item
//! keeps what its search visited, pruned by the *robust prune* rule: a
//! candidate is dropped when an already kept neighbour is closer to it, by a
//! factor `alpha`, than the item is (with `alpha = 1`, the relative
//! neighbourhood rule HNSW and NSG use). `alpha > 1` keeps some longer
//! links, fewer steps for a disk-resident walk; here it cost recall at
//! every pool size, so the default is 1. Every kept link is added in reverse
//! too, pruned again when a row overflows. A second pass re-links every
//! item against the finished graph, as in the paper (with the configured
//! `alpha`; the first uses 1).
//!
//! Each walk, at build and query time, starts from the medoid and from the
//! items of the leaf the forest's tree reaches for the query (EFANNA's
//! idea): it begins near the answer instead of crossing the space.
//!
//! # How it is searched
//!
//! A best-first walk with a bounded pool of `ef` candidates (HNSW's `ef`,
//! DiskANN's `L`): take the nearest candidate not yet expanded, score its
//! unvisited neighbours, keep the best `ef`, and stop when every candidate
//! in the pool has been expanded. The walk starts from the medoid. Label
//! filters, removed items and the excluded query item are walked through but
//! never returned. With re-scoring vectors, the best `4 k` of the pool (by
//! the compact codes the walk reads) are ranked again exactly.
//!
//! # Memory layout
//!
//! `links` holds `degree` u32 per item, row after row; a row's links come
//! first and unused slots hold [`NO_LINK`]. A fixed row width keeps the
//! array one flat slice that a file can view in place (and, for a paged
//! index, one item's row at a computable offset).

use super::Buf;

/// An unused slot of a row of links.
pub const NO_LINK: u32 = u32::MAX;
/// Highest degree a file may declare (bounds a row's work on hostile input).
pub const MAX_DEGREE: usize = 256;
/// Marks a pool entry as expanded (item numbers stay below 2^31).
const EXPANDED: u32 = 1 << 31;

/// How to build the neighbour graph.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GraphParams {
    /// Most links per item (Vamana's R). More links: fewer steps per search,
    /// more work per step, four bytes per link per item.
    pub degree: usize,
    /// Candidates kept while linking an item (Vamana's L). More: a better
    /// graph, a slower build.
    pub build_beam: usize,
    /// Pruning slack (Vamana's alpha), applied to distances: 1 keeps only
    /// links no kept neighbour shadows; larger keeps longer links too.
    pub alpha: f32,
}

impl Default for GraphParams {
    fn default() -> Self {
        // alpha 1.2 (DiskANN's default for SSD-resident graphs) gave lower
        // recall at every pool size on GloVe and Fashion-MNIST (docs/forest.md).
        Self { degree: 32, build_beam: 96, alpha: 1.0 }
    }
}

/// The graph: `degree` links per item and the walk's entry point.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Graph {
    pub(crate) params: GraphParams,
    /// The item nearest the centroid: where every walk starts.
    pub(crate) entry: u32,
    /// `n * degree` item numbers, [`NO_LINK`] in unused slots.
    pub(crate) links: Buf<u32>,
}

impl Graph {
    /// The links of `item` (a slice of its row up to the first unused slot).
    #[inline]
    pub(crate) fn row(&self, item: u32) -> &[u32] {
        let degree = self.params.degree;
        let row = &self.links[item as usize * degree..(item as usize + 1) * degree];
        let used = row.iter().position(|&l| l == NO_LINK).unwrap_or(degree);
        &row[..used]
    }
}

/// Which items a walk has scored: a bitset that clears only what it set,
/// so one can serve many walks over a large index.
pub(crate) struct Visited {
    bits: Vec<u64>,
    touched: Vec<u32>,
}

impl Visited {
    pub(crate) fn new(n: usize) -> Self {
        Self { bits: vec![0; n.div_ceil(64)], touched: Vec::new() }
    }

    /// Marks `item`; `true` when it was not marked before.
    #[inline]
    pub(crate) fn insert(&mut self, item: u32) -> bool {
        let (word, bit) = (item as usize / 64, 1u64 << (item % 64));
        if self.bits[word] & bit != 0 {
            return false;
        }
        self.bits[word] |= bit;
        self.touched.push(item);
        true
    }

    #[inline]
    pub(crate) fn contains(&self, item: u32) -> bool {
        self.bits[item as usize / 64] & (1u64 << (item % 64)) != 0
    }

    pub(crate) fn clear(&mut self) {
        for &item in &self.touched {
            self.bits[item as usize / 64] = 0;
        }
        self.touched.clear();
    }

    /// How many items are marked.
    pub(crate) fn count(&self) -> usize {
        self.touched.len()
    }
}

/// A walk's pool size and how many candidates it expands per step.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Beam {
    /// Candidates kept (HNSW's `ef`).
    pub(crate) ef: usize,
    /// Candidates expanded together in one step. 1 is the cheapest search
    /// in memory; more (DiskANN's beam width) trades a few more scored
    /// items for fewer sequential steps, each a round of fetches when the
    /// index is read page by page.
    pub(crate) width: usize,
}

/// What a walk did, for graph construction and the paged walk's figures.
#[derive(Debug, Default)]
pub(crate) struct Trace {
    /// Every item whose links were followed, with its distance.
    pub(crate) expanded: Vec<(f32, u32)>,
    /// Sequential steps.
    pub(crate) rounds: usize,
}

/// The best `beam.ef` items a greedy walk found, `(distance, item)` nearest
/// first.
///
/// `links(item)` gives an item's neighbours (stopping at [`NO_LINK`]),
/// `distance(item)` scores one (lower is nearer), and `prefetch(item)` may
/// start loading its vector.
pub(crate) fn walk<'g>(
    links: impl Fn(u32) -> &'g [u32],
    seeds: &[u32],
    beam: Beam,
    visited: &mut Visited,
    mut distance: impl FnMut(u32) -> f32,
    prefetch: impl Fn(u32),
    mut trace: Option<&mut Trace>,
) -> Vec<(f32, u32)> {
    let (ef, width) = (beam.ef.max(1), beam.width.max(1));
    let mut pool: Vec<(f32, u32)> = Vec::with_capacity(ef.min(4096) + 1);
    for &seed in seeds {
        if visited.insert(seed) {
            insert(&mut pool, ef, distance(seed), seed);
        }
    }
    let mut step: Vec<u32> = Vec::with_capacity(width);
    let mut cursor = 0;
    while cursor < pool.len() {
        // The nearest `width` candidates not yet expanded.
        step.clear();
        let mut at = cursor;
        while at < pool.len() && step.len() < width {
            let (dist, tagged) = pool[at];
            if tagged & EXPANDED == 0 {
                pool[at].1 |= EXPANDED;
                step.push(tagged);
                if let Some(trace) = trace.as_deref_mut() {
                    trace.expanded.push((dist, tagged));
                }
            }
            at += 1;
        }
        if let Some(trace) = trace.as_deref_mut() {
            trace.rounds += 1;
        }
        for &node in &step {
            for &next in links(node).iter().take_while(|&&l| l != NO_LINK) {
                if !visited.contains(next) {
                    prefetch(next);
                }
            }
        }
        let mut lowest = cursor;
        for &node in &step {
            for &next in links(node).iter().take_while(|&&l| l != NO_LINK) {
                if !visited.insert(next) {
                    continue;
                }
                let d = distance(next);
                if let Some(at) = insert(&mut pool, ef, d, next) {
                    lowest = lowest.min(at);
                }
            }
        }
        // Everything before `cursor` was expanded, and nothing new lies
        // before `lowest`: the next candidate is at or after the smaller.
        cursor = lowest;
        while cursor < pool.len() && pool[cursor].1 & EXPANDED != 0 {
            cursor += 1;
        }
    }
    for entry in &mut pool {
        entry.1 &= !EXPANDED;
    }
    pool
}

/// Inserts into a pool sorted by distance and bounded to `cap`; the position,
/// or `None` when the candidate is no better than a full pool's worst.
#[inline]
pub(crate) fn insert(
    pool: &mut Vec<(f32, u32)>,
    cap: usize,
    dist: f32,
    item: u32,
) -> Option<usize> {
    if pool.len() >= cap && pool.last().is_some_and(|last| dist >= last.0) {
        return None;
    }
    let at = pool.partition_point(|entry| entry.0 <= dist);
    if pool.len() >= cap {
        pool.pop();
    }
    pool.insert(at, (dist, item));
    Some(at)
}

/// `row` with the reverse links from `from` added, robust-pruned back to
/// `degree` when it overflows (the build's and `Forest::add`'s rule).
pub(crate) fn with_reverse_links(
    item: u32,
    row: &[u32],
    from: &[u32],
    degree: usize,
    alpha: f32,
    mut between: impl FnMut(u32, u32) -> f32,
) -> Vec<u32> {
    let mut merged = row.to_vec();
    for &f in from {
        if !merged.contains(&f) {
            merged.push(f);
        }
    }
    if merged.len() <= degree {
        return merged;
    }
    let candidates = merged.iter().map(|&m| (between(item, m), m)).collect();
    prune(item, candidates, degree, alpha, between)
}

/// Robust prune: from `candidates` (`(squared distance to the item,
/// candidate)`, any order, duplicates allowed), keeps up to `degree`, nearest
/// first, dropping each candidate that a kept one is nearer to, by a factor
/// `alpha` on the (unsquared) distance, than the item is. `between(a, b)` is
/// the squared distance of two items.
pub(crate) fn prune(
    item: u32,
    mut candidates: Vec<(f32, u32)>,
    degree: usize,
    alpha: f32,
    mut between: impl FnMut(u32, u32) -> f32,
) -> Vec<u32> {
    candidates.retain(|c| c.1 != item);
    candidates.sort_unstable_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
    candidates.dedup_by_key(|c| c.1);
    let slack = alpha * alpha;
    let mut kept: Vec<u32> = Vec::with_capacity(degree);
    for &(dist, candidate) in &candidates {
        if kept.len() == degree {
            break;
        }
        if kept.iter().all(|&k| slack * between(k, candidate) > dist) {
            kept.push(candidate);
        }
    }
    kept
}

#[cfg(test)]
mod tests {
    use crate::{
        Encoding, Forest, ForestParams, GraphParams, LabelFilter, Metric, NO_LABEL, Query,
        low_rank_vectors,
    };

    fn graph_params(metric: Metric, encoding: Encoding) -> ForestParams {
        ForestParams {
            n_trees: 1,
            leaf_size: 32,
            encoding,
            graph: Some(GraphParams { degree: 16, build_beam: 48, alpha: 1.2 }),
            ..ForestParams::new(metric)
        }
    }

    /// Recall@10 of queries by vector against exact search in the same forest.
    fn recall(forest: &Forest, queries: &[f32], dims: usize, ef: usize) -> f64 {
        let query = Query::top(10).with_search_k(ef);
        let mut found = 0;
        let mut total = 0;
        for q in queries.chunks_exact(dims) {
            let want = forest.exact_search_vector(q, &query).unwrap();
            let got = forest.search_vector(q, &query).unwrap();
            total += want.len();
            found += want.iter().filter(|w| got.iter().any(|g| g.item == w.item)).count();
        }
        found as f64 / total as f64
    }

    #[test]
    fn graph_search_finds_the_exact_neighbours_in_every_metric_and_encoding() {
        let dims = 24;
        let vectors = low_rank_vectors(3000, dims, 12, 0.1, 5);
        let queries = low_rank_vectors(50, dims, 12, 0.1, 6);
        for metric in [Metric::Angular, Metric::Euclidean, Metric::Dot] {
            for encoding in [Encoding::F32, Encoding::F16, Encoding::I8PerDim] {
                let forest =
                    Forest::build(vectors.clone(), dims, None, &graph_params(metric, encoding))
                        .unwrap();
                let r = recall(&forest, &queries, dims, 64);
                assert!(r >= 0.95, "{metric:?} {encoding:?}: recall@10 {r}");
                let (_, stats) =
                    forest.search_vector_traced(&queries[..dims], &Query::top(10), 1).unwrap();
                assert!(stats.rounds > 0 && stats.scored < 3000, "{stats:?}");
            }
        }
    }

    /// 4,000 items in a 24-d subspace of 32-d with noise: hard enough that
    /// the pool size matters. Returns the forest, 40 queries and the dims.
    fn harder_set() -> (Forest, Vec<f32>, usize) {
        let dims = 32;
        let vectors = low_rank_vectors(4000, dims, 24, 0.2, 8);
        let queries = low_rank_vectors(40, dims, 24, 0.2, 9);
        let params = graph_params(Metric::Angular, Encoding::F32);
        (Forest::build(vectors, dims, None, &params).unwrap(), queries, dims)
    }

    #[test]
    fn hostile_pool_sizes_and_k_are_bounded_by_the_items() {
        let vectors = low_rank_vectors(500, 8, 4, 0.1, 2);
        let forest =
            Forest::build(vectors, 8, None, &graph_params(Metric::Angular, Encoding::F16)).unwrap();
        let query =
            Query { k: usize::MAX / 2, search_k: Some(usize::MAX), filter: LabelFilter::Any };
        let hits = forest.search_item(0, &query);
        assert_eq!(hits.len(), 499);
        assert!(hits.windows(2).all(|w| w[0].score >= w[1].score));
    }

    #[test]
    fn wider_steps_take_fewer_rounds_and_find_as_much() {
        let (forest, queries, dims) = harder_set();
        let query = Query::top(10).with_search_k(48);
        let (mut rounds, mut found) = ([0usize; 2], [0usize; 2]);
        for q in queries.chunks_exact(dims) {
            let want = forest.exact_search_vector(q, &query).unwrap();
            for (i, width) in [1, 4].into_iter().enumerate() {
                let (got, stats) = forest.search_vector_traced(q, &query, width).unwrap();
                rounds[i] += stats.rounds;
                found[i] += want.iter().filter(|w| got.iter().any(|g| g.item == w.item)).count();
            }
        }
        assert!(rounds[1] * 2 < rounds[0], "rounds at width 1 and 4: {rounds:?}");
        assert!(found[1] >= found[0], "found at width 1 and 4: {found:?}");
    }

    #[test]
    fn a_larger_pool_finds_more() {
        let (forest, queries, dims) = harder_set();
        let (small, large) =
            (recall(&forest, &queries, dims, 10), recall(&forest, &queries, dims, 128));
        assert!(large > small && large >= 0.97, "ef 10: {small}, ef 128: {large}");
    }

    #[test]
    fn graph_builds_are_deterministic_and_rows_are_valid() {
        let vectors = low_rank_vectors(1500, 16, 8, 0.1, 3);
        let params = graph_params(Metric::Euclidean, Encoding::F32);
        let a = Forest::build(vectors.clone(), 16, None, &params).unwrap();
        let b = Forest::build(vectors, 16, None, &params).unwrap();
        assert_eq!(a, b);
        let graph = a.graph.as_ref().unwrap();
        for item in 0..1500 {
            let row = graph.row(item);
            assert!(!row.is_empty() && row.len() <= 16, "item {item}: {} links", row.len());
            assert!(row.iter().all(|&l| l != item && (l as usize) < 1500));
        }
    }

    #[test]
    fn filters_removals_and_the_query_item_are_respected() {
        let n = 3000;
        let vectors = low_rank_vectors(n, 16, 8, 0.1, 4);
        // Label 1 is rare (every 150th item): the walk rarely meets 10, so
        // the trees answer, and still return 10.
        let labels: Vec<u32> = (0..n)
            .map(|i| {
                if i % 150 == 0 {
                    1
                } else if i % 2 == 0 {
                    0
                } else {
                    NO_LABEL
                }
            })
            .collect();
        let mut forest =
            Forest::build(vectors, 16, Some(labels), &graph_params(Metric::Angular, Encoding::F16))
                .unwrap();
        let rare = forest.search_item(7, &Query::top(10).with_filter(LabelFilter::Equals(1)));
        assert_eq!(rare.len(), 10);
        assert!(rare.iter().all(|h| forest.label(h.item) == 1));
        let common = forest.search_item(7, &Query::top(10).with_filter(LabelFilter::Equals(0)));
        assert_eq!(common.len(), 10);
        assert!(common.iter().all(|h| forest.label(h.item) == 0 && h.item != 7));
        let before = forest.search_item(7, &Query::top(10));
        assert!(before.iter().all(|h| h.item != 7));
        forest.remove(before[0].item);
        let after = forest.search_item(7, &Query::top(10));
        assert!(after.iter().all(|h| h.item != before[0].item), "a removed item came back");
        assert_eq!(after.len(), 10);
    }

    #[test]
    fn added_items_are_linked_and_found() {
        let dims = 16;
        let vectors = low_rank_vectors(2200, dims, 8, 0.1, 12);
        let params = graph_params(Metric::Euclidean, Encoding::I8PerDim);
        let mut forest =
            Forest::build(vectors[..2000 * dims].to_vec(), dims, None, &params).unwrap();
        for v in vectors[2000 * dims..].chunks_exact(dims) {
            forest.add(v, NO_LABEL).unwrap();
        }
        let graph = forest.graph.as_ref().unwrap();
        assert_eq!(graph.links.len(), 2200 * 16);
        // Every added item is its own nearest neighbour when searched for.
        let mut found = 0;
        for (i, v) in vectors[2000 * dims..].chunks_exact(dims).enumerate() {
            let hits = forest.search_vector(v, &Query::top(1)).unwrap();
            found += usize::from(hits[0].item == 2000 + i as u32);
        }
        assert!(found >= 195, "{found} of 200 added items found by their own vector");
        let r = recall(&forest, &vectors[2000 * dims..2050 * dims], dims, 64);
        assert!(r >= 0.95, "recall@10 after adding: {r}");
    }
}
