//! Two-level k-means: the partition a paged index is laid out by.
//!
//! A static host answers a query in round trips, not in distance
//! computations, so an index that is fetched piece by piece wants a shape
//! that needs few rounds: a query picks a handful of lists from centroids it
//! already holds and fetches them in one round. A graph walk needs a round
//! per step (docs/forest.md), a random-projection tree one per level.
//!
//! The partition has two levels so that its top fits in a page's first
//! download: `coarse` cells (one per `LISTS_PER_CELL` (16) lists, shipped in
//! the head) and, inside each cell, `fine` lists of about `list_size`
//! items, whose centroids are fetched per cell. Lists of one cell are ordered so that neighbours
//! are adjacent ([`TwoLevel::train`] chains them greedily), which lets the
//! fetches of nearby lists merge into one byte range.
//!
//! Everything is trained on a sample (as Annoy-style builds do), so training
//! costs the same for a million items as for a hundred thousand; assigning
//! every item is one pass over the vectors, `coarse + fine-per-cell`
//! distances each. Deterministic for a seed, whatever the thread count.
//!
//! ```
//! use lookalike_forest::{Metric, TwoLevel};
//! let vectors: Vec<f32> = (0..400).flat_map(|i| [(i % 7) as f32, (i / 7) as f32 + 1.0]).collect();
//! let parts = TwoLevel::train(&vectors, 2, Metric::Euclidean, 50, 1).unwrap();
//! let lists = parts.assign_all(&vectors);
//! assert_eq!(lists.len(), 400);
//! assert!(parts.nearest_lists(&vectors[..2], 1, 3)[0].0 == lists[0]);
//! ```

use crate::ForestError;
use crate::metric::{self, Metric};
use rand::{RngExt, SeedableRng, rngs::StdRng};

/// Training rows per centroid: k-means needs a few dozen per centroid to
/// place it; more only adds time.
const SAMPLE_PER_CENTROID: usize = 48;
/// Lists per cell, on average: a query reads the centroid pages of a few
/// cells, so cells are small (a page of 16 centroids is 2 KB at 128
/// dimensions) and there are many of them (their centroids are the head).
pub const LISTS_PER_CELL: usize = 16;
/// Cells whose lists an item may be assigned to (about 256 lists).
pub const ASSIGN_CELLS: usize = 16;
/// Lloyd iterations; centroids of a sample settle within a handful.
const ITERATIONS: usize = 8;

/// A two-level partition: `coarse` centroids, each owning a run of `fine`
/// list centroids. List numbers run cell by cell.
#[derive(Debug, Clone, PartialEq)]
pub struct TwoLevel {
    pub dims: usize,
    pub metric: Metric,
    /// `coarse_len x dims`.
    pub coarse: Vec<f32>,
    /// Lists of cell `c` are `cell_lists[c]..cell_lists[c + 1]`.
    pub cell_lists: Vec<u32>,
    /// `list_count x dims`.
    pub fine: Vec<f32>,
}

