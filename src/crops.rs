//! Which parts of a catalog image get embedded: the whole image, the product
//! in a packshot, or every fashion item the detector finds (the report's way:
//! each crop is indexed and maps back to its product).

use crate::site::Crop;
use image::DynamicImage;
use lookalike_vision::detect::{
    CROP_MARGIN, DetectError, DetectOptions, Detector, Item, packshot_item, readback::block_on,
};

pub enum CropMode {
    /// The whole image, pad-resized (what the benchmarks measure).
    Whole,
    /// The product in a packshot (the box around what differs from the
    /// background); the whole image when the background is not plain.
    Foreground,
    /// Every item the detector finds, each its own crop (a packshot's one
    /// item is its foreground); the whole image when it finds nothing.
    Detect {
        detector: Box<Detector>,
        options: DetectOptions,
        /// A digest of the detector's model files: other models find other
        /// crops, so it enters the cache key.
        models: String,
    },
}

impl CropMode {
    /// Enters the embedding cache key: another mode embeds other pixels.
    pub fn cache_key(&self) -> String {
        match self {
            CropMode::Whole => "whole".into(),
            CropMode::Foreground => format!("foreground-{CROP_MARGIN}"),
            CropMode::Detect { options, models, .. } => format!(
                "detect-{CROP_MARGIN}-{models}-{}",
                serde_json::to_string(options).unwrap_or_default()
            ),
        }
    }

    /// The crops of one decoded image: (what it is, its pixels). Never empty.
    pub fn crops(
        &self,
        image: &DynamicImage,
    ) -> Result<Vec<(Option<Crop>, DynamicImage)>, DetectError> {
        let found: Vec<Item> = match self {
            CropMode::Whole => Vec::new(),
            CropMode::Foreground => packshot_item(&image.to_rgb8()).into_iter().collect(),
            CropMode::Detect { detector, options, .. } => {
                block_on(detector.detect(&image.to_rgb8(), options))?
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crops_from_other_detector_models_are_cached_apart() {
        let device = burn::tensor::Device::flex();
        let detect = |models: &str| CropMode::Detect {
            detector: Box::new(Detector::new(None, None, &device).unwrap()),
            options: DetectOptions::default(),
            models: models.to_string(),
        };
        assert_ne!(detect("parser").cache_key(), detect("pose").cache_key());
        assert_eq!(detect("parser").cache_key(), detect("parser").cache_key());
        assert_ne!(detect("parser").cache_key(), CropMode::Foreground.cache_key());
    }
}
