//! Running the parser: a photo in, per-class probabilities on a grid out.

use super::{Part, head::ParserHead, head::upsample};
use crate::detect::DetectError;
use crate::model::EfficientNetLite;
use crate::model::weights::WeightsError;
use crate::preprocess::{resize_rgb, to_model_input};
use burn::module::Module;
use burn::store::{BurnpackStore, ModuleSnapshot};
use burn::tensor::{Bytes, Device, Tensor, TensorData};
use image::RgbImage;

/// Pixels of the parser's input: a photo is resized (aspect kept, sides
/// multiples of 32) to about this many. 224 x 352 for a 550 x 830 street
/// photo: fine enough for shoes and bags (5 x 4 cells of stride 8), and
/// 1.6x the embedder's 224 x 224 in cost, inside the browser's budget.
pub const INPUT_PIXELS: u32 = 224 * 352;
/// Cells of the probability map per stride-8 cell of the backbone, each way:
/// the head's logits are upsampled twice before the softmax, so masks and
/// boxes are drawn on a stride-4 grid.
const MAP_UPSAMPLING: usize = 2;
/// Sides of the input are multiples of this (the backbone's coarsest stride).
const SIDE_STEP: u32 = 32;

/// The input size (width, height) for a photo of `width` x `height`.
///
/// ```
/// use lookalike_vision::parse::input_size;
/// assert_eq!(input_size(550, 830), (224, 352));
/// assert_eq!(input_size(830, 550), (352, 224));
/// let (w, h) = input_size(4000, 100);
/// assert!(w % 32 == 0 && h == 32 && w * h <= 2 * 224 * 352);
/// ```
pub fn input_size(width: u32, height: u32) -> (u32, u32) {
    let (w, h) = (width.max(1) as f64, height.max(1) as f64);
    let scale = (INPUT_PIXELS as f64 / (w * h)).sqrt();
    let side = |s: f64| {
        let steps = (s * scale / SIDE_STEP as f64).round().max(1.0);
        // A needle-thin photo must not become a huge input: the short side
        // has at least one step, the long one is capped so the area holds.
        (steps as u32 * SIDE_STEP).min(INPUT_PIXELS / SIDE_STEP)
    };
    (side(w), side(h))
}

/// The parser's answer for one photo: each class's probability on a grid
/// laid over the whole photo.
#[derive(Debug, Clone)]
pub struct ParseMap {
    /// Grid cells across and down.
    pub width: usize,
    pub height: usize,
    /// `[class][y][x]`, summing to 1 over classes in every cell.
    pub probabilities: Vec<f32>,
    /// The photo the grid covers, in pixels.
    pub photo_width: u32,
    pub photo_height: u32,
}

impl ParseMap {
    /// The probability of `part` in cell `index` (`y * width + x`).
    pub fn probability(&self, part: Part, index: usize) -> f32 {
        self.probabilities[part.index() * self.width * self.height + index]
    }

    /// The most likely class of every cell, row by row.
    pub fn labels(&self) -> Vec<Part> {
        let cells = self.width * self.height;
        (0..cells)
            .map(|i| {
                Part::ALL
                    .into_iter()
                    .max_by(|a, b| self.probability(*a, i).total_cmp(&self.probability(*b, i)))
                    .expect("there are classes")
            })
            .collect()
    }

    /// Photo pixels per cell, across and down.
    pub fn cell_size(&self) -> (f32, f32) {
        (self.photo_width as f32 / self.width as f32, self.photo_height as f32 / self.height as f32)
    }
}

/// The garment parser: the embedder's backbone (shared, frozen) and the
/// trained head, on one device.
#[derive(Debug, Clone)]
pub struct Parser {
    backbone: EfficientNetLite,
    head: ParserHead,
    device: Device,
}

impl Parser {
    pub fn new(backbone: EfficientNetLite, head: ParserHead, device: Device) -> Self {
        Self { backbone, head, device }
    }

    /// The photo as the backbone's input: resized to [`input_size`] (so a
    /// little stretched when the aspect does not divide evenly), planar,
    /// normalised as for the embedder.
    pub fn input(image: &RgbImage) -> (Vec<f32>, [usize; 2]) {
        let (w, h) = input_size(image.width(), image.height());
        (to_model_input(&resize_rgb(image, w, h)), [h as usize, w as usize])
    }

    /// Per-class probabilities over the photo (asynchronous: WebGPU reads
    /// back from a future; natively it completes at once).
    pub async fn parse(&self, image: &RgbImage) -> Result<ParseMap, DetectError> {
        let (input, [h, w]) = Self::input(image);
        let x: Tensor<4> = Tensor::from_data(TensorData::new(input, [1, 3, h, w]), &self.device);
        let logits = self.head.forward(self.backbone.pyramid(x));
        let [_, _, gh, gw] = logits.dims();
        let size = [gh * MAP_UPSAMPLING, gw * MAP_UPSAMPLING];
        let probabilities = burn::tensor::activation::softmax(upsample(logits, size), 1);
        let data = probabilities.into_data_async().await.map_err(|e| DetectError::Readback {
            model: "garment parser",
            message: format!("{e:?}"),
        })?;
        let probabilities = data.convert::<f32>().try_into_vec::<f32>().map_err(|e| {
            DetectError::Readback { model: "garment parser", message: format!("{e:?}") }
        })?;
        Ok(ParseMap {
            width: size[1],
            height: size[0],
            probabilities,
            photo_width: image.width(),
            photo_height: image.height(),
        })
    }

    /// The backbone's channels a head for `backbone` reads.
    pub fn head_channels(backbone: &EfficientNetLite) -> [usize; 4] {
        EfficientNetLite::pyramid_channels(backbone.variant())
    }
}

/// Loads a trained head (a Burnpack record, `models/parser.bpk`) for
/// `backbone`; refuses a record for another head or backbone by naming
/// what is missing or mismatched.
pub fn head_from_burnpack_bytes(
    bytes: Vec<u8>,
    backbone: &EfficientNetLite,
    source_name: &str,
    device: &Device,
) -> Result<ParserHead, WeightsError> {
    let mut head = ParserHead::new(Parser::head_channels(backbone), device);
    let mut store = BurnpackStore::from_bytes(Some(Bytes::from_bytes_vec(bytes)));
    let result = head.load_from(&mut store).map_err(|e| WeightsError::Read {
        source_name: source_name.to_string(),
        message: e.to_string(),
    })?;
    crate::model::weights::check_applied(result, source_name)?;
    Ok(head)
}

/// A head as Burnpack record bytes; the caller writes them atomically.
pub fn head_to_burnpack_bytes(
    head: &ParserHead,
    source_name: &str,
) -> Result<Vec<u8>, WeightsError> {
    crate::model::weights::module_to_burnpack_bytes(head.clone().valid(), source_name)
}