impl TwoLevel {
    /// Trains a partition of row-major `vectors` into lists of about
    /// `list_size` items. For angular, vectors must already be unit length.
    pub fn train(
        vectors: &[f32],
        dims: usize,
        metric: Metric,
        list_size: usize,
        seed: u64,
    ) -> Result<TwoLevel, ForestError> {
        if dims == 0 {
            return Err(ForestError::ZeroDimensions);
        }
        if !vectors.len().is_multiple_of(dims) {
            return Err(ForestError::RaggedVectors { len: vectors.len(), dims });
        }
        let n = vectors.len() / dims;
        if n == 0 || list_size == 0 {
            return Err(ForestError::BadParams);
        }
        if let Some(item) =
            vectors.chunks_exact(dims).position(|v| v.iter().any(|x| !x.is_finite()))
        {
            return Err(ForestError::NonFinite { item });
        }
        let lists = n.div_ceil(list_size).max(1);
        // About as many cells as lists per cell: both levels stay small.
        let cells = lists.div_ceil(LISTS_PER_CELL).clamp(1, lists);
        let mut rng = StdRng::seed_from_u64(seed ^ 0xc1a5_7e25);

        // The fine level needs its own rows per centroid: a sample sized
        // for the cells alone would leave each list a handful.
        let sample = sample_rows(n, lists * SAMPLE_PER_CENTROID, &mut rng);
        let coarse_rows = if sample.len() > cells * SAMPLE_PER_CENTROID * 8 {
            sample_of(&sample, cells * SAMPLE_PER_CENTROID * 8, &mut rng)
        } else {
            sample.clone()
        };
        // Chained like the lists, so that a query's cells sit together.
        let coarse = chain_order(
            &kmeans(vectors, dims, &coarse_rows, cells, metric, &mut rng),
            dims,
            metric,
        );
        // Which cell each sampled row belongs to decides how many lists each
        // cell gets, in proportion to its share of the items.
        let sample_cells: Vec<u32> = sample
            .iter()
            .map(|&i| nearest(&coarse, dims, metric, row(vectors, dims, i)).0)
            .collect();
        let mut cell_lists = vec![0u32];
        let mut fine = Vec::new();
        for cell in 0..cells as u32 {
            let members: Vec<usize> = sample
                .iter()
                .zip(&sample_cells)
                .filter(|&(_, &c)| c == cell)
                .map(|(&i, _)| i)
                .collect();
            let share = members.len() as f64 / sample.len() as f64;
            let want = ((share * n as f64) / list_size as f64).round() as usize;
            let k = want.clamp(1, members.len().max(1));
            let centroids = if members.is_empty() {
                coarse[cell as usize * dims..(cell as usize + 1) * dims].to_vec()
            } else {
                let rows = if members.len() > k * SAMPLE_PER_CENTROID {
                    sample_of(&members, k * SAMPLE_PER_CENTROID, &mut rng)
                } else {
                    members
                };
                kmeans(vectors, dims, &rows, k, metric, &mut rng)
            };
            fine.extend(chain_order(&centroids, dims, metric));
            cell_lists.push((fine.len() / dims) as u32);
        }
        Ok(TwoLevel { dims, metric, coarse, cell_lists, fine })
    }

    pub fn cell_count(&self) -> usize {
        self.cell_lists.len() - 1
    }

    pub fn list_count(&self) -> usize {
        self.fine.len() / self.dims
    }

    /// The cell that owns list `list`.
    pub fn cell_of_list(&self, list: u32) -> usize {
        self.cell_lists.partition_point(|&start| start <= list) - 1
    }

    /// The list `vector` belongs to: the nearest fine centroid among the
    /// lists of its `ASSIGN_CELLS` (16) nearest cells. Looking in one cell
    /// only would put items near a cell's border into a list that a query
    /// (which ranks lists across cells) does not expect them in.
    pub fn assign(&self, vector: &[f32]) -> u32 {
        let mut best = (0u32, f32::NEG_INFINITY);
        for (cell, _) in self.nearest_cells(vector, ASSIGN_CELLS) {
            let (start, end) = self.cell_range(cell as usize);
            if start == end {
                continue;
            }
            let (list, score) = nearest(
                &self.fine[start * self.dims..end * self.dims],
                self.dims,
                self.metric,
                vector,
            );
            if score > best.1 {
                best = (start as u32 + list, score);
            }
        }
        best.0
    }

    /// [`Self::assign`] for every row (in parallel natively).
    pub fn assign_all(&self, vectors: &[f32]) -> Vec<u32> {
        #[cfg(not(target_arch = "wasm32"))]
        {
            use rayon::prelude::*;
            vectors.par_chunks_exact(self.dims).map(|v| self.assign(v)).collect()
        }
        #[cfg(target_arch = "wasm32")]
        vectors.chunks_exact(self.dims).map(|v| self.assign(v)).collect()
    }

