//! Distance functions. Every metric reports a *score* where higher means more
//! alike, so ranking code never needs to know which metric it sorts by.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Metric {
    /// Cosine similarity; vectors are normalised to unit length when added.
    Angular,
    /// Negative Euclidean distance.
    Euclidean,
    /// Inner product (maximum inner product search). Trees are built with
    /// Annoy's reduction to the angular case: each item gets one extra
    /// coordinate `sqrt(M^2 - |x|^2)`, so all items share the norm `M` and a
    /// query (extra coordinate 0) ranks them by inner product.
    Dot,
}

impl Metric {
    pub fn to_code(self) -> u8 {
        match self {
            Metric::Angular => 0,
            Metric::Euclidean => 1,
            Metric::Dot => 2,
        }
    }

    pub fn from_code(code: u8) -> Option<Metric> {
        match code {
            0 => Some(Metric::Angular),
            1 => Some(Metric::Euclidean),
            2 => Some(Metric::Dot),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Metric::Angular => "angular",
            Metric::Euclidean => "euclidean",
            Metric::Dot => "dot",
        }
    }

    pub fn from_name(name: &str) -> Option<Metric> {
        [Metric::Angular, Metric::Euclidean, Metric::Dot].into_iter().find(|m| m.name() == name)
    }

    /// Similarity of two vectors as stored (unit length for angular).
    #[inline]
    pub fn score(self, a: &[f32], b: &[f32]) -> f32 {
        match self {
            Metric::Angular | Metric::Dot => dot(a, b),
            Metric::Euclidean => -squared_distance(a, b).sqrt(),
        }
    }
}

/// Dot product of two f32 vectors.
#[inline]
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    dot_with(a, b)
}

/// Dot product of an f32 vector with 8-bit codes: the inner loop of every
/// compact search.
#[inline]
pub fn dot_i8(a: &[f32], b: &[i8]) -> f32 {
    dot_with(a, b)
}

/// What a dot product's second operand can be: f32 values or 8-bit codes,
/// each with its own SIMD kernels.
trait Lane: Copy + Into<f32> {
    #[cfg(target_arch = "x86_64")]
    /// # Safety
    /// The CPU must support AVX2 and FMA.
    unsafe fn avx2_dot(a: &[f32], b: &[Self]) -> f32;
    #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
    fn simd128_dot(a: &[f32], b: &[Self]) -> f32;
}

impl Lane for f32 {
    #[cfg(target_arch = "x86_64")]
    unsafe fn avx2_dot(a: &[f32], b: &[f32]) -> f32 {
        // SAFETY: forwarded from the caller.
        unsafe { x86::dot(a, b) }
    }
    #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
    fn simd128_dot(a: &[f32], b: &[f32]) -> f32 {
        wasm_simd::dot(a, b)
    }
}

impl Lane for i8 {
    #[cfg(target_arch = "x86_64")]
    unsafe fn avx2_dot(a: &[f32], b: &[i8]) -> f32 {
        // SAFETY: forwarded from the caller.
        unsafe { x86::dot_i8(a, b) }
    }
    #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
    fn simd128_dot(a: &[f32], b: &[i8]) -> f32 {
        wasm_simd::dot_i8(a, b)
    }
}

/// The one place that picks a kernel: explicit SIMD128 in wasm, AVX2+FMA on
/// x86-64 CPUs that have it (checked at run time), else portable lanes.
#[inline]
fn dot_with<T: Lane>(a: &[f32], b: &[T]) -> f32 {
    #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
    return T::simd128_dot(a, b);
    #[cfg(target_arch = "x86_64")]
    if x86::has_avx2_fma() {
        // SAFETY: the CPU supports AVX2 and FMA (checked just above).
        return unsafe { T::avx2_dot(a, b) };
    }
    #[cfg(not(all(target_arch = "wasm32", target_feature = "simd128")))]
    portable_dot(a, b)
}

/// Dot product in eight independent lanes (a single running sum would
/// serialise the adds), which LLVM vectorises for any target.
#[inline]
#[cfg_attr(all(target_arch = "wasm32", target_feature = "simd128"), allow(dead_code))]
fn portable_dot<T: Copy + Into<f32>>(a: &[f32], b: &[T]) -> f32 {
    debug_assert_eq!(a.len(), b.len());
    let mut lanes = [0.0f32; 8];
    let chunks_a = a.chunks_exact(8);
    let chunks_b = b.chunks_exact(8);
    let tail: f32 =
        chunks_a.remainder().iter().zip(chunks_b.remainder()).map(|(x, &y)| x * y.into()).sum();
    for (ca, cb) in chunks_a.zip(chunks_b) {
        for i in 0..8 {
            lanes[i] += ca[i] * cb[i].into();
        }
    }
    lanes.iter().sum::<f32>() + tail
}

