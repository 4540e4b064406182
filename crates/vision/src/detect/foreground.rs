//! The product in a packshot, without any model: catalog images show one
//! product on a plain background, so the product is whatever differs from
//! the colour of the border.

use super::boxes::BBox;
use image::RgbImage;

/// A pixel belongs to the product when any channel differs from the
/// background by more than this (JPEG noise on white stays well below).
const DIFFERENCE: i32 = 24;
/// Rows or columns with fewer product pixels than this share are background
/// (a stray speck or a shadow line does not widen the box).
const MIN_LINE_SHARE: f32 = 0.01;

/// The box around the product, or `None` when the background is not plain
/// (a photo, not a packshot) or nothing stands out from it.
///
/// ```
/// use image::{Rgb, RgbImage};
/// let mut image = RgbImage::from_pixel(100, 80, Rgb([255, 255, 255]));
/// for y in 20..60 { for x in 30..50 { image.put_pixel(x, y, Rgb([200, 30, 30])); } }
/// let b = lookalike_vision::detect::foreground_box(&image).unwrap();
/// assert_eq!((b.x0, b.y0, b.x1, b.y1), (30.0, 20.0, 50.0, 60.0));
/// ```
pub fn foreground_box(image: &RgbImage) -> Option<BBox> {
    let (w, h) = image.dimensions();
    if w < 3 || h < 3 {
        return None;
    }
    let background = border_colour(image)?;
    let differs = |x: u32, y: u32| {
        let p = image.get_pixel(x, y).0;
        (0..3).any(|c| (p[c] as i32 - background[c] as i32).abs() > DIFFERENCE)
    };
    let mut columns = vec![0u32; w as usize];
    let mut rows = vec![0u32; h as usize];
    for y in 0..h {
        for x in 0..w {
            if differs(x, y) {
                columns[x as usize] += 1;
                rows[y as usize] += 1;
            }
        }
    }
    let span = |counts: &[u32], across: u32| {
        let min = ((across as f32 * MIN_LINE_SHARE).ceil() as u32).max(1);
        let first = counts.iter().position(|&c| c >= min)?;
        let last = counts.iter().rposition(|&c| c >= min)?;
        Some((first as f32, last as f32 + 1.0))
    };
    let (x0, x1) = span(&columns, h)?;
    let (y0, y1) = span(&rows, w)?;
    Some(BBox::new(x0, y0, x1, y1))
}

/// The background colour: the median of the border pixels, provided most of
/// the border is close to it (else the image has no plain background).
pub fn border_colour(image: &RgbImage) -> Option<[u8; 3]> {
    let (w, h) = image.dimensions();
    let mut border: Vec<[u8; 3]> = Vec::with_capacity(2 * (w + h) as usize);
    for x in 0..w {
        border.push(image.get_pixel(x, 0).0);
        border.push(image.get_pixel(x, h - 1).0);
    }
    for y in 1..h - 1 {
        border.push(image.get_pixel(0, y).0);
        border.push(image.get_pixel(w - 1, y).0);
    }
    let median = |c: usize| {
        let mut v: Vec<u8> = border.iter().map(|p| p[c]).collect();
        v.sort_unstable();
        v[v.len() / 2]
    };
    let colour = [median(0), median(1), median(2)];
    let close = border
        .iter()
        .filter(|p| (0..3).all(|c| (p[c] as i32 - colour[c] as i32).abs() <= DIFFERENCE))
        .count();
    (close * 10 >= border.len() * 8).then_some(colour)
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::Rgb;

    #[test]
    fn a_busy_background_is_not_a_packshot() {
        let image = RgbImage::from_fn(40, 40, |x, y| Rgb([(x * 6) as u8, (y * 6) as u8, 0]));
        assert_eq!(foreground_box(&image), None);
    }

    #[test]
    fn specks_do_not_widen_the_box() {
        let mut image = RgbImage::from_pixel(200, 200, Rgb([250, 250, 250]));
        for y in 50..150 {
            for x in 60..140 {
                image.put_pixel(x, y, Rgb([10, 10, 120]));
            }
        }
        image.put_pixel(5, 190, Rgb([0, 0, 0]));
        let b = foreground_box(&image).unwrap();
        assert_eq!((b.x0, b.y0, b.x1, b.y1), (60.0, 50.0, 140.0, 150.0));
    }

    #[test]
    fn a_blank_image_has_no_product() {
        assert_eq!(foreground_box(&RgbImage::from_pixel(30, 30, Rgb([255, 255, 255]))), None);
    }
}
