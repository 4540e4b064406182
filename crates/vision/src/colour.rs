//! The colour of a product: a small histogram in a perceptual colour space
//! (CIELAB), over the product's own pixels, compared by the Bhattacharyya
//! coefficient.
//!
//! ImageNet features know what a thing is far better than what colour it is
//! (same-articleType precision@10 0.67, same baseColour 0.23 on the fashion
//! catalog), so colour is described separately and blended in by a weight
//! (see `lookalike_index::appearance`).
//!
//! - **Which pixels:** on a packshot, those that differ from the plain
//!   background (the border colour); on a photo, all of them. Pixels are
//!   weighted by a Gaussian around the centre, where the product is: a
//!   garment worn by a model has a face above it and shoes below.
//! - **Which bins:** greys by lightness (4 bins), colours by hue (12 sectors
//!   of 30°) and lightness (dark, light); a pixel's weight is shared between
//!   grey and colour by its chroma, and between neighbouring hue sectors and
//!   grey levels by distance, so a colour on a bin edge does not flip.
//! - **How compared:** the signature holds the square roots of the bins'
//!   shares, a unit vector, so the inner product of two signatures is the
//!   Bhattacharyya coefficient of the histograms (1: same colours).
//!
//! The bin layout and the centre weighting were chosen on the fashion
//! catalog (`docs/quality.md`): 28 bins reached baseColour precision@10 of
//! 0.42 alone; finer hue or lightness bins did no better.

use crate::detect::foreground::border_colour;
use image::{DynamicImage, RgbImage};
pub use lookalike_index::{COLOUR_BINS, ColourSignature, signature_row, similarity};

/// Grey levels, by lightness.
const GREY_BINS: usize = 4;
/// Hue sectors of chromatic colours.
const HUE_SECTORS: usize = 12;
/// Lightness levels of chromatic colours.
const COLOUR_LIGHTNESS_BINS: usize = 2;
// The signature's length is the index's appearance layout (COLOUR_BINS).
const _: () = assert!(GREY_BINS + HUE_SECTORS * COLOUR_LIGHTNESS_BINS == COLOUR_BINS);
/// Chroma (CIELAB) from which a pixel counts fully as coloured; below half
/// of it, fully as grey. Between, it is shared.
const FULL_CHROMA: f32 = 8.0;
/// The image is shrunk to this longer side first: colour needs few pixels.
const WORKING_SIDE: u32 = 64;
/// Width of the centre weighting, as a share of the longer side.
const CENTRE_SIGMA: f32 = 0.25;
/// A pixel is the product's when a channel differs from the background by more.
const BACKGROUND_DIFFERENCE: i32 = 24;

/// The colour signature of an image (a crop of one product, ideally).
///
/// ```
/// use image::{DynamicImage, Rgb, RgbImage};
/// use lookalike_vision::colour::{colour_signature, similarity};
/// let square = |colour: [u8; 3]| {
///     let mut image = RgbImage::from_pixel(60, 60, Rgb([255, 255, 255]));
///     for y in 15..45 { for x in 15..45 { image.put_pixel(x, y, Rgb(colour)); } }
///     colour_signature(&DynamicImage::ImageRgb8(image))
/// };
/// let (red, dark_red, blue) = (square([200, 20, 20]), square([150, 10, 10]), square([20, 40, 200]));
/// assert!(similarity(&red, &dark_red) > 0.9); // the white background is not counted
/// assert!(similarity(&red, &blue) < 0.1);
/// ```
pub fn colour_signature(image: &DynamicImage) -> ColourSignature {
    let rgb = crate::preprocess::thumbnail(image, WORKING_SIDE);
    signature_of(&rgb)
}

fn signature_of(image: &RgbImage) -> ColourSignature {
    let (width, height) = image.dimensions();
    let background = (width >= 3 && height >= 3).then(|| border_colour(image)).flatten();
    let is_product = |p: &[u8; 3]| match background {
        Some(bg) => (0..3).any(|c| (p[c] as i32 - bg[c] as i32).abs() > BACKGROUND_DIFFERENCE),
        None => true,
    };
    let mut counted: Vec<bool> = image.pixels().map(|p| is_product(&p.0)).collect();
    // A packshot whose product could not be told from its background (white
    // on white, say) is described by all its pixels rather than by none.
    if counted.iter().filter(|c| **c).count() * 100 < counted.len() {
        counted.fill(true);
    }

    let side = width.max(height) as f32;
    let sigma = CENTRE_SIGMA * side;
    let (cx, cy) = ((width as f32 - 1.0) / 2.0, (height as f32 - 1.0) / 2.0);
    let mut histogram = [0.0f32; COLOUR_BINS];
    for ((x, y, pixel), _) in
        image.enumerate_pixels().zip(&counted).filter(|(_, counted)| **counted)
    {
        let (dx, dy) = (x as f32 - cx, y as f32 - cy);
        let weight = (-(dx * dx + dy * dy) / (2.0 * sigma * sigma)).exp();
        add_pixel(&mut histogram, srgb_to_lab(pixel.0), weight);
    }
    let total: f32 = histogram.iter().sum();
    if total > 0.0 {
        for bin in &mut histogram {
            *bin = (*bin / total).sqrt();
        }
    }
    histogram
}

