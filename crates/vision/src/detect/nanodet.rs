//! NanoDet: a one-stage COCO detector with Generalized Focal Loss heads.
//!
//! Per stride (8, 16, 32) the graph gives, for every cell of the grid, 80
//! class scores (already through a sigmoid) and, for each side of the box,
//! a discrete distribution over `0..=reg_max` distances in units of the
//! stride. The distance is that distribution's expectation (GFL's "integral"
//! decoding), measured from the cell centre (boxes fit the CCP photos' people
//! about half a stride better from centres than from corners). Boxes then go through
//! per-class non-maximum suppression.

use super::DetectError;
use super::boxes::{BBox, nms};
use super::coco::COCO_CLASSES;
use super::readback::read_values;
use crate::model::tfjs::{GraphModel, Program, TfjsError};
use crate::preprocess::resize_rgb;
use burn::tensor::{Device, Tensor, TensorData};
use image::RgbImage;

/// NanoDet's training normalisation, in BGR order (OpenCV's channel order).
const MEAN_BGR: [f32; 3] = [103.53, 116.28, 123.675];
const STD_BGR: [f32; 3] = [57.375, 57.12, 58.395];
const STRIDES: [usize; 3] = [8, 16, 32];
/// Overlap above which a lower-scoring box of the same class is dropped.
const NMS_IOU: f32 = 0.5;

/// One object found by the detector, in the source image's pixels.
#[derive(Debug, Clone, PartialEq)]
pub struct Object {
    pub class: usize,
    pub label: &'static str,
    pub score: f32,
    pub bbox: BBox,
}

#[derive(Debug, Clone)]
pub struct NanoDet {
    program: Program,
    side: usize,
    device: Device,
}

impl NanoDet {
    /// Compiles the graph for its input size (read from the placeholder).
    pub fn new(graph: &GraphModel, device: &Device) -> Result<Self, TfjsError> {
        let side = match input_side(graph) {
            None => 416,
            // A hostile placeholder could ask for any input size.
            Some(side) if (32..=2048).contains(&side) => side,
            Some(side) => {
                return Err(TfjsError::Graph {
                    file: graph.source.clone(),
                    message: format!("input size {side} is outside 32..=2048"),
                });
            }
        };
        let outputs: Vec<String> = (0..6)
            .map(|k| if k == 0 { "Identity".to_string() } else { format!("Identity_{k}") })
            .collect();
        let names: Vec<&str> = outputs.iter().map(String::as_str).collect();
        let program = Program::compile(graph, &names, &[1, 3, side, side], device)?;
        Ok(Self { program, side, device: device.clone() })
    }

    pub fn program(&self) -> &Program {
        &self.program
    }

    /// The network input: a plain (not letterboxed) resize, as NanoDet was trained.
    fn input(&self, image: &RgbImage) -> Tensor<4> {
        let side = self.side;
        let resized = resize_rgb(image, side as u32, side as u32);
        let plane = side * side;
        let mut data = vec![0f32; 3 * plane];
        for (i, pixel) in resized.pixels().enumerate() {
            for bgr in 0..3 {
                data[bgr * plane + i] = (pixel.0[2 - bgr] as f32 - MEAN_BGR[bgr]) / STD_BGR[bgr];
            }
        }
        Tensor::from_data(TensorData::new(data, [1, 3, side, side]), &self.device)
    }

    /// Objects scoring at least `min_score`, best first.
    pub async fn detect(
        &self,
        image: &RgbImage,
        min_score: f32,
    ) -> Result<Vec<Object>, DetectError> {
        let values = self.program.run(self.input(image))?;
        let shapes: Vec<Vec<usize>> = values.iter().map(|v| v.shape.clone()).collect();
        let outputs = read_values(values, "object detector").await?;
        let scale =
            (image.width() as f32 / self.side as f32, image.height() as f32 / self.side as f32);
        Ok(decode(&shapes, &outputs, self.side, scale, min_score))
    }
}

fn input_side(graph: &GraphModel) -> Option<usize> {
    let placeholder = graph.find_op("Placeholder")?;
    let dims = placeholder.attr.get("shape")?.get("shape")?.get("dim")?.as_array()?;
    dims.last()?.get("size")?.as_str()?.parse().ok()
}

