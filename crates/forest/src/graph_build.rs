//! Building the neighbour graph: Vamana's two passes, in deterministic
//! batches (the method is described in [`graph`](super::graph)).

use super::graph::{
    Beam, Graph, GraphParams, NO_LINK, Trace, Visited, prune, walk, with_reverse_links,
};
use super::metric;
use rand::{SeedableRng, rngs::StdRng, seq::SliceRandom};

/// The largest batch of items linked against one state of the graph. Small
/// enough that a batch's members rarely need each other (the graph stays as
/// good as a one-at-a-time build), large enough to keep every core busy.
fn batch_limit(n: usize) -> usize {
    (n / 100).clamp(1, 2048)
}

/// Tree-space vectors with their squared norms: the distances a build uses.
pub(crate) struct Points<'a> {
    vectors: &'a [f32],
    dims: usize,
    norms: Vec<f32>,
}

impl<'a> Points<'a> {
    pub(crate) fn new(vectors: &'a [f32], dims: usize) -> Self {
        let norms = vectors.chunks_exact(dims).map(|v| metric::dot(v, v)).collect();
        Self { vectors, dims, norms }
    }

    #[inline]
    pub(crate) fn vector(&self, item: u32) -> &[f32] {
        &self.vectors[item as usize * self.dims..(item as usize + 1) * self.dims]
    }

    /// Squared Euclidean distance of two items; for unit vectors (angular)
    /// and the dot metric's equal-norm augmented vectors, it orders pairs as
    /// their similarity does.
    #[inline]
    pub(crate) fn between(&self, a: u32, b: u32) -> f32 {
        let dot = metric::dot(self.vector(a), self.vector(b));
        (self.norms[a as usize] + self.norms[b as usize] - 2.0 * dot).max(0.0)
    }

    fn len(&self) -> usize {
        self.norms.len()
    }

    /// The item nearest the centroid.
    fn medoid(&self) -> u32 {
        let mut centroid = vec![0.0f64; self.dims];
        for v in self.vectors.chunks_exact(self.dims) {
            centroid.iter_mut().zip(v).for_each(|(c, &x)| *c += x as f64);
        }
        let centroid: Vec<f32> = centroid.iter().map(|&c| (c / self.len() as f64) as f32).collect();
        (0..self.len() as u32)
            .map(|i| (metric::squared_distance(&centroid, self.vector(i)), i))
            .min_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)))
            .map_or(0, |(_, i)| i)
    }
}

/// Builds the graph over `points` (all items), from a seeded order; each
/// item's walk starts from the entry point and `seeds(item)` (the trees'
/// leaves).
pub(crate) fn build_graph(
    points: &Points,
    params: &GraphParams,
    seed: u64,
    seeds: impl Fn(u32) -> Vec<u32> + Sync,
) -> Graph {
    let n = points.len();
    let degree = params.degree.clamp(1, super::graph::MAX_DEGREE);
    let params = GraphParams { degree, ..*params };
    let entry = points.medoid();
    let mut order: Vec<u32> = (0..n as u32).collect();
    order.shuffle(&mut StdRng::seed_from_u64(seed ^ 0x0067_7261_7068));
    if let Some(at) = order.iter().position(|&i| i == entry) {
        order.swap(0, at);
    }
    let mut rows: Vec<Vec<u32>> = vec![Vec::new(); n];
    for pass in 0..2 {
        // The first pass links with alpha 1 (the tightest graph), the second
        // with the configured slack, adding the long links.
        let alpha = if pass == 0 { 1.0 } else { params.alpha };
        let (mut start, mut batch) = (0, 1);
        while start < n {
            let end = (start + batch).min(n);
            link_batch(points, &mut rows, &order[start..end], entry, &seeds, &params, alpha);
            start = end;
            // Prefix doubling: the first items, which shape the graph most,
            // are linked nearly one at a time.
            batch = if pass == 0 { (batch * 2).min(batch_limit(n)) } else { batch_limit(n) };
        }
    }
    let mut links = vec![NO_LINK; n * degree];
    for (item, row) in rows.iter().enumerate() {
        links[item * degree..item * degree + row.len()].copy_from_slice(row);
    }
    Graph { params, entry, links: links.into() }
}

/// Links each member of a batch: a walk towards it on the graph as it stood
/// before the batch, robust prune of what the walk visited, then the reverse
/// links, pruned where a row overflows.
fn link_batch(
    points: &Points,
    rows: &mut [Vec<u32>],
    members: &[u32],
    entry: u32,
    seeds: &(impl Fn(u32) -> Vec<u32> + Sync),
    params: &GraphParams,
    alpha: f32,
) {
    let graph: &[Vec<u32>] = rows;
    let new_rows = map_with_visited(members, points.len(), |visited, &item| {
        let mut trace = Trace::default();
        let mut starts = vec![entry];
        starts.extend(seeds(item));
        let pool = walk(
            |i| graph[i as usize].as_slice(),
            &starts,
            Beam { ef: params.build_beam, width: 1 },
            visited,
            |other| points.between(item, other),
            |_| {},
            Some(&mut trace),
        );
        visited.clear();
        let mut expanded = trace.expanded;
        expanded.extend(pool);
        expanded.extend(graph[item as usize].iter().map(|&j| (points.between(item, j), j)));
        prune(item, expanded, params.degree, alpha, |a, b| points.between(a, b))
    });
    for (&item, row) in members.iter().zip(new_rows) {
        rows[item as usize] = row;
    }

    // Reverse links, grouped by the row they join, in a fixed order.
    let mut back: Vec<(u32, u32)> = members
        .iter()
        .flat_map(|&item| rows[item as usize].iter().map(move |&to| (to, item)))
        .collect();
    back.sort_unstable();
    let mut groups: Vec<(u32, Vec<u32>)> = Vec::new();
    for (to, from) in back {
        match groups.last_mut() {
            Some((last, froms)) if *last == to => froms.push(from),
            _ => groups.push((to, vec![from])),
        }
    }
    let graph: &[Vec<u32>] = rows;
    let updated = map_with_visited(&groups, 0, |_, (to, froms)| {
        let row = &graph[*to as usize];
        with_reverse_links(*to, row, froms, params.degree, alpha, |a, b| points.between(a, b))
    });
    for ((to, _), row) in groups.iter().zip(updated) {
        rows[*to as usize] = row;
    }
}

/// Maps `items` in parallel natively (each thread with its own visited set
/// over `n` items), in order in wasm; results keep the input order.
fn map_with_visited<T: Sync, R: Send>(
    items: &[T],
    n: usize,
    work: impl Fn(&mut Visited, &T) -> R + Sync + Send,
) -> Vec<R> {
    #[cfg(not(target_arch = "wasm32"))]
    {
        use rayon::prelude::*;
        items.par_iter().map_init(|| Visited::new(n), |visited, item| work(visited, item)).collect()
    }
    #[cfg(target_arch = "wasm32")]
    {
        let mut visited = Visited::new(n);
        items.iter().map(|item| work(&mut visited, item)).collect()
    }
}
