//! Which parts of a catalog image get embedded: the whole image, the product
//! in a packshot, or every fashion item the detector finds (the report's way:
//! each crop is indexed and maps back to its product).

use crate::site::Crop;
use image::DynamicImage;
use lookalike_vision::detect::{
    BBox, DetectError, DetectOptions, Detector, PRODUCT_CLASS, foreground_box, readback::block_on,
};

/// Margin added around a found box before cropping, as a share of its size:
/// the embedder saw whole objects with some context during training.
const CROP_MARGIN: f32 = 0.1;

pub enum CropMode {
    /// The whole image, pad-resized (what the benchmarks measure).
    Whole,
    /// The product in a packshot (the box around what differs from the
    /// background); the whole image when the background is not plain.
    Foreground,
    /// Every item the detector finds, each its own crop; the foreground when
    /// it finds nothing.
    Detect(Box<Detector>, DetectOptions),
}

impl CropMode {
    /// Enters the embedding cache key: another mode embeds other pixels.
    pub fn cache_key(&self) -> String {
        match self {
            CropMode::Whole => "whole".into(),
            CropMode::Foreground => format!("foreground-{CROP_MARGIN}"),
            CropMode::Detect(_, options) => format!(
                "detect-{CROP_MARGIN}-{}",
                serde_json::to_string(options).unwrap_or_default()
            ),
        }
    }

    /// The crops of one decoded image: (what it is, its pixels). Never empty.
    pub fn crops(
        &self,
        image: &DynamicImage,
    ) -> Result<Vec<(Option<Crop>, DynamicImage)>, DetectError> {
        let rgb = || image.to_rgb8();
        let found: Vec<(String, BBox)> = match self {
            CropMode::Whole => Vec::new(),
            CropMode::Foreground => {
                foreground_box(&rgb()).map(|b| (PRODUCT_CLASS.to_string(), b)).into_iter().collect()
            }
            CropMode::Detect(detector, options) => {
                let rgb = rgb();
                let mut items: Vec<(String, BBox)> = block_on(detector.detect(&rgb, options))?
                    .into_iter()
                    .map(|i| (i.class, i.bbox))
                    .collect();
                if items.is_empty() {
                    items.extend(foreground_box(&rgb).map(|b| (PRODUCT_CLASS.to_string(), b)));
                }
                items
            }
        };
        if found.is_empty() {
            return Ok(vec![(None, image.clone())]);
        }
        let (w, h) = (image.width(), image.height());
        Ok(found
            .into_iter()
            .map(|(class, bbox)| {
                let (x, y, cw, ch) = bbox.scaled(1.0 + CROP_MARGIN, 1.0 + CROP_MARGIN).pixels(w, h);
                let crop = Crop { class, bbox: [x, y, cw, ch] };
                (Some(crop), image.crop_imm(x, y, cw, ch))
            })
            .collect())
    }
}
