//! A product's colour signature as the index stores and compares it: the
//! square roots of a small perceptual histogram's bin shares (a unit vector),
//! so the inner product of two is the histograms' Bhattacharyya coefficient.
//! How the histogram is computed from pixels is the vision crate's
//! `colour` module; this is all the browsing side needs.

/// Length of a colour signature: 4 grey levels, then 12 hue sectors of 30°
/// at 2 lightness levels (`lookalike-vision` checks its bins add up to it).
pub const COLOUR_BINS: usize = 28;

/// A product's colours: square roots of the histogram's bin shares (a unit
/// vector; the inner product of two is their Bhattacharyya coefficient).
pub type ColourSignature = [f32; COLOUR_BINS];

/// Row `item` of signatures stored row-major (`COLOUR_BINS` values each).
pub fn signature_row(rows: &[f32], item: usize) -> &ColourSignature {
    rows[item * COLOUR_BINS..(item + 1) * COLOUR_BINS]
        .try_into()
        .expect("rows hold whole signatures")
}

/// The Bhattacharyya coefficient of two signatures' histograms, in [0, 1].
pub fn similarity(a: &ColourSignature, b: &ColourSignature) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}