/// Decodes the six outputs (scores and distributions for three strides, in
/// any order: they are told apart by shape) into boxes after NMS.
fn decode(
    shapes: &[Vec<usize>],
    outputs: &[Vec<f32>],
    side: usize,
    scale: (f32, f32),
    min_score: f32,
) -> Vec<Object> {
    let classes = COCO_CLASSES.len();
    let mut boxes = Vec::new();
    let mut scores = Vec::new();
    let mut labels = Vec::new();
    for stride in STRIDES {
        let cells = (side / stride) * (side / stride);
        let find = |want_scores: bool| {
            shapes.iter().position(|s| {
                s.len() == 3 && s[1] == cells && (s[2] == classes) == want_scores && s[2] % 4 == 0
            })
        };
        let (Some(si), Some(di)) = (find(true), find(false)) else { continue };
        let (cls, dist) = (&outputs[si], &outputs[di]);
        let bins = shapes[di][2] / 4;
        // Shapes and values come from the graph: a mismatch skips the stride.
        if bins == 0 || cls.len() != cells * classes || dist.len() != cells * 4 * bins {
            continue;
        }
        let columns = side / stride;
        for cell in 0..cells {
            let row = &cls[cell * classes..(cell + 1) * classes];
            let Some((class, &score)) = row.iter().enumerate().max_by(|a, b| a.1.total_cmp(b.1))
            else {
                continue;
            };
            if score < min_score {
                continue;
            }
            let centre = |i: usize| (i as f32 + 0.5) * stride as f32;
            let (cx, cy) = (centre(cell % columns), centre(cell / columns));
            let d = &dist[cell * 4 * bins..(cell + 1) * 4 * bins];
            let side_distance =
                |k: usize| expectation(&d[k * bins..(k + 1) * bins]) * stride as f32;
            let b = BBox::new(
                cx - side_distance(0),
                cy - side_distance(1),
                cx + side_distance(2),
                cy + side_distance(3),
            );
            boxes.push(BBox::new(b.x0 * scale.0, b.y0 * scale.1, b.x1 * scale.0, b.y1 * scale.1));
            scores.push(score);
            labels.push(class);
        }
    }
    // Per-class NMS: offset each class far apart so one pass does them all.
    let offset = 4.0 * (side as f32) * scale.0.max(scale.1);
    let shifted: Vec<BBox> = boxes
        .iter()
        .zip(&labels)
        .map(|(b, &c)| BBox::new(b.x0 + c as f32 * offset, b.y0, b.x1 + c as f32 * offset, b.y1))
        .collect();
    nms(&shifted, &scores, NMS_IOU)
        .into_iter()
        .map(|i| Object {
            class: labels[i],
            label: COCO_CLASSES[labels[i]],
            score: scores[i],
            bbox: boxes[i],
        })
        .collect()
}

/// The expected bin of a softmax over `logits`.
fn expectation(logits: &[f32]) -> f32 {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let (mut total, mut weighted) = (0.0, 0.0);
    for (bin, &logit) in logits.iter().enumerate() {
        let p = (logit - max).exp();
        total += p;
        weighted += p * bin as f32;
    }
    weighted / total
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distribution_expectation() {
        assert!((expectation(&[0.0, 0.0]) - 0.5).abs() < 1e-6);
        assert!((expectation(&[-50.0, -50.0, 50.0]) - 2.0).abs() < 1e-4);
    }

    #[test]
    fn decoding_places_a_box_around_its_cell() {
        // Side 64: stride 32 is a 2x2 grid; strides 8 and 16 have no outputs.
        let side = 64;
        let cells = 4;
        let mut cls = vec![0.0; cells * 80];
        cls[3 * 80] = 0.9; // cell 3 = row 1, col 1, class person
        let bins = 8;
        let mut dist = vec![-50.0; cells * 4 * bins];
        for k in 0..4 {
            dist[3 * 4 * bins + k * bins + 1] = 50.0; // every side at 1 stride
        }
        let shapes = vec![vec![1, cells, 80], vec![1, cells, 4 * bins]];
        let found = decode(&shapes, &[cls, dist], side, (2.0, 1.0), 0.5);
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].label, "person");
        let b = found[0].bbox;
        // Centre (48, 48), one stride (32) each way, x scaled by 2.
        assert!((b.x0 - 32.0).abs() < 1e-3 && (b.x1 - 160.0).abs() < 1e-3, "{b:?}");
        assert!((b.y0 - 16.0).abs() < 1e-3 && (b.y1 - 80.0).abs() < 1e-3, "{b:?}");
    }
}