#[inline]
pub fn squared_distance(a: &[f32], b: &[f32]) -> f32 {
    debug_assert_eq!(a.len(), b.len());
    let mut lanes = [0.0f32; 8];
    let chunks_a = a.chunks_exact(8);
    let chunks_b = b.chunks_exact(8);
    let tail: f32 =
        chunks_a.remainder().iter().zip(chunks_b.remainder()).map(|(x, y)| (x - y) * (x - y)).sum();
    for (ca, cb) in chunks_a.zip(chunks_b) {
        for i in 0..8 {
            let d = ca[i] - cb[i];
            lanes[i] += d * d;
        }
    }
    lanes.iter().sum::<f32>() + tail
}

/// AVX2 + FMA kernels, chosen at run time: the binary still runs on any
/// x86-64, and uses 256-bit lanes where the CPU has them.
#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    #[inline]
    pub fn has_avx2_fma() -> bool {
        is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma")
    }

    #[target_feature(enable = "avx")]
    fn sum(v: __m256) -> f32 {
        let halves = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
        let pairs = _mm_add_ps(halves, _mm_movehl_ps(halves, halves));
        _mm_cvtss_f32(_mm_add_ss(pairs, _mm_shuffle_ps(pairs, pairs, 1)))
    }

    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn dot(a: &[f32], b: &[f32]) -> f32 {
        assert_eq!(a.len(), b.len());
        let whole = a.len() / 16 * 16;
        let (mut acc0, mut acc1) = (_mm256_setzero_ps(), _mm256_setzero_ps());
        let mut i = 0;
        while i < whole {
            // SAFETY: i + 16 <= len for both slices; unaligned loads.
            unsafe {
                acc0 = _mm256_fmadd_ps(
                    _mm256_loadu_ps(a.as_ptr().add(i)),
                    _mm256_loadu_ps(b.as_ptr().add(i)),
                    acc0,
                );
                acc1 = _mm256_fmadd_ps(
                    _mm256_loadu_ps(a.as_ptr().add(i + 8)),
                    _mm256_loadu_ps(b.as_ptr().add(i + 8)),
                    acc1,
                );
            }
            i += 16;
        }
        let lanes = sum(_mm256_add_ps(acc0, acc1));
        lanes + a[whole..].iter().zip(&b[whole..]).map(|(x, y)| x * y).sum::<f32>()
    }

    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn dot_i8(a: &[f32], b: &[i8]) -> f32 {
        assert_eq!(a.len(), b.len());
        let whole = a.len() / 16 * 16;
        let (mut acc0, mut acc1) = (_mm256_setzero_ps(), _mm256_setzero_ps());
        let mut i = 0;
        while i < whole {
            // SAFETY: i + 16 <= len for both slices; unaligned loads.
            unsafe {
                let codes = _mm_loadu_si128(b.as_ptr().add(i) as *const __m128i);
                let low = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(codes));
                let high = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128(codes, 8)));
                acc0 = _mm256_fmadd_ps(_mm256_loadu_ps(a.as_ptr().add(i)), low, acc0);
                acc1 = _mm256_fmadd_ps(_mm256_loadu_ps(a.as_ptr().add(i + 8)), high, acc1);
            }
            i += 16;
        }
        let lanes = sum(_mm256_add_ps(acc0, acc1));
        lanes + a[whole..].iter().zip(&b[whole..]).map(|(x, &y)| x * y as f32).sum::<f32>()
    }
}

#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
mod wasm_simd {
    use core::arch::wasm32::*;

