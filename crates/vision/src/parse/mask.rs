//! An item's mask: which cells of the parser's grid it covers. The grid
//! lies over the whole photo, so a mask answers for any pixel and can grow
//! past its item's box (see [`Mask::dilated`]).

use crate::preprocess::PAD_COLOUR;
use image::{DynamicImage, Rgb, RgbImage};

#[derive(Debug, Clone, PartialEq)]
pub struct Mask {
    /// Grid cells across and down.
    pub width: usize,
    pub height: usize,
    /// The photo the grid covers, in pixels.
    pub photo_width: u32,
    pub photo_height: u32,
    /// Row by row, `width * height`.
    pub cells: Vec<bool>,
}

impl Mask {
    /// An empty mask over a `width` x `height` grid on a photo.
    pub fn empty(width: usize, height: usize, photo_width: u32, photo_height: u32) -> Self {
        Self { width, height, photo_width, photo_height, cells: vec![false; width * height] }
    }

    /// The cell under the centre of photo pixel `(x, y)`: by centres, so a
    /// pixel is the item's exactly when its centre is inside the item's
    /// cells (and so inside its box).
    pub fn cell_of(&self, x: u32, y: u32) -> usize {
        let along = |p: u32, cells: usize, side: u32| {
            ((2 * p as u64 + 1) * cells as u64 / (2 * side.max(1) as u64)) as usize
        };
        let (cx, cy) =
            (along(x, self.width, self.photo_width), along(y, self.height, self.photo_height));
        cy.min(self.height - 1) * self.width + cx.min(self.width - 1)
    }

    /// Whether photo pixel `(x, y)` is the item's.
    pub fn contains(&self, x: u32, y: u32) -> bool {
        self.cells[self.cell_of(x, y)]
    }

    /// Whether the cell at `(x, y)` is set; `false` outside the grid.
    fn at(&self, x: isize, y: isize) -> bool {
        x >= 0
            && y >= 0
            && (x as usize) < self.width
            && (y as usize) < self.height
            && self.cells[y as usize * self.width + x as usize]
    }

    /// The mask grown by `steps` cells each way (8-connected): the grid is
    /// coarse (a cell is several pixels), and a cut-out that loses a
    /// garment's edge loses its outline, which the embedder sees more than
    /// a sliver of background.
    pub fn dilated(&self, steps: usize) -> Mask {
        let mut mask = self.clone();
        for _ in 0..steps {
            let previous = mask.clone();
            for y in 0..self.height as isize {
                for x in 0..self.width as isize {
                    let near = (-1..=1).any(|dy| (-1..=1).any(|dx| previous.at(x + dx, y + dy)));
                    mask.cells[y as usize * self.width + x as usize] = near;
                }
            }
        }
        mask
    }

    /// Whether a set cell has an unset (or outside) 4-neighbour.
    pub fn is_edge(&self, index: usize) -> bool {
        let (x, y) = ((index % self.width) as isize, (index / self.width) as isize);
        self.cells[index]
            && !(self.at(x - 1, y) && self.at(x + 1, y) && self.at(x, y - 1) && self.at(x, y + 1))
    }

    /// The region `(x, y, width, height)` of `image` with every pixel
    /// outside the mask painted the catalog's background colour: the item
    /// cut out of the street, as a packshot shows a product.
    pub fn cut_out(&self, image: &DynamicImage, region: (u32, u32, u32, u32)) -> DynamicImage {
        let (x0, y0, w, h) = region;
        let rgb = image.crop_imm(x0, y0, w, h).to_rgb8();
        let out = RgbImage::from_fn(w, h, |x, y| {
            if self.contains(x0 + x, y0 + y) { *rgb.get_pixel(x, y) } else { Rgb(PAD_COLOUR) }
        });
        DynamicImage::ImageRgb8(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cut_out_keeps_the_masked_pixels_and_whitens_the_rest() {
        // A 4 x 4 grid over a 40 x 40 photo; the item is the top-left 2 x 2 cells.
        let mut mask = Mask::empty(4, 4, 40, 40);
        for i in [0, 1, 4, 5] {
            mask.cells[i] = true;
        }
        assert!(mask.contains(19, 19) && !mask.contains(20, 5));
        let photo = DynamicImage::ImageRgb8(RgbImage::from_pixel(40, 40, Rgb([10, 20, 30])));
        let cut = mask.cut_out(&photo, (10, 10, 20, 20)).to_rgb8();
        assert_eq!(cut.get_pixel(0, 0).0, [10, 20, 30]);
        assert_eq!(cut.get_pixel(9, 9).0, [10, 20, 30]);
        assert_eq!(cut.get_pixel(10, 0).0, PAD_COLOUR);
        assert_eq!(cut.get_pixel(19, 19).0, PAD_COLOUR);
        // Grown by one cell, the 2 x 2 block becomes 3 x 3; its corner is an edge.
        let grown = mask.dilated(1);
        assert_eq!(grown.cells.iter().filter(|c| **c).count(), 9);
        assert!(grown.is_edge(0) && grown.is_edge(10) && !grown.is_edge(5));
    }
}
