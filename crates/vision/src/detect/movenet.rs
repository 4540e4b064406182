//! MoveNet (single pose): 17 body keypoints of the most central person.
//!
//! The graph's backbone and four heads run on Burn; its own post-processing
//! (argmax, gathers) is cut off and done here, following MoveNet's decoding:
//! pick the person centre from the centre heatmap (weighted towards the
//! image centre), regress each joint's rough position from there, then take
//! the heatmap peak nearest that guess and refine it by the offset head.

use super::DetectError;
use super::boxes::BBox;
use super::readback::read_values;
use crate::model::tfjs::{GraphModel, Program, TfjsError};
use crate::preprocess::resize_rgb;
use burn::tensor::{Device, Tensor, TensorData};
use image::RgbImage;

pub const KEYPOINTS: usize = 17;
/// Keypoint indices in MoveNet's (COCO's) order.
pub mod joint {
    pub const NOSE: usize = 0;
    pub const LEFT_SHOULDER: usize = 5;
    pub const RIGHT_SHOULDER: usize = 6;
    pub const LEFT_ELBOW: usize = 7;
    pub const RIGHT_ELBOW: usize = 8;
    pub const LEFT_WRIST: usize = 9;
    pub const RIGHT_WRIST: usize = 10;
    pub const LEFT_HIP: usize = 11;
    pub const RIGHT_HIP: usize = 12;
    pub const LEFT_KNEE: usize = 13;
    pub const RIGHT_KNEE: usize = 14;
    pub const LEFT_ANKLE: usize = 15;
    pub const RIGHT_ANKLE: usize = 16;
}

const HEATMAP: &str = "StatefulPartitionedCall/Sigmoid";
const CENTRE: &str = "StatefulPartitionedCall/truediv_2";
const REGRESS: &str = "StatefulPartitionedCall/kpt_regress_0/conv2d_6/BiasAdd";
const OFFSET: &str = "StatefulPartitionedCall/kpt_offset_0/conv2d_7/BiasAdd";
/// Added to the distance when weighting heatmap peaks by closeness.
const DISTANCE_BIAS: &str = "StatefulPartitionedCall/add_5/y";

/// A joint in source-image pixels with the heatmap's confidence.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Keypoint {
    pub x: f32,
    pub y: f32,
    pub score: f32,
}

#[derive(Debug, Clone)]
pub struct MoveNet {
    program: Program,
    side: usize,
    distance_bias: f32,
    device: Device,
}

impl MoveNet {
    pub fn new(graph: &GraphModel, device: &Device) -> Result<Self, TfjsError> {
        let side = 192;
        let program = Program::compile(
            graph,
            &[HEATMAP, CENTRE, REGRESS, OFFSET],
            &[1, side, side, 3],
            device,
        )?;
        let distance_bias = graph
            .constants
            .get(DISTANCE_BIAS)
            .and_then(|t| t.to_f32().first().copied())
            .filter(|b| b.is_finite())
            .unwrap_or(1.8);
        Ok(Self { program, side, distance_bias, device: device.clone() })
    }

    /// Letterboxes to the square input (MoveNet expects undistorted people);
    /// returns the input and the scale and offsets that map back.
    fn input(&self, image: &RgbImage) -> (Tensor<4>, f32, f32, f32) {
        let side = self.side as u32;
        let scale = side as f32 / image.width().max(image.height()) as f32;
        let (w, h) = (
            ((image.width() as f32 * scale).round() as u32).max(1),
            ((image.height() as f32 * scale).round() as u32).max(1),
        );
        let resized = resize_rgb(image, w.min(side), h.min(side));
        let (left, top) = ((side - resized.width()) / 2, (side - resized.height()) / 2);
        let mut data = vec![0f32; (side * side * 3) as usize];
        for (x, y, pixel) in resized.enumerate_pixels() {
            let at = (((y + top) * side + x + left) * 3) as usize;
            for c in 0..3 {
                data[at + c] = pixel.0[c] as f32;
            }
        }
        let tensor =
            Tensor::from_data(TensorData::new(data, [1, self.side, self.side, 3]), &self.device);
        (tensor, scale, left as f32, top as f32)
    }