    /// The `lists` best lists for `vector`, best first with their centroid
    /// scores, looking inside the `cells` best cells.
    pub fn nearest_lists(&self, vector: &[f32], cells: usize, lists: usize) -> Vec<(u32, f32)> {
        let cells = self.nearest_cells(vector, cells);
        let mut found = Vec::new();
        for (cell, _) in cells {
            let (start, end) = self.cell_range(cell as usize);
            for list in start..end {
                let centroid = &self.fine[list * self.dims..(list + 1) * self.dims];
                found.push((list as u32, self.metric.score(vector, centroid)));
            }
        }
        top(found, lists)
    }

    /// For every row, the `count` lists its query should probe, best first,
    /// with the row's own list (`own[i]`) first: row-major `rows x count`
    /// (in parallel natively). Lists are looked for in the `cells` best
    /// cells; fewer than `count` found are padded with the own list.
    pub fn probes_all(&self, vectors: &[f32], own: &[u32], count: usize, cells: usize) -> Vec<u32> {
        let one = |(v, &own): (&[f32], &u32)| {
            let mut probes = vec![own];
            for (list, _) in self.nearest_lists(v, cells, count + 1) {
                if list != own && probes.len() < count {
                    probes.push(list);
                }
            }
            probes.resize(count, own);
            probes
        };
        #[cfg(not(target_arch = "wasm32"))]
        {
            use rayon::prelude::*;
            vectors.par_chunks_exact(self.dims).zip(own).flat_map_iter(one).collect()
        }
        #[cfg(target_arch = "wasm32")]
        vectors.chunks_exact(self.dims).zip(own).flat_map(one).collect()
    }

    /// Drops the lists no item was assigned to (k-means trained on a
    /// sample can leave a few), renumbering `own` to match.
    pub fn without_empty_lists(mut self, mut own: Vec<u32>) -> (TwoLevel, Vec<u32>) {
        let mut counts = vec![0usize; self.list_count()];
        own.iter().for_each(|&l| counts[l as usize] += 1);
        if counts.iter().all(|&c| c > 0) {
            return (self, own);
        }
        let mut renumber = vec![u32::MAX; counts.len()];
        let mut fine = Vec::with_capacity(self.fine.len());
        let mut cell_lists = vec![0u32];
        for cell in 0..self.cell_count() {
            for list in self.cell_lists[cell] as usize..self.cell_lists[cell + 1] as usize {
                if counts[list] > 0 {
                    renumber[list] = (fine.len() / self.dims) as u32;
                    fine.extend_from_slice(&self.fine[list * self.dims..(list + 1) * self.dims]);
                }
            }
            cell_lists.push((fine.len() / self.dims) as u32);
        }
        own.iter_mut().for_each(|l| *l = renumber[*l as usize]);
        self.fine = fine;
        self.cell_lists = cell_lists;
        (self, own)
    }

    /// The `count` best cells for `vector`, best first.
    pub fn nearest_cells(&self, vector: &[f32], count: usize) -> Vec<(u32, f32)> {
        score_all(&self.coarse, self.dims, self.metric, vector, count)
    }

    fn cell_range(&self, cell: usize) -> (usize, usize) {
        (self.cell_lists[cell] as usize, self.cell_lists[cell + 1] as usize)
    }
}

/// The `count` best-scoring of row-major `centroids` for `vector`.
pub fn score_all(
    centroids: &[f32],
    dims: usize,
    metric: Metric,
    vector: &[f32],
    count: usize,
) -> Vec<(u32, f32)> {
    let scored =
        centroids.chunks_exact(dims).enumerate().map(|(i, c)| (i as u32, metric.score(vector, c)));
    top(scored.collect(), count)
}

fn top(mut scored: Vec<(u32, f32)>, count: usize) -> Vec<(u32, f32)> {
    scored.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    scored.truncate(count);
    scored
}

fn row(vectors: &[f32], dims: usize, i: usize) -> &[f32] {
    &vectors[i * dims..(i + 1) * dims]
}