/// Adds one pixel's weight, shared between grey and colour bins by chroma
/// and between neighbouring bins by distance.
fn add_pixel(histogram: &mut [f32; COLOUR_BINS], [l, a, b]: [f32; 3], weight: f32) {
    let chroma = a.hypot(b);
    let coloured = ((chroma - FULL_CHROMA / 2.0) / (FULL_CHROMA / 2.0)).clamp(0.0, 1.0);

    let grey = weight * (1.0 - coloured);
    if grey > 0.0 {
        let level = (l / 100.0 * (GREY_BINS - 1) as f32).clamp(0.0, (GREY_BINS - 1) as f32);
        let low = level.floor() as usize;
        let high = (low + 1).min(GREY_BINS - 1);
        let share = level - low as f32;
        histogram[low] += grey * (1.0 - share);
        histogram[high] += grey * share;
    }

    let colour = weight * coloured;
    if colour > 0.0 {
        let turns = b.atan2(a).rem_euclid(std::f32::consts::TAU) / std::f32::consts::TAU;
        // Sector centres sit at k + 0.5; share between the two nearest.
        let position = turns * HUE_SECTORS as f32 - 0.5;
        let below = position.floor();
        let share = position - below;
        let first = (below as i32).rem_euclid(HUE_SECTORS as i32) as usize;
        let second = (first + 1) % HUE_SECTORS;
        let lightness =
            ((l / 100.0 * COLOUR_LIGHTNESS_BINS as f32) as usize).min(COLOUR_LIGHTNESS_BINS - 1);
        let bin = |sector: usize| GREY_BINS + sector * COLOUR_LIGHTNESS_BINS + lightness;
        histogram[bin(first)] += colour * (1.0 - share);
        histogram[bin(second)] += colour * share;
    }
}

/// sRGB (8-bit) to CIELAB under D65.
fn srgb_to_lab(rgb: [u8; 3]) -> [f32; 3] {
    let linear = |c: u8| {
        let c = c as f32 / 255.0;
        if c <= 0.04045 { c / 12.92 } else { ((c + 0.055) / 1.055).powf(2.4) }
    };
    let (r, g, b) = (linear(rgb[0]), linear(rgb[1]), linear(rgb[2]));
    let x = (0.4124 * r + 0.3576 * g + 0.1805 * b) / 0.9505;
    let y = 0.2126 * r + 0.7152 * g + 0.0722 * b;
    let z = (0.0193 * r + 0.1192 * g + 0.9505 * b) / 1.089;
    let f = |t: f32| if t > 0.008856 { t.cbrt() } else { 7.787 * t + 16.0 / 116.0 };
    let (fx, fy, fz) = (f(x), f(y), f(z));
    [116.0 * fy - 16.0, 500.0 * (fx - fy), 200.0 * (fy - fz)]
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::Rgb;

    fn solid(colour: [u8; 3]) -> ColourSignature {
        colour_signature(&DynamicImage::ImageRgb8(RgbImage::from_pixel(40, 40, Rgb(colour))))
    }

    #[test]
    fn signatures_are_unit_vectors() {
        for colour in [[0, 0, 0], [255, 255, 255], [10, 200, 30], [128, 128, 128]] {
            let s = solid(colour);
            assert!((similarity(&s, &s) - 1.0).abs() < 1e-4, "{colour:?}");
        }
    }

    #[test]
    fn greys_are_told_by_lightness_and_apart_from_colours() {
        let (black, white, grey, red) = (
            solid([0, 0, 0]),
            solid([250, 250, 250]),
            solid([128, 128, 128]),
            solid([220, 20, 30]),
        );
        assert!(similarity(&black, &white) < 0.05);
        assert!(similarity(&black, &grey) < similarity(&black, &black));
        assert!(similarity(&grey, &red) < 0.05);
    }

    #[test]
    fn neighbouring_hues_are_closer_than_opposite_ones() {
        // All three of lightness 43-48 (the same lightness bin): hue decides.
        let (red, orange, teal) =
            (solid([220, 30, 30]), solid([190, 80, 10]), solid([20, 120, 130]));
        assert!(similarity(&red, &orange) > 0.3, "{}", similarity(&red, &orange));
        assert!(similarity(&red, &teal) < 0.01);
    }

    #[test]
    fn the_background_of_a_packshot_is_ignored_but_a_photo_counts_whole() {
        let mut packshot = RgbImage::from_pixel(60, 60, Rgb([250, 250, 250]));
        for y in 20..40 {
            for x in 20..40 {
                packshot.put_pixel(x, y, Rgb([20, 40, 200]));
            }
        }
        let blue = solid([20, 40, 200]);
        assert!(similarity(&colour_signature(&DynamicImage::ImageRgb8(packshot)), &blue) > 0.95);
        // No plain border: every pixel counts, the white half included.
        let mut photo = RgbImage::from_pixel(60, 60, Rgb([20, 40, 200]));
        for y in 0..60 {
            for x in 0..30 {
                photo.put_pixel(x, y, Rgb([250, 250, 250]));
            }
        }
        let s = colour_signature(&DynamicImage::ImageRgb8(photo));
        assert!(similarity(&s, &blue) > 0.5 && similarity(&s, &blue) < 0.9);
    }
}
