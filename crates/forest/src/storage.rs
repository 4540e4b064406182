//! How the forest keeps its item vectors: exact f32, half precision, or 8-bit
//! codes with a scale per vector or per dimension.
//!
//! Whatever the encoding, a candidate is scored the same way: a dot product
//! of the f32 query with the stored codes, dequantised on the fly. For 8-bit
//! codes the scale folds into that dot product (per vector: one multiply at
//! the end; per dimension: into the query once per search), so scoring reads
//! one byte per dimension and no decoded copy is ever made.

use super::{Buf, metric};

/// The encoding of stored vectors.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Encoding {
    /// 4 bytes per value, exact.
    F32,
    /// 2 bytes per value; relative error about 1e-3.
    #[default]
    F16,
    /// 1 byte per value, one f32 scale per vector (`max |x| / 127`): suits
    /// raw embeddings, whose dimensions have similar ranges.
    I8PerVector,
    /// 1 byte per value, one f32 scale and centre per dimension: suits PCA
    /// outputs, whose leading dimensions have far larger ranges than the
    /// trailing ones, and non-negative features, whose range is not centred.
    I8PerDim,
}

impl Encoding {
    pub fn code(self) -> u8 {
        match self {
            Encoding::F32 => 0,
            Encoding::F16 => 1,
            Encoding::I8PerVector => 2,
            Encoding::I8PerDim => 3,
        }
    }

    pub fn from_code(code: u8) -> Option<Self> {
        Some(match code {
            0 => Encoding::F32,
            1 => Encoding::F16,
            2 => Encoding::I8PerVector,
            3 => Encoding::I8PerDim,
            _ => return None,
        })
    }

    /// Bytes per stored value.
    pub fn width(self) -> usize {
        match self {
            Encoding::F32 => 4,
            Encoding::F16 => 2,
            Encoding::I8PerVector | Encoding::I8PerDim => 1,
        }
    }

    /// How many scales a store of `n` vectors of `dims` has.
    pub fn scale_count(self, n: usize, dims: usize) -> usize {
        match self {
            Encoding::F32 | Encoding::F16 => 0,
            Encoding::I8PerVector => n,
            Encoding::I8PerDim => 2 * dims,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Encoding::F32 => "f32",
            Encoding::F16 => "f16",
            Encoding::I8PerVector => "i8-vector",
            Encoding::I8PerDim => "i8-dim",
        }
    }

    pub fn from_name(name: &str) -> Option<Self> {
        [Encoding::F32, Encoding::F16, Encoding::I8PerVector, Encoding::I8PerDim]
            .into_iter()
            .find(|e| e.name() == name)
    }
}

/// The stored vectors, in their encoding.
#[derive(Debug, Clone, PartialEq)]
pub enum VectorStore {
    /// Exact values; F16 files are widened to this on load, trading memory
    /// for the fastest scoring.
    F32 { values: Buf<f32>, from_f16: bool },
    /// Per vector: one scale per vector. Per dimension: `dims` scales, then
    /// `dims` centres (files from before centres have only the scales; their
    /// centres are zero).
    I8 { codes: Buf<i8>, scales: Buf<f32>, per_dim: bool },
}

