//! Where the embedder's weights come from.
//!
//! - The reference PyTorch checkpoint (`efficientnet-lite0-57934424.pth`, the
//!   legacy non-zip torch format) is read natively with Burn's PyTorch store.
//! - The converted Burn record (`.bpk`, Burnpack) is what the site ships; it
//!   loads from a file natively and from fetched bytes in the browser.
//!
//! Loading checks that every parameter of the module was found: a checkpoint
//! for another architecture fails loudly instead of leaving random weights.

use super::EfficientNetLite;
use burn::tensor::{Bytes, Device};
use burn::store::{ApplyResult, BurnpackStore, ModuleSnapshot};

#[derive(Debug, thiserror::Error)]
pub enum WeightsError {
    #[error("{source_name}: cannot read weights: {message}")]
    Read { source_name: String, message: String },
    #[error("{source_name}: not weights for EfficientNet-Lite0; missing {count} tensors, e.g. {example}")]
    Missing {
        source_name: String,
        count: usize,
        example: String,
    },
    #[error("{source_name}: {message}")]
    Apply { source_name: String, message: String },
}

fn check_applied(result: ApplyResult, source_name: &str) -> Result<(), WeightsError> {
    if let Some(first) = result.errors.first() {
        return Err(WeightsError::Apply {
            source_name: source_name.to_string(),
            message: format!("{first:?} (and {} more errors)", result.errors.len() - 1),
        });
    }
    if let Some((path, _)) = result.missing.first() {
        return Err(WeightsError::Missing {
            source_name: source_name.to_string(),
            count: result.missing.len(),
            example: path.clone(),
        });
    }
    Ok(())
}

/// Loads a Burnpack record from bytes (the browser's path; also used natively).
/// `with_classifier` must match what the record holds.
pub fn from_burnpack_bytes(
    bytes: Vec<u8>,
    with_classifier: bool,
    source_name: &str,
    device: &Device,
) -> Result<EfficientNetLite, WeightsError> {
    let mut model = EfficientNetLite::lite0(with_classifier, device);
    let mut store = BurnpackStore::from_bytes(Some(Bytes::from_bytes_vec(bytes)));
    let result = model.load_from(&mut store).map_err(|e| WeightsError::Read {
        source_name: source_name.to_string(),
        message: e.to_string(),
    })?;
    check_applied(result, source_name)?;
    Ok(model)
}

#[cfg(not(target_arch = "wasm32"))]
pub use native::*;

#[cfg(not(target_arch = "wasm32"))]
mod native {
    use burn::store::{KeyRemapper, PytorchStore};
    use super::*;
    use std::path::Path;

    /// Loads the reference PyTorch checkpoint, keeping the ImageNet classifier.
    pub fn from_pytorch_file(path: &Path, device: &Device) -> Result<EfficientNetLite, WeightsError> {
        let source_name = path.display().to_string();
        let mut model = EfficientNetLite::lite0(true, device);
        // `_blocks.3._bn1.weight` -> `blocks.3.bn1.weight`
        let remapper = KeyRemapper::from_patterns(vec![(r"(^|\.)_", "$1")])
            .expect("the key pattern is a valid regex");
        let mut store = PytorchStore::from_file(path).remap(remapper);
        let result = model.load_from(&mut store).map_err(|e| WeightsError::Read {
            source_name: source_name.clone(),
            message: e.to_string(),
        })?;
        check_applied(result, &source_name)?;
        Ok(model)
    }

    /// Whether `path` names a PyTorch checkpoint (else a Burnpack record).
    fn is_pytorch(path: &Path) -> bool {
        matches!(path.extension().and_then(|e| e.to_str()), Some("pth" | "pt"))
    }

    pub fn is_burnpack(path: &Path) -> bool {
        !is_pytorch(path)
    }

    /// Loads weights from a `.pth` checkpoint or a `.bpk` record, by extension.
    /// Records saved by [`save_burnpack`] never hold the classifier.
    pub fn from_file(path: &Path, device: &Device) -> Result<EfficientNetLite, WeightsError> {
        if is_pytorch(path) {
            return from_pytorch_file(path, device);
        }
        let bytes = std::fs::read(path).map_err(|e| WeightsError::Read {
            source_name: path.display().to_string(),
            message: e.to_string(),
        })?;
        from_burnpack_bytes(bytes, false, &path.display().to_string(), device)
    }

    /// As [`from_file`], for a caller that already read the file's bytes.
    pub fn from_file_bytes(path: &Path, bytes: &[u8], device: &Device) -> Result<EfficientNetLite, WeightsError> {
        if is_pytorch(path) {
            return from_pytorch_file(path, device);
        }
        from_burnpack_bytes(bytes.to_vec(), false, &path.display().to_string(), device)
    }

    /// Writes the feature extractor (no classifier) as a Burnpack record,
    /// atomically: a half-written record never replaces a good one.
    pub fn save_burnpack(model: &EfficientNetLite, path: &Path) -> Result<(), WeightsError> {
        let err = |message: String| WeightsError::Read {
            source_name: path.display().to_string(),
            message,
        };
        let mut store = BurnpackStore::from_bytes(None);
        model
            .clone()
            .without_classifier()
            .save_into(&mut store)
            .map_err(|e| err(e.to_string()))?;
        let bytes = store.get_bytes().map_err(|e| err(e.to_string()))?;
        crate::native::fsutil::write_atomic(path, &bytes).map_err(|e| err(e.to_string()))
    }
}