fn nearest(centroids: &[f32], dims: usize, metric: Metric, vector: &[f32]) -> (u32, f32) {
    let mut best = (0u32, f32::NEG_INFINITY);
    for (i, c) in centroids.chunks_exact(dims).enumerate() {
        let score = match metric {
            // Ranking by dot product is enough for unit-length rows; for
            // Euclidean, `2 v.c - |c|^2` ranks like `-|v - c|^2`.
            Metric::Angular | Metric::Dot => metric::dot(vector, c),
            Metric::Euclidean => -metric::squared_distance(vector, c),
        };
        if score > best.1 {
            best = (i as u32, score);
        }
    }
    best
}

/// `count` distinct row numbers below `n` (all of them when `n <= count`),
/// sorted, so that reading them walks the vectors forward.
fn sample_rows(n: usize, count: usize, rng: &mut StdRng) -> Vec<usize> {
    let all: Vec<usize> = (0..n).collect();
    sample_of(&all, count, rng)
}

fn sample_of(rows: &[usize], count: usize, rng: &mut StdRng) -> Vec<usize> {
    if rows.len() <= count {
        return rows.to_vec();
    }
    // Floyd's algorithm: `count` distinct picks without shuffling all rows.
    let mut picked = std::collections::BTreeSet::new();
    for j in rows.len() - count..rows.len() {
        let t = rng.random_range(0..=j);
        if !picked.insert(t) {
            picked.insert(j);
        }
    }
    picked.into_iter().map(|i| rows[i]).collect()
}

/// Lloyd's k-means over `rows` of `vectors` (spherical for angular and dot:
/// centroids are renormalised). Seeds are distinct sample rows; a centroid
/// left empty is moved to the row farthest from its own centroid.
fn kmeans(
    vectors: &[f32],
    dims: usize,
    rows: &[usize],
    k: usize,
    metric: Metric,
    rng: &mut StdRng,
) -> Vec<f32> {
    let k = k.min(rows.len()).max(1);
    let mut centroids: Vec<f32> = sample_of(rows, k, rng)
        .iter()
        .flat_map(|&i| row(vectors, dims, i).iter().copied())
        .collect();
    let spherical = metric != Metric::Euclidean;
    for _ in 0..ITERATIONS {
        let assigned = assign_rows(vectors, dims, rows, &centroids, metric);
        let mut sums = vec![0f64; k * dims];
        let mut counts = vec![0usize; k];
        for (&i, &(c, _)) in rows.iter().zip(&assigned) {
            counts[c as usize] += 1;
            for (s, v) in sums[c as usize * dims..(c as usize + 1) * dims]
                .iter_mut()
                .zip(row(vectors, dims, i))
            {
                *s += *v as f64;
            }
        }
        // Rows sorted by how badly they fit, to reseed empty centroids.
        let mut worst: Vec<usize> = (0..rows.len()).collect();
        worst.sort_by(|&a, &b| assigned[a].1.total_cmp(&assigned[b].1));
        let mut reseed = worst.into_iter();
        for c in 0..k {
            let centroid = &mut centroids[c * dims..(c + 1) * dims];
            if counts[c] == 0 {
                if let Some(r) = reseed.next() {
                    centroid.copy_from_slice(row(vectors, dims, rows[r]));
                }
                continue;
            }
            for (v, s) in centroid.iter_mut().zip(&sums[c * dims..(c + 1) * dims]) {
                *v = (*s / counts[c] as f64) as f32;
            }
            if spherical {
                let norm = metric::dot(centroid, centroid).sqrt();
                if norm > 0.0 {
                    centroid.iter_mut().for_each(|v| *v /= norm);
                }
            }
        }
    }
    centroids
}

fn assign_rows(
    vectors: &[f32],
    dims: usize,
    rows: &[usize],
    centroids: &[f32],
    metric: Metric,
) -> Vec<(u32, f32)> {
    let one = |&i: &usize| nearest(centroids, dims, metric, row(vectors, dims, i));
    #[cfg(not(target_arch = "wasm32"))]
    {
        use rayon::prelude::*;
        rows.par_iter().map(one).collect()
    }
    #[cfg(target_arch = "wasm32")]
    rows.iter().map(one).collect()
}

