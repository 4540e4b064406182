//! TensorFlow.js graph models (`model.json` + weight shards) run on Burn.
//!
//! [`format`](mod@format) reads the files; [`program`] compiles the needed part of the
//! graph into Burn operations once and runs it on any device. No TensorFlow
//! is involved at build or run time: the same code loads the packaged
//! NanoDet and MoveNet models and a user's own exported graph.

pub mod format;
pub mod program;

pub use format::{GraphModel, HostTensor, TfjsError};
pub use program::{Program, Value, supported_ops};

#[cfg(not(target_arch = "wasm32"))]
pub use native::{read_model, read_model_bytes};

#[cfg(not(target_arch = "wasm32"))]
mod native {
    use super::{GraphModel, TfjsError};
    use std::path::Path;

    /// Reads `model.json` and the shards it names (relative to its folder).
    pub fn read_model(model_json: &Path) -> Result<GraphModel, TfjsError> {
        let (json, weights) = read_model_bytes(model_json)?;
        GraphModel::parse(&json, &weights, &model_json.display().to_string())
    }

    /// The bytes of `model.json` and of its shards, concatenated in order:
    /// what [`GraphModel::parse`] takes, for a caller that also keys a
    /// cache by them.
    pub fn read_model_bytes(model_json: &Path) -> Result<(Vec<u8>, Vec<u8>), TfjsError> {
        let source = model_json.display().to_string();
        let read = |path: &Path| {
            std::fs::read(path).map_err(|e| TfjsError::Graph {
                file: path.display().to_string(),
                message: e.to_string(),
            })
        };
        let json = read(model_json)?;
        let folder = model_json.parent().unwrap_or(Path::new("."));
        let mut weights = Vec::new();
        for shard in GraphModel::shard_paths(&json, &source)? {
            weights.extend(read(&folder.join(shard))?);
        }
        Ok((json, weights))
    }
}