impl VectorStore {
    /// Encodes row-major `values` (`dims` per vector).
    pub fn encode(values: Vec<f32>, dims: usize, encoding: Encoding) -> VectorStore {
        match encoding {
            Encoding::F32 => VectorStore::F32 { values: values.into(), from_f16: false },
            Encoding::F16 => VectorStore::F32 {
                values: values
                    .iter()
                    .map(|&v| half::f16::from_f32(v).to_f32())
                    .collect::<Vec<_>>()
                    .into(),
                from_f16: true,
            },
            Encoding::I8PerVector => {
                let mut codes = Vec::with_capacity(values.len());
                let mut scales = Vec::with_capacity(values.len() / dims.max(1));
                for row in values.chunks_exact(dims) {
                    let scale = scale_for(row.iter().copied());
                    scales.push(scale);
                    codes.extend(row.iter().map(|&v| quantize(v, scale)));
                }
                VectorStore::I8 { codes: codes.into(), scales: scales.into(), per_dim: false }
            }
            Encoding::I8PerDim => {
                // Each dimension's codes span its own range with zero in it,
                // centred on that range: non-negative inputs (pixels, ReLU
                // features) use all 255 levels, not just the positive half,
                // and items added later between zero and the maximum fit.
                let (mut scales, mut centres) =
                    (Vec::with_capacity(dims), Vec::with_capacity(dims));
                for d in 0..dims {
                    let column = || values.iter().skip(d).step_by(dims).copied();
                    let low = column().fold(0.0f32, f32::min);
                    let high = column().fold(0.0f32, f32::max);
                    let centre = (low + high) / 2.0;
                    scales.push(scale_for(column().map(|v| v - centre)));
                    centres.push(centre);
                }
                let codes: Vec<i8> = values
                    .iter()
                    .enumerate()
                    .map(|(i, &v)| quantize(v - centres[i % dims], scales[i % dims]))
                    .collect();
                scales.extend(centres);
                VectorStore::I8 { codes: codes.into(), scales: scales.into(), per_dim: true }
            }
        }
    }

    /// Whether the store holds exactly `n` vectors of `dims` values (with
    /// their scales, for 8-bit codes).
    pub fn holds(&self, n: usize, dims: usize) -> bool {
        let Some(values) = n.checked_mul(dims) else { return false };
        match self {
            VectorStore::F32 { values: v, .. } => v.len() == values,
            VectorStore::I8 { codes, scales, per_dim } => {
                let expected = self.encoding().scale_count(n, dims);
                codes.len() == values
                    && (scales.len() == expected || (*per_dim && scales.len() == dims))
            }
        }
    }

    pub fn encoding(&self) -> Encoding {
        match self {
            VectorStore::F32 { from_f16: false, .. } => Encoding::F32,
            VectorStore::F32 { from_f16: true, .. } => Encoding::F16,
            VectorStore::I8 { per_dim: false, .. } => Encoding::I8PerVector,
            VectorStore::I8 { per_dim: true, .. } => Encoding::I8PerDim,
        }
    }

    /// Number of stored values (vectors x dims).
    pub fn value_count(&self) -> usize {
        match self {
            VectorStore::F32 { values, .. } => values.len(),
            VectorStore::I8 { codes, .. } => codes.len(),
        }
    }

    /// Bytes of the encoded values and scales, as written to a file.
    pub fn encoded_bytes(&self) -> usize {
        let scales = match self {
            VectorStore::I8 { scales, .. } => scales.len() * 4,
            VectorStore::F32 { .. } => 0,
        };
        self.value_count() * self.encoding().width() + scales
    }

    /// The (dequantised) vector of `item`.
    pub fn decode(&self, item: usize, dims: usize) -> Vec<f32> {
        let range = item * dims..(item + 1) * dims;
        match self {
            VectorStore::F32 { values, .. } => values[range].to_vec(),
            VectorStore::I8 { codes, scales, per_dim: false } => {
                codes[range].iter().map(|&c| c as f32 * scales[item]).collect()
            }
            VectorStore::I8 { codes, scales, per_dim: true } => codes[range]
                .iter()
                .enumerate()
                .map(|(d, &c)| c as f32 * scales[d] + centre(scales, dims, d))
                .collect(),
        }
    }

    /// Prepares a query for [`VectorStore::dot`]: for per-dimension scales the
    /// scales are folded into the query once, instead of into every product,
    /// and the centres into one constant, appended.
    pub fn prepare_query(&self, query: &[f32]) -> Vec<f32> {
        match self {
            VectorStore::I8 { scales, per_dim: true, .. } => {
                let dims = query.len();
                let constant: f32 =
                    query.iter().enumerate().map(|(d, q)| q * centre(scales, dims, d)).sum();
                let mut prepared: Vec<f32> =
                    query.iter().zip(scales.iter()).map(|(q, s)| q * s).collect();
                prepared.push(constant);
                prepared
            }
            _ => query.to_vec(),
        }
    }