/// The centroids reordered as a greedy nearest-neighbour chain, so that
/// lists next to each other in space sit next to each other in the file.
fn chain_order(centroids: &[f32], dims: usize, metric: Metric) -> Vec<f32> {
    let k = centroids.len() / dims;
    let mut left: Vec<usize> = (1..k).collect();
    let mut order = vec![0usize];
    while !left.is_empty() {
        let last = row(centroids, dims, *order.last().unwrap());
        let (pos, _) = left
            .iter()
            .enumerate()
            .map(|(p, &c)| (p, metric.score(last, row(centroids, dims, c))))
            .fold((0, f32::NEG_INFINITY), |best, x| if x.1 > best.1 { x } else { best });
        order.push(left.remove(pos));
    }
    order.into_iter().flat_map(|c| row(centroids, dims, c).iter().copied()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `groups` tight blobs of `per` unit vectors in `dims` dimensions.
    fn blobs(groups: usize, per: usize, dims: usize, seed: u64) -> Vec<f32> {
        let mut rng = StdRng::seed_from_u64(seed);
        let mut out = Vec::new();
        for _ in 0..groups {
            let centre: Vec<f32> = (0..dims).map(|_| rng.random_range(-1.0f32..1.0)).collect();
            for _ in 0..per {
                let mut v: Vec<f32> =
                    centre.iter().map(|c| c + rng.random_range(-0.05f32..0.05)).collect();
                let norm = metric::dot(&v, &v).sqrt();
                v.iter_mut().for_each(|x| *x /= norm);
                out.extend(v);
            }
        }
        out
    }

    #[test]
    fn lists_are_about_the_asked_size_and_keep_blobs_together() {
        let dims = 16;
        let vectors = blobs(40, 100, dims, 3);
        let parts = TwoLevel::train(&vectors, dims, Metric::Angular, 100, 9).unwrap();
        let lists = parts.assign_all(&vectors);
        let count = parts.list_count();
        assert!((25..=60).contains(&count), "{count} lists for 4,000 items of 100");
        assert_eq!(*parts.cell_lists.last().unwrap() as usize, count);
        // Most of each blob lands in one list.
        let mut together = 0;
        for blob in lists.chunks(100) {
            let mut counts = std::collections::HashMap::new();
            blob.iter().for_each(|l| *counts.entry(l).or_insert(0) += 1);
            together += counts.values().max().unwrap();
        }
        assert!(together >= 3_600, "{together} of 4,000 items sit with most of their blob");
        // A blob's own list is the first a query from it would probe.
        let best = parts.nearest_lists(&vectors[..dims], 2, 1)[0].0;
        assert_eq!(best, lists[0]);
        for l in 0..count as u32 {
            assert!(parts.cell_lists[parts.cell_of_list(l)] <= l);
        }
    }

    #[test]
    fn training_is_deterministic_and_refuses_bad_input() {
        let vectors = blobs(10, 50, 8, 1);
        let a = TwoLevel::train(&vectors, 8, Metric::Euclidean, 20, 5).unwrap();
        let b = TwoLevel::train(&vectors, 8, Metric::Euclidean, 20, 5).unwrap();
        assert_eq!(a, b);
        assert_eq!(
            TwoLevel::train(&vectors, 0, Metric::Angular, 20, 5),
            Err(ForestError::ZeroDimensions)
        );
        assert_eq!(TwoLevel::train(&[], 8, Metric::Angular, 20, 5), Err(ForestError::BadParams));
        let mut bad = vectors.clone();
        bad[8 * 7 + 3] = f32::NAN;
        assert_eq!(
            TwoLevel::train(&bad, 8, Metric::Angular, 20, 5),
            Err(ForestError::NonFinite { item: 7 })
        );
        // One item, one list.
        let one = TwoLevel::train(&vectors[..8], 8, Metric::Angular, 20, 5).unwrap();
        assert_eq!((one.cell_count(), one.list_count()), (1, 1));
    }
}
