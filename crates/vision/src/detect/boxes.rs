//! Axis-aligned boxes, overlap and non-maximum suppression.

use serde::{Deserialize, Serialize};

/// A box in pixels of the image it was found in: `[x0, y0)` to `[x1, y1)`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct BBox {
    pub x0: f32,
    pub y0: f32,
    pub x1: f32,
    pub y1: f32,
}

impl BBox {
    pub fn new(x0: f32, y0: f32, x1: f32, y1: f32) -> Self {
        Self { x0: x0.min(x1), y0: y0.min(y1), x1: x0.max(x1), y1: y0.max(y1) }
    }

    pub fn width(&self) -> f32 {
        self.x1 - self.x0
    }

    pub fn height(&self) -> f32 {
        self.y1 - self.y0
    }

    pub fn area(&self) -> f32 {
        self.width().max(0.0) * self.height().max(0.0)
    }

    /// Intersection over union; 0 for disjoint or empty boxes.
    ///
    /// ```
    /// use lookalike_vision::detect::BBox;
    /// let a = BBox::new(0.0, 0.0, 10.0, 10.0);
    /// let b = BBox::new(5.0, 0.0, 15.0, 10.0);
    /// assert!((a.iou(&b) - 1.0 / 3.0).abs() < 1e-6);
    /// ```
    pub fn iou(&self, other: &BBox) -> f32 {
        let w = (self.x1.min(other.x1) - self.x0.max(other.x0)).max(0.0);
        let h = (self.y1.min(other.y1) - self.y0.max(other.y0)).max(0.0);
        let inter = w * h;
        let union = self.area() + other.area() - inter;
        if union <= 0.0 { 0.0 } else { inter / union }
    }

    /// Clipped to a `width` x `height` image.
    pub fn clip(&self, width: f32, height: f32) -> BBox {
        BBox::new(
            self.x0.clamp(0.0, width),
            self.y0.clamp(0.0, height),
            self.x1.clamp(0.0, width),
            self.y1.clamp(0.0, height),
        )
    }

    /// Scaled about its centre by `fx` horizontally and `fy` vertically.
    pub fn scaled(&self, fx: f32, fy: f32) -> BBox {
        let (cx, cy) = ((self.x0 + self.x1) / 2.0, (self.y0 + self.y1) / 2.0);
        let (hw, hh) = (self.width() * fx / 2.0, self.height() * fy / 2.0);
        BBox::new(cx - hw, cy - hh, cx + hw, cy + hh)
    }

    /// The smallest box holding both.
    pub fn union(&self, other: &BBox) -> BBox {
        BBox::new(
            self.x0.min(other.x0),
            self.y0.min(other.y0),
            self.x1.max(other.x1),
            self.y1.max(other.y1),
        )
    }

    /// Whole pixels `(x, y, width, height)` inside a `width` x `height` image,
    /// at least one pixel each way.
    pub fn pixels(&self, width: u32, height: u32) -> (u32, u32, u32, u32) {
        let clip = self.clip(width as f32, height as f32);
        let x = (clip.x0.floor() as u32).min(width.saturating_sub(1));
        let y = (clip.y0.floor() as u32).min(height.saturating_sub(1));
        let x1 = (clip.x1.ceil() as u32).clamp(x + 1, width.max(x + 1));
        let y1 = (clip.y1.ceil() as u32).clamp(y + 1, height.max(y + 1));
        (x, y, x1 - x, y1 - y)
    }
}

/// Greedy non-maximum suppression: keeps the best-scoring boxes, dropping any
/// that overlaps a kept one by more than `iou_threshold`. Returns indices
/// into `boxes`, best first.
pub fn nms(boxes: &[BBox], scores: &[f32], iou_threshold: f32) -> Vec<usize> {
    let mut order: Vec<usize> = (0..boxes.len()).collect();
    order.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]));
    let mut kept: Vec<usize> = Vec::new();
    for i in order {
        if kept.iter().all(|&k| boxes[k].iou(&boxes[i]) <= iou_threshold) {
            kept.push(i);
        }
    }
    kept
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nms_keeps_the_best_of_each_cluster() {
        let boxes = [
            BBox::new(0.0, 0.0, 10.0, 10.0),
            BBox::new(1.0, 1.0, 11.0, 11.0),
            BBox::new(50.0, 50.0, 60.0, 60.0),
        ];
        assert_eq!(nms(&boxes, &[0.5, 0.9, 0.7], 0.5), vec![1, 2]);
        assert_eq!(nms(&boxes, &[0.5, 0.9, 0.7], 0.9), vec![1, 2, 0]);
    }

    #[test]
    fn pixels_stay_inside_the_image() {
        assert_eq!(BBox::new(-5.0, 2.4, 8.2, 30.0).pixels(10, 20), (0, 2, 9, 18));
        assert_eq!(BBox::new(12.0, 25.0, 15.0, 30.0).pixels(10, 20), (9, 19, 1, 1));
    }
}