    /// Dot product of a prepared query with stored item `item`.
    #[inline]
    pub fn dot(&self, prepared: &[f32], item: usize) -> f32 {
        let dims = prepared.len();
        let range = item * dims..(item + 1) * dims;
        match self {
            VectorStore::F32 { values, .. } => metric::dot(prepared, &values[range]),
            VectorStore::I8 { codes, scales, per_dim: false } => {
                metric::dot_i8(prepared, &codes[range]) * scales[item]
            }
            VectorStore::I8 { codes, per_dim: true, .. } => {
                // The prepared query ends with the centres' constant.
                let dims = dims - 1;
                let range = item * dims..(item + 1) * dims;
                metric::dot_i8(&prepared[..dims], &codes[range]) + prepared[dims]
            }
        }
    }

    /// Starts loading the first cache lines of item `item` (a graph walk
    /// scores neighbours whose vectors are scattered over the store).
    #[inline]
    pub fn prefetch(&self, item: usize, dims: usize) {
        #[cfg(target_arch = "x86_64")]
        {
            use std::arch::x86_64::{_MM_HINT_T0, _mm_prefetch};
            let (start, bytes) = match self {
                VectorStore::F32 { values, .. } => {
                    (values.as_ptr().wrapping_add(item * dims) as *const i8, dims * 4)
                }
                VectorStore::I8 { codes, .. } => (codes.as_ptr().wrapping_add(item * dims), dims),
            };
            // A prefetch never faults; the address is inside the store anyway.
            for line in (0..bytes.min(256)).step_by(64) {
                // SAFETY: prefetching is a hint and cannot fault.
                unsafe { _mm_prefetch::<_MM_HINT_T0>(start.wrapping_add(line)) };
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        let _ = (item, dims);
    }

    /// Squared Euclidean distance of an unprepared query to item `item`.
    pub fn squared_distance(&self, query: &[f32], item: usize) -> f32 {
        match self {
            VectorStore::F32 { values, .. } => {
                let dims = query.len();
                metric::squared_distance(query, &values[item * dims..(item + 1) * dims])
            }
            VectorStore::I8 { .. } => {
                metric::squared_distance(query, &self.decode(item, query.len()))
            }
        }
    }

    /// Appends one vector (incremental add). 8-bit stores with per-dimension
    /// scales clamp values outside the scales they were built with.
    pub fn push(&mut self, vector: &[f32]) {
        match self {
            VectorStore::F32 { values, from_f16 } => {
                if *from_f16 {
                    values
                        .make_mut()
                        .extend(vector.iter().map(|&v| half::f16::from_f32(v).to_f32()));
                } else {
                    values.make_mut().extend_from_slice(vector);
                }
            }
            VectorStore::I8 { codes, scales, per_dim: false } => {
                let scale = scale_for(vector.iter().copied());
                scales.make_mut().push(scale);
                codes.make_mut().extend(vector.iter().map(|&v| quantize(v, scale)));
            }
            VectorStore::I8 { codes, scales, per_dim: true } => {
                let dims = vector.len();
                let quantized: Vec<i8> = vector
                    .iter()
                    .zip(scales.iter())
                    .enumerate()
                    .map(|(d, (&v, &s))| quantize(v - centre(scales, dims, d), s))
                    .collect();
                codes.make_mut().extend(quantized);
            }
        }
    }

    /// Whether the vectors are viewed in place in a loaded file.
    pub fn is_shared(&self) -> bool {
        match self {
            VectorStore::F32 { values, .. } => values.is_shared(),
            VectorStore::I8 { codes, .. } => codes.is_shared(),
        }
    }
}

/// The centre of dimension `d` of a per-dimension store (zero in files
/// from before centres).
#[inline]
fn centre(scales: &[f32], dims: usize, d: usize) -> f32 {
    if scales.len() == 2 * dims { scales[dims + d] } else { 0.0 }
}

fn scale_for(values: impl Iterator<Item = f32>) -> f32 {
    let max = values.fold(0.0f32, |m, v| m.max(v.abs()));
    if max > 0.0 { max / 127.0 } else { 1.0 }
}

fn quantize(value: f32, scale: f32) -> i8 {
    (value / scale).round().clamp(-127.0, 127.0) as i8
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Vec<f32> {
        (0..64 * 16)
            .map(|i| ((i * 37 % 101) as f32 - 50.0) / 50.0 * if i % 16 < 4 { 10.0 } else { 1.0 })
            .collect()
    }

    #[test]
    fn every_encoding_scores_close_to_exact() {
        let values = sample();
        let query: Vec<f32> = (0..16).map(|i| (i as f32 - 8.0) / 8.0).collect();
        let exact = VectorStore::encode(values.clone(), 16, Encoding::F32);
        for encoding in [Encoding::F16, Encoding::I8PerVector, Encoding::I8PerDim] {
            let store = VectorStore::encode(values.clone(), 16, encoding);
            assert_eq!(store.encoding(), encoding);
            let prepared = store.prepare_query(&query);
            for item in 0..64 {
                let want = exact.dot(&query, item);
                let got = store.dot(&prepared, item);
                assert!(
                    (want - got).abs() < 0.02 * (1.0 + want.abs()) + 0.1,
                    "{encoding:?} item {item}: {want} vs {got}"
                );
            }
        }
    }

    #[test]
    fn byte_sizes_follow_the_encoding() {
        let values = sample();
        let size = |e| VectorStore::encode(values.clone(), 16, e).encoded_bytes();
        assert_eq!(size(Encoding::F32), 64 * 16 * 4);
        assert_eq!(size(Encoding::F16), 64 * 16 * 2);
        assert_eq!(size(Encoding::I8PerVector), 64 * 16 + 64 * 4);
        assert_eq!(size(Encoding::I8PerDim), 64 * 16 + 2 * 16 * 4);
    }

    #[test]
    fn pushed_vectors_decode_like_built_ones() {
        let values = sample();
        // Inside the range the first 63 vectors span (per-dimension codes
        // clamp what lies outside it).
        let pushed: Vec<f32> = values[63 * 16..].iter().map(|v| v * 0.9).collect();
        for encoding in [Encoding::F32, Encoding::F16, Encoding::I8PerVector, Encoding::I8PerDim] {
            let mut store = VectorStore::encode(values[..63 * 16].to_vec(), 16, encoding);
            store.push(&pushed);
            let decoded = store.decode(63, 16);
            let diff = decoded.iter().zip(&pushed).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max);
            assert!(diff < 0.1, "{encoding:?}: {diff}");
        }
    }

    #[test]
    fn per_dimension_codes_use_the_whole_range_of_non_negative_data() {
        // Pixels: 0..=255. Centred codes step by about 1, where codes
        // symmetric around zero would step by 2.
        let values: Vec<f32> = (0..256 * 4).map(|i| (i / 4) as f32).collect();
        let store = VectorStore::encode(values.clone(), 4, Encoding::I8PerDim);
        let worst = (0..256)
            .flat_map(|item| {
                let decoded = store.decode(item, 4);
                decoded.into_iter().zip(&values[item * 4..item * 4 + 4]).map(|(a, b)| (a - b).abs())
            })
            .fold(0.0f32, f32::max);
        assert!(worst <= 0.51, "worst error {worst}");
        // Files from before centres (scales only) decode with zero centres.
        let VectorStore::I8 { codes, scales, .. } = &store else { unreachable!() };
        let legacy = VectorStore::I8 {
            codes: codes.clone(),
            scales: scales[..4].to_vec().into(),
            per_dim: true,
        };
        assert!(legacy.holds(256, 4));
        assert_eq!(legacy.decode(0, 4)[0], codes[0] as f32 * scales[0]);
    }
}
