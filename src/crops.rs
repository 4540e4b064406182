//! Which parts of a catalog image get embedded: the whole image, the product
//! in a packshot, or every fashion item the detector finds (the report's way:
//! each crop is indexed and maps back to its product).

use crate::site::Crop;
use image::DynamicImage;
use lookalike_vision::detect::{
    CROP_MARGIN, DetectError, DetectOptions, Detector, Item, PRODUCT_CLASS, foreground_box,
    readback::block_on,
};

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
        let product = |rgb: &image::RgbImage| {
            foreground_box(rgb).map(|bbox| Item {
                class: PRODUCT_CLASS.to_string(),
                score: 1.0,
                bbox,
                mask: None,
            })
        };
        let found: Vec<Item> = match self {
            CropMode::Whole => Vec::new(),
            CropMode::Foreground => product(&rgb()).into_iter().collect(),
            CropMode::Detect(detector, options) => {
                let rgb = rgb();
                let items = block_on(detector.detect(&rgb, options))?;
                if items.is_empty() { product(&rgb).into_iter().collect() } else { items }
            }
        };
        if found.is_empty() {
            return Ok(vec![(None, image.clone())]);
        }
        let (w, h) = (image.width(), image.height());
        Ok(found
            .into_iter()
            .map(|item| {
                let (x, y, cw, ch) = item.region(w, h);
                let pixels = item.crop(image);
                (Some(Crop { class: item.class, bbox: [x, y, cw, ch] }), pixels)
            })
            .collect())
    }
}
