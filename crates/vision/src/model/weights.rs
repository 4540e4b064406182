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
use super::efficientnet::Variant;
use burn::store::{ApplyResult, BurnpackStore, ModuleSnapshot, ModuleStore};
use burn::tensor::{Bytes, Device};

#[derive(Debug, thiserror::Error)]
pub enum WeightsError {
    #[error("{source_name}: cannot read weights: {message}")]
    Read { source_name: String, message: String },
    #[error("{source_name}: not weights for EfficientNet-Lite; {message}")]
    NotLite { source_name: String, message: String },
    #[error(
        "{source_name}: not weights for EfficientNet-Lite; missing {count} tensors, e.g. {example}"
    )]
    Missing { source_name: String, count: usize, example: String },
    #[error("{source_name}: {message}")]
    Apply { source_name: String, message: String },
}

pub(crate) fn check_applied(result: ApplyResult, source_name: &str) -> Result<(), WeightsError> {
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

/// Which EfficientNet-Lite a set of weights belongs to, from the number of
/// blocks and the channels into the head (the variants differ in both), so
/// a user's Lite1 or Lite2 checkpoint loads without being named.
fn infer_variant<S: ModuleStore>(
    store: &mut S,
    source_name: &str,
) -> Result<Variant, WeightsError> {
    let not_lite =
        |message: String| WeightsError::NotLite { source_name: source_name.to_string(), message };
    let keys = store.keys().map_err(|e| not_lite(e.to_string()))?;
    let blocks = keys
        .iter()
        .filter_map(|k| k.strip_prefix("blocks.")?.split('.').next()?.parse::<usize>().ok())
        .max()
        .map_or(0, |last| last + 1);
    let head = store
        .get_tensor("conv_head.weight")
        .map_err(|e| not_lite(e.to_string()))?
        .ok_or_else(|| not_lite("no conv_head.weight".into()))?;
    let head_channels_in = head.shape.get(1).copied().unwrap_or(0);
    Variant::from_signature(blocks, head_channels_in).ok_or_else(|| {
        not_lite(format!(
            "{blocks} blocks and {head_channels_in} channels into the head match no Lite0-Lite4"
        ))
    })
}

/// Builds the variant the store holds and loads its weights into it.
fn load<S: ModuleStore>(
    store: &mut S,
    with_classifier: bool,
    source_name: &str,
    device: &Device,
) -> Result<EfficientNetLite, WeightsError> {
    let variant = infer_variant(store, source_name)?;
    let mut model = EfficientNetLite::new(variant, with_classifier, device);
    let result = model.load_from(store).map_err(|e| WeightsError::Read {
        source_name: source_name.to_string(),
        message: e.to_string(),
    })?;
    check_applied(result, source_name)?;
    Ok(model)
}

/// Loads a Burnpack record from bytes (the browser's path; also used natively).
/// `with_classifier` must match what the record holds.
pub fn from_burnpack_bytes(
    bytes: Vec<u8>,
    with_classifier: bool,
    source_name: &str,
    device: &Device,
) -> Result<EfficientNetLite, WeightsError> {
    load(
        &mut BurnpackStore::from_bytes(Some(Bytes::from_bytes_vec(bytes))),
        with_classifier,
        source_name,
        device,
    )
}

/// The feature extractor (no classifier) as Burnpack record bytes; the
/// caller writes them (atomically: a half-written record must never replace
/// a good one).
pub fn to_burnpack_bytes(
    model: &EfficientNetLite,
    source_name: &str,
) -> Result<Vec<u8>, WeightsError> {
    module_to_burnpack_bytes(model.clone().without_classifier(), source_name)
}

/// Any module's weights as Burnpack record bytes (the embedder's, the
/// parser head's).
pub(crate) fn module_to_burnpack_bytes<M: ModuleSnapshot>(
    module: M,
    source_name: &str,
) -> Result<Vec<u8>, WeightsError> {
    let err =
        |message: String| WeightsError::Read { source_name: source_name.to_string(), message };
    let mut store = BurnpackStore::from_bytes(None);
    module.save_into(&mut store).map_err(|e| err(e.to_string()))?;
    let bytes = store.get_bytes().map_err(|e| err(e.to_string()))?;
    Ok(bytes.to_vec())
}

#[cfg(not(target_arch = "wasm32"))]
pub use native::*;

#[cfg(not(target_arch = "wasm32"))]
mod native {
    use super::*;
    use burn::store::{KeyRemapper, PytorchStore};
    use std::path::Path;

    /// Loads the reference PyTorch checkpoint, keeping the ImageNet classifier.
    pub fn from_pytorch_file(
        path: &Path,
        device: &Device,
    ) -> Result<EfficientNetLite, WeightsError> {
        // `_blocks.3._bn1.weight` -> `blocks.3.bn1.weight`
        let remapper = KeyRemapper::from_patterns(vec![(r"(^|\.)_", "$1")])
            .expect("the key pattern is a valid regex");
        let mut store = PytorchStore::from_file(path).remap(remapper);
        load(&mut store, true, &path.display().to_string(), device)
    }

    /// Whether `path` names a PyTorch checkpoint (else a Burnpack record).
    fn is_pytorch(path: &Path) -> bool {
        matches!(path.extension().and_then(|e| e.to_str()), Some("pth" | "pt"))
    }

    pub fn is_burnpack(path: &Path) -> bool {
        !is_pytorch(path)
    }

    /// Loads weights from a `.pth` checkpoint or a `.bpk` record, by extension.
    /// Records made by [`to_burnpack_bytes`] never hold the classifier.
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
    pub fn from_file_bytes(
        path: &Path,
        bytes: &[u8],
        device: &Device,
    ) -> Result<EfficientNetLite, WeightsError> {
        if is_pytorch(path) {
            return from_pytorch_file(path, device);
        }
        from_burnpack_bytes(bytes.to_vec(), false, &path.display().to_string(), device)
    }
}
