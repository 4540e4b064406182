//! The parser's items drawn over the photo: each item's mask tinted in its
//! class's colour, its outline solid. One RGBA layer the size of the photo,
//! which the page puts on a canvas over the shopper's photo and the native
//! tool writes as a PNG (`lookalike detect --overlay`): the same pixels.

use super::{Mask, Part};
use crate::detect::BBox;
use image::{Rgba, RgbaImage};

/// Opacity of a mask's inside and of its outline.
const FILL_ALPHA: u8 = 90;
const OUTLINE_ALPHA: u8 = 255;

/// A colour per class, far apart in hue where classes meet on a body.
fn colour(part: Part) -> [u8; 3] {
    match part {
        Part::UpperBody => [230, 60, 60],
        Part::Outerwear => [240, 150, 30],
        Part::LowerBody => [40, 110, 230],
        Part::FullLength => [170, 60, 200],
        Part::Shoes => [30, 180, 90],
        Part::Bag => [240, 210, 20],
        Part::Hat => [20, 200, 210],
        Part::Glasses => [120, 120, 120],
        Part::Belt => [140, 90, 40],
        Part::Accessory => [240, 100, 180],
        Part::Background | Part::Skin | Part::Hair => [0, 0, 0],
    }
}

/// The overlay for `items` (class, box, mask) on a `width` x `height`
/// photo: transparent where no item is; later items are drawn under
/// earlier ones (pass them best first).
pub fn overlay(items: &[(Part, BBox, &Mask)], width: u32, height: u32) -> RgbaImage {
    let mut layer = RgbaImage::new(width, height);
    for (part, bbox, mask) in items.iter().rev() {
        let edges: Vec<bool> = (0..mask.cells.len()).map(|i| mask.is_edge(i)).collect();
        let [r, g, b] = colour(*part);
        let (x0, y0, w, h) = bbox.pixels(width, height);
        for y in y0..y0 + h {
            for x in x0..x0 + w {
                let cell = mask.cell_of(x, y);
                if !mask.cells[cell] {
                    continue;
                }
                let alpha = if edges[cell] { OUTLINE_ALPHA } else { FILL_ALPHA };
                layer.put_pixel(x, y, Rgba([r, g, b, alpha]));
            }
        }
    }
    layer
}