    pub async fn keypoints(&self, image: &RgbImage) -> Result<[Keypoint; KEYPOINTS], DetectError> {
        let (input, scale, left, top) = self.input(image);
        let values = self.program.run(input)?;
        let grid = values.first().and_then(|v| v.shape.get(1).copied()).unwrap_or(0);
        let out = read_values(values, "pose model").await?;
        // The outputs' sizes come from the graph: check them before indexing.
        let cells = grid * grid;
        let expected = [cells * KEYPOINTS, cells, cells * 2 * KEYPOINTS, cells * 2 * KEYPOINTS];
        if grid == 0 || out.len() != 4 || out.iter().zip(expected).any(|(o, n)| o.len() != n) {
            let found = out.iter().map(Vec::len).collect();
            return Err(DetectError::OutputSizes {
                model: "pose model",
                found,
                expected: expected.to_vec(),
            });
        }
        let points = decode(&out[0], &out[1], &out[2], &out[3], grid, self.distance_bias);
        let cell = self.side as f32 / grid as f32;
        Ok(points.map(|(gy, gx, score)| Keypoint {
            x: (gx * cell - left) / scale,
            y: (gy * cell - top) / scale,
            score,
        }))
    }
}

/// MoveNet's decoding on host arrays (all `[grid, grid, channels]`, row-major).
/// Returns, per joint, (y, x) in grid cells and its score.
fn decode(
    heatmap: &[f32],
    centre: &[f32],
    regress: &[f32],
    offset: &[f32],
    grid: usize,
    distance_bias: f32,
) -> [(f32, f32, f32); KEYPOINTS] {
    let argmax = |values: &mut dyn Iterator<Item = f32>| {
        values
            .enumerate()
            .fold((0, f32::NEG_INFINITY), |best, (i, v)| if v > best.1 { (i, v) } else { best })
            .0
    };
    let c = argmax(&mut centre.iter().copied());
    let (cy, cx) = (c / grid, c % grid);
    std::array::from_fn(|k| {
        let at = (cy * grid + cx) * 2 * KEYPOINTS + 2 * k;
        let (ry, rx) = (cy as f32 + regress[at], cx as f32 + regress[at + 1]);
        let best = argmax(&mut (0..grid * grid).map(|cell| {
            let (y, x) = ((cell / grid) as f32, (cell % grid) as f32);
            let distance = ((y - ry).powi(2) + (x - rx).powi(2)).sqrt();
            heatmap[cell * KEYPOINTS + k] / (distance + distance_bias)
        }));
        let (ky, kx) = (best / grid, best % grid);
        let o = (ky * grid + kx) * 2 * KEYPOINTS + 2 * k;
        // The offset head refines the peak cell to the joint, in cells.
        (ky as f32 + offset[o], kx as f32 + offset[o + 1], heatmap[best * KEYPOINTS + k])
    })
}

/// A box around the joints in `joints` whose score is at least `min_score`,
/// or `None` when fewer than `needed` are visible.
pub fn joints_box(
    points: &[Keypoint; KEYPOINTS],
    joints: &[usize],
    min_score: f32,
    needed: usize,
) -> Option<(BBox, f32)> {
    let seen: Vec<&Keypoint> =
        joints.iter().map(|&j| &points[j]).filter(|p| p.score >= min_score).collect();
    if seen.len() < needed.max(1) {
        return None;
    }
    let mut b = BBox::new(seen[0].x, seen[0].y, seen[0].x, seen[0].y);
    for p in &seen[1..] {
        b = b.union(&BBox::new(p.x, p.y, p.x, p.y));
    }
    let score = seen.iter().map(|p| p.score).sum::<f32>() / joints.len() as f32;
    Some((b, score))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decoding_follows_the_regressed_guess_to_the_nearest_peak() {
        let grid = 4;
        let mut centre = vec![0.0; grid * grid];
        centre[grid + 1] = 1.0; // person centre at (1, 1)
        let mut regress = vec![0.0; grid * grid * 2 * KEYPOINTS];
        let mut heatmap = vec![0.0; grid * grid * KEYPOINTS];
        let offset = vec![0.25; grid * grid * 2 * KEYPOINTS];
        // Joint 0: guess (3, 3); two equal peaks, at (3, 2) and (0, 0): the near one wins.
        regress[(grid + 1) * 2 * KEYPOINTS] = 2.0;
        regress[(grid + 1) * 2 * KEYPOINTS + 1] = 2.0;
        heatmap[(3 * grid + 2) * KEYPOINTS] = 0.8;
        heatmap[0] = 0.8;
        let points = decode(&heatmap, &centre, &regress, &offset, grid, 1.8);
        assert_eq!(points[0], (3.25, 2.25, 0.8));
    }
}
