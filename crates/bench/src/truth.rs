//! Ground truth for the ANN benchmarks: exact top-k by brute force, and
//! recall@k of an index's answers against it.

use lookalike_forest::{Metric, metric};
use rayon::prelude::*;

/// The exact `k` nearest base vectors of every query (row-major, `dims`
/// each), nearest first, in parallel: by cosine for the angular metric, by
/// Euclidean distance otherwise.
pub fn exact_top_k(
    base: &[f32],
    queries: &[f32],
    dims: usize,
    metric: Metric,
    k: usize,
) -> Vec<Vec<u32>> {
    let angular = metric == Metric::Angular;
    let unit = |v: &[f32]| {
        let mut v = v.to_vec();
        if angular {
            metric::normalize(&mut v);
        }
        v
    };
    let base: Vec<Vec<f32>> = base.par_chunks_exact(dims).map(unit).collect();
    queries
        .par_chunks_exact(dims)
        .map(|q| {
            let q = unit(q);
            let mut scored: Vec<(f32, u32)> = base
                .iter()
                .enumerate()
                .map(|(i, v)| {
                    let distance =
                        if angular { -metric::dot(&q, v) } else { metric::squared_distance(&q, v) };
                    (distance, i as u32)
                })
                .collect();
            if scored.len() > k {
                scored.select_nth_unstable_by(k, |a, b| a.0.total_cmp(&b.0));
                scored.truncate(k);
            }
            scored.sort_unstable_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
            scored.into_iter().map(|(_, i)| i).collect()
        })
        .collect()
}

/// Share of the true neighbours found, over all queries.
pub fn recall(truth: &[Vec<u32>], found: &[Vec<u32>]) -> f64 {
    let wanted: usize = truth.iter().map(Vec::len).sum();
    let hits: usize =
        truth.iter().zip(found).map(|(t, f)| t.iter().filter(|i| f.contains(i)).count()).sum();
    hits as f64 / wanted.max(1) as f64
}