    #[inline]
    pub fn dot(a: &[f32], b: &[f32]) -> f32 {
        assert_eq!(a.len(), b.len());
        let whole = a.len() / 8 * 8;
        let (mut acc0, mut acc1) = (f32x4_splat(0.0), f32x4_splat(0.0));
        let mut i = 0;
        while i < whole {
            // SAFETY: i + 8 <= len for both slices; wasm loads need no alignment.
            unsafe {
                let pa = a.as_ptr().add(i) as *const v128;
                let pb = b.as_ptr().add(i) as *const v128;
                acc0 = f32x4_add(acc0, f32x4_mul(v128_load(pa), v128_load(pb)));
                acc1 = f32x4_add(acc1, f32x4_mul(v128_load(pa.add(1)), v128_load(pb.add(1))));
            }
            i += 8;
        }
        let acc = f32x4_add(acc0, acc1);
        let lanes = f32x4_extract_lane::<0>(acc)
            + f32x4_extract_lane::<1>(acc)
            + f32x4_extract_lane::<2>(acc)
            + f32x4_extract_lane::<3>(acc);
        lanes + a[whole..].iter().zip(&b[whole..]).map(|(x, y)| x * y).sum::<f32>()
    }

    #[inline]
    pub fn dot_i8(a: &[f32], b: &[i8]) -> f32 {
        assert_eq!(a.len(), b.len());
        let whole = a.len() / 16 * 16;
        let (mut acc0, mut acc1) = (f32x4_splat(0.0), f32x4_splat(0.0));
        let mut i = 0;
        while i < whole {
            // SAFETY: i + 16 <= len for both slices; wasm loads need no alignment.
            unsafe {
                let codes = v128_load(b.as_ptr().add(i) as *const v128);
                let (low, high) = (i16x8_extend_low_i8x16(codes), i16x8_extend_high_i8x16(codes));
                let pa = a.as_ptr().add(i) as *const v128;
                let c0 = f32x4_convert_i32x4(i32x4_extend_low_i16x8(low));
                let c1 = f32x4_convert_i32x4(i32x4_extend_high_i16x8(low));
                let c2 = f32x4_convert_i32x4(i32x4_extend_low_i16x8(high));
                let c3 = f32x4_convert_i32x4(i32x4_extend_high_i16x8(high));
                acc0 = f32x4_add(acc0, f32x4_mul(v128_load(pa), c0));
                acc1 = f32x4_add(acc1, f32x4_mul(v128_load(pa.add(1)), c1));
                acc0 = f32x4_add(acc0, f32x4_mul(v128_load(pa.add(2)), c2));
                acc1 = f32x4_add(acc1, f32x4_mul(v128_load(pa.add(3)), c3));
            }
            i += 16;
        }
        let acc = f32x4_add(acc0, acc1);
        let lanes = f32x4_extract_lane::<0>(acc)
            + f32x4_extract_lane::<1>(acc)
            + f32x4_extract_lane::<2>(acc)
            + f32x4_extract_lane::<3>(acc);
        lanes + a[whole..].iter().zip(&b[whole..]).map(|(x, &y)| x * y as f32).sum::<f32>()
    }
}

/// Scales `v` to unit length in place; the zero vector is left as is.
pub fn normalize(v: &mut [f32]) {
    let norm = dot(v, v).sqrt();
    if norm > 0.0 {
        v.iter_mut().for_each(|x| *x /= norm);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dot_matches_naive_for_odd_lengths() {
        for n in [0, 1, 7, 8, 9, 15, 16, 17, 31, 33, 1280] {
            let a: Vec<f32> = (0..n).map(|i| (i % 13) as f32 * 0.5).collect();
            let b: Vec<f32> = (0..n).map(|i| 1.0 - (i % 7) as f32).collect();
            let codes: Vec<i8> = (0..n).map(|i| ((i * 37) % 255) as i8).collect();
            let naive: f32 = a.iter().zip(&b).map(|(x, y)| x * y).sum();
            let naive_i8: f32 = a.iter().zip(&codes).map(|(x, &y)| x * y as f32).sum();
            assert!((dot(&a, &b) - naive).abs() <= 1e-3 * naive.abs().max(1.0), "n={n}");
            assert!(
                (dot_i8(&a, &codes) - naive_i8).abs() <= 1e-3 * naive_i8.abs().max(1.0),
                "n={n}"
            );
            assert!((portable_dot(&a, &codes) - naive_i8).abs() <= 1e-3 * naive_i8.abs().max(1.0));
        }
    }

    #[test]
    fn scores_order_by_similarity() {
        let a = [1.0, 0.0];
        let near = [0.9, 0.1];
        let far = [0.0, 1.0];
        for metric in [Metric::Angular, Metric::Euclidean, Metric::Dot] {
            assert!(metric.score(&a, &near) > metric.score(&a, &far), "{metric:?}");
            assert_eq!(Metric::from_name(metric.name()), Some(metric));
        }
    }
}
