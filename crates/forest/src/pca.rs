//! A linear projection to fewer dimensions, learned at build time by PCA.
//!
//! CNN embeddings use a small part of their 1280 dimensions; projecting onto
//! the leading principal subspace shrinks every stored vector and hyperplane
//! by the same factor while keeping the neighbourhoods. Only the subspace
//! matters (dot products are unchanged by a rotation inside it), so it is
//! found by randomized subspace iteration, without an eigensolver.
//!
//! The basis is rounded to f16 as soon as it is fitted, so the vectors stored
//! at build time and the queries projected later use exactly the same basis,
//! whether it came from memory or from the index file.

use super::metric;
use rand::{RngExt, SeedableRng, rngs::StdRng};

/// Vectors sampled to fit the projection; more adds time, not accuracy.
const FIT_SAMPLE: usize = 8192;
/// Subspace iterations; 4 to 6 capture the dominant subspace of embeddings.
const ITERATIONS: usize = 5;

#[derive(Debug, Clone, PartialEq)]
pub struct Projection {
    pub in_dims: usize,
    pub out_dims: usize,
    /// Subtracted before projecting (zero when centring would change the metric).
    pub mean: Vec<f32>,
    /// `out_dims` orthonormal rows of `in_dims`.
    pub basis: Vec<f32>,
}

impl Projection {
    /// Fits a projection of row-major `vectors` onto `out_dims` dimensions.
    pub fn fit(
        vectors: &[f32],
        in_dims: usize,
        out_dims: usize,
        centre: bool,
        seed: u64,
    ) -> Projection {
        let n = vectors.len() / in_dims;
        let mut rng = StdRng::seed_from_u64(seed ^ 0x9ca);
        let sample: Vec<usize> = if n <= FIT_SAMPLE {
            (0..n).collect()
        } else {
            (0..FIT_SAMPLE).map(|_| rng.random_range(0..n)).collect()
        };
        let mut mean = vec![0.0f32; in_dims];
        if centre {
            for &i in &sample {
                for (m, v) in mean.iter_mut().zip(&vectors[i * in_dims..(i + 1) * in_dims]) {
                    *m += v;
                }
            }
            mean.iter_mut().for_each(|m| *m /= sample.len() as f32);
        }
        let centred: Vec<f32> = sample
            .iter()
            .flat_map(|&i| {
                vectors[i * in_dims..(i + 1) * in_dims].iter().zip(&mean).map(|(v, m)| v - m)
            })
            .collect();

        let mut basis: Vec<f32> =
            (0..out_dims * in_dims).map(|_| rng.random_range(-1.0f32..1.0)).collect();
        orthonormalise(&mut basis, in_dims);
        for _ in 0..ITERATIONS {
            let scores = multiply_rows(&centred, &basis, in_dims); // sample x out
            basis = accumulate(&centred, &scores, in_dims, out_dims); // out x in
            orthonormalise(&mut basis, in_dims);
        }
        basis.iter_mut().for_each(|v| *v = half::f16::from_f32(*v).to_f32());
        mean.iter_mut().for_each(|v| *v = half::f16::from_f32(*v).to_f32());
        Projection { in_dims, out_dims, mean, basis }
    }

    /// Projects one vector.
    pub fn apply(&self, vector: &[f32]) -> Vec<f32> {
        let centred: Vec<f32> = vector.iter().zip(&self.mean).map(|(v, m)| v - m).collect();
        self.basis.chunks_exact(self.in_dims).map(|row| metric::dot(row, &centred)).collect()
    }

    /// Projects many vectors (in parallel natively).
    pub fn apply_all(&self, vectors: &[f32]) -> Vec<f32> {
        let centred: Vec<f32> = vectors
            .chunks_exact(self.in_dims)
            .flat_map(|v| v.iter().zip(&self.mean).map(|(x, m)| x - m))
            .collect();
        multiply_rows(&centred, &self.basis, self.in_dims)
    }
}

/// `rows (m x d)` times `basis (k x d)` transposed: `m x k`.
fn multiply_rows(rows: &[f32], basis: &[f32], dims: usize) -> Vec<f32> {
    let project =
        |row: &[f32]| basis.chunks_exact(dims).map(|b| metric::dot(row, b)).collect::<Vec<f32>>();
    #[cfg(not(target_arch = "wasm32"))]
    {
        use rayon::prelude::*;
        rows.par_chunks_exact(dims).flat_map_iter(project).collect()
    }
    #[cfg(target_arch = "wasm32")]
    {
        rows.chunks_exact(dims).flat_map(project).collect()
    }
}

/// `scores (m x k)` transposed times `rows (m x d)`: `k x d`.
fn accumulate(rows: &[f32], scores: &[f32], dims: usize, k: usize) -> Vec<f32> {
    let partial = |(row_chunk, score_chunk): (&[f32], &[f32])| {
        let mut out = vec![0.0f32; k * dims];
        for (row, s) in row_chunk.chunks_exact(dims).zip(score_chunk.chunks_exact(k)) {
            for (j, &weight) in s.iter().enumerate() {
                for (o, v) in out[j * dims..(j + 1) * dims].iter_mut().zip(row) {
                    *o += weight * v;
                }
            }
        }
        out
    };
    const CHUNK: usize = 256;
    // Partial sums are added in a fixed order, so builds are reproducible.
    #[cfg(not(target_arch = "wasm32"))]
    let partials: Vec<Vec<f32>> = {
        use rayon::prelude::*;
        rows.par_chunks(CHUNK * dims).zip(scores.par_chunks(CHUNK * k)).map(partial).collect()
    };
    #[cfg(target_arch = "wasm32")]
    let partials: Vec<Vec<f32>> =
        rows.chunks(CHUNK * dims).zip(scores.chunks(CHUNK * k)).map(partial).collect();
    partials.into_iter().fold(vec![0.0; k * dims], |mut sum, part| {
        sum.iter_mut().zip(part).for_each(|(x, y)| *x += y);
        sum
    })
}

/// Modified Gram-Schmidt on the rows of `basis`.
fn orthonormalise(basis: &mut [f32], dims: usize) {
    let k = basis.len() / dims;
    for j in 0..k {
        for i in 0..j {
            let (done, rest) = basis.split_at_mut(j * dims);
            let earlier = &done[i * dims..(i + 1) * dims];
            let current = &mut rest[..dims];
            let projection = metric::dot(current, earlier);
            current.iter_mut().zip(earlier).for_each(|(c, e)| *c -= projection * e);
        }
        metric::normalize(&mut basis[j * dims..(j + 1) * dims]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recovers_a_low_rank_subspace() {
        // 500 points in a random 3-d subspace of 20-d, plus an offset.
        let vectors: Vec<f32> =
            super::super::low_rank_vectors(500, 20, 3, 0.0, 4).iter().map(|v| v + 5.0).collect();
        let p = Projection::fit(&vectors, 20, 3, true, 1);
        // Distances survive the projection.
        let projected = p.apply_all(&vectors);
        for (a, b) in [(0usize, 1usize), (2, 3), (10, 400)] {
            let full = metric::squared_distance(
                &vectors[a * 20..(a + 1) * 20],
                &vectors[b * 20..(b + 1) * 20],
            );
            let low = metric::squared_distance(
                &projected[a * 3..(a + 1) * 3],
                &projected[b * 3..(b + 1) * 3],
            );
            assert!((full - low).abs() < 0.01 * full.max(1.0), "{full} vs {low}");
        }
        assert_eq!(p.apply(&vectors[..20]), projected[..3].to_vec());
    }
}
