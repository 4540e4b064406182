//! The TensorFlow.js graph-model format: `model.json` (the graph and a
//! manifest of weights) plus one or more binary shards holding the weights
//! back to back, in manifest order.
//!
//! Only what inference needs is read: nodes (name, op, inputs, attributes)
//! and constant tensors. Weights may be stored as float32, int32, float16
//! (TF.js's `--quantize_float16`) or affine-quantised uint8/uint16
//! (`--quantize_uint8`/`uint16`, value = min + q * scale); all float weights
//! come out as f32.

use serde::Deserialize;
use serde_json::Value as Json;
use std::collections::HashMap;

#[derive(Debug, thiserror::Error)]
pub enum TfjsError {
    #[error("{file}: not a TF.js graph model: {message}")]
    Json { file: String, message: String },
    #[error("{file}: weights: {message}")]
    Weights { file: String, message: String },
    #[error("{file}: node `{node}` ({op}): {message}")]
    Node { file: String, node: String, op: String, message: String },
    #[error("{file}: {message}")]
    Graph { file: String, message: String },
}

/// A host-side tensor: a constant of the graph, or a value folded from constants.
#[derive(Debug, Clone, PartialEq)]
pub struct HostTensor {
    pub shape: Vec<usize>,
    pub data: HostData,
}

#[derive(Debug, Clone, PartialEq)]
pub enum HostData {
    F32(Vec<f32>),
    I64(Vec<i64>),
}

/// How many values a tensor of `shape` holds, or `None` when that
/// overflows (shapes come from files and may be hostile).
pub fn element_count(shape: &[usize]) -> Option<usize> {
    shape.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d))
}

impl HostTensor {
    /// Whether the shape accounts for exactly the values held (a folded or
    /// hostile constant may disagree with its own shape).
    pub fn is_consistent(&self) -> bool {
        element_count(&self.shape) == Some(self.len())
    }

    pub fn len(&self) -> usize {
        match &self.data {
            HostData::F32(v) => v.len(),
            HostData::I64(v) => v.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The values as integers (shapes, axes, paddings); floats are truncated.
    pub fn to_i64(&self) -> Vec<i64> {
        match &self.data {
            HostData::F32(v) => v.iter().map(|&x| x as i64).collect(),
            HostData::I64(v) => v.clone(),
        }
    }

    pub fn to_f32(&self) -> Vec<f32> {
        match &self.data {
            HostData::F32(v) => v.clone(),
            HostData::I64(v) => v.iter().map(|&x| x as f32).collect(),
        }
    }
}

/// One node of the graph, with its attributes kept as JSON until an op asks.
#[derive(Debug, Clone, Deserialize)]
pub struct NodeDef {
    pub name: String,
    pub op: String,
    #[serde(default)]
    pub input: Vec<String>,
    #[serde(default)]
    pub attr: HashMap<String, Json>,
}

impl NodeDef {
    /// A string attribute (TF.js stores them base64-encoded).
    pub fn attr_str(&self, key: &str) -> Option<String> {
        let encoded = self.attr.get(key)?.get("s")?.as_str()?;
        decode_base64(encoded).and_then(|bytes| String::from_utf8(bytes).ok())
    }

    /// A list of strings, e.g. `fused_ops`.
    pub fn attr_str_list(&self, key: &str) -> Vec<String> {
        let Some(list) = self.attr.get(key).and_then(|a| a.get("list")).and_then(|l| l.get("s"))
        else {
            return Vec::new();
        };
        list.as_array()
            .into_iter()
            .flatten()
            .filter_map(|s| s.as_str())
            .filter_map(decode_base64)
            .filter_map(|b| String::from_utf8(b).ok())
            .collect()
    }

    /// A list of integers, e.g. `strides` or `ksize` (int64 arrive as strings).
    pub fn attr_int_list(&self, key: &str) -> Option<Vec<i64>> {
        let list = self.attr.get(key)?.get("list")?.get("i")?.as_array()?;
        list.iter().map(json_int).collect()
    }

    pub fn attr_int(&self, key: &str) -> Option<i64> {
        json_int(self.attr.get(key)?.get("i")?)
    }

    pub fn attr_float(&self, key: &str) -> Option<f64> {
        self.attr.get(key)?.get("f")?.as_f64()
    }

    pub fn attr_bool(&self, key: &str) -> Option<bool> {
        self.attr.get(key)?.get("b")?.as_bool()
    }

    /// The input names without control inputs (`^name`).
    pub fn data_inputs(&self) -> impl Iterator<Item = &str> {
        self.input.iter().map(String::as_str).filter(|i| !i.starts_with('^'))
    }
}

fn json_int(value: &Json) -> Option<i64> {
    match value {
        Json::String(s) => s.parse().ok(),
        Json::Number(n) => n.as_i64(),
        _ => None,
    }
}

/// Standard base64 (with or without padding); TF.js encodes attribute strings so.
fn decode_base64(text: &str) -> Option<Vec<u8>> {
    fn sextet(c: u8) -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' | b'-' => 62,
            b'/' | b'_' => 63,
            _ => return None,
        } as u32)
    }
    let symbols: Vec<u8> = text.bytes().filter(|&c| c != b'=').collect();
    let mut out = Vec::with_capacity(symbols.len() * 3 / 4);
    for chunk in symbols.chunks(4) {
        let mut acc = 0u32;
        for (i, &c) in chunk.iter().enumerate() {
            acc |= sextet(c)? << (18 - 6 * i);
        }
        let bytes = acc.to_be_bytes();
        out.extend_from_slice(&bytes[1..chunk.len().max(1)]);
    }
    Some(out)
}

#[derive(Debug, Deserialize)]
struct ModelJson {
    #[serde(rename = "modelTopology")]
    topology: Topology,
    #[serde(rename = "weightsManifest")]
    manifest: Vec<ManifestGroup>,
}

#[derive(Debug, Deserialize)]
struct Topology {
    node: Vec<NodeDef>,
}

#[derive(Debug, Deserialize)]
struct ManifestGroup {
    paths: Vec<String>,
    weights: Vec<WeightSpec>,
}

#[derive(Debug, Deserialize)]
struct WeightSpec {
    name: String,
    shape: Vec<usize>,
    dtype: String,
    quantization: Option<Quantization>,
}

#[derive(Debug, Deserialize)]
struct Quantization {
    dtype: String,
    min: Option<f32>,
    scale: Option<f32>,
}

/// A parsed graph model: its nodes in file order and its constants by name.
#[derive(Debug, Clone)]
pub struct GraphModel {
    /// The file the graph came from, for error messages.
    pub source: String,
    pub nodes: Vec<NodeDef>,
    pub constants: HashMap<String, HostTensor>,
}

impl GraphModel {
    /// The binary shards `model.json` names, in the order they must be concatenated.
    ///
    /// Each must be a plain file name beside `model.json` (what TF.js's
    /// converter writes): a path with folders, `..` or a root could make a
    /// reader read, or a site builder write, outside the model's folder.
    pub fn shard_paths(model_json: &[u8], source: &str) -> Result<Vec<String>, TfjsError> {
        let model: ModelJson = parse_json(model_json, source)?;
        let paths: Vec<String> = model.manifest.into_iter().flat_map(|g| g.paths).collect();
        if let Some(bad) = paths.iter().find(|p| !is_plain_file_name(p)) {
            return Err(TfjsError::Weights {
                file: source.to_string(),
                message: format!("shard path `{bad}` is not a plain file name beside the model"),
            });
        }
        Ok(paths)
    }

    /// Parses `model.json` and decodes the weights from the concatenated shards.
    pub fn parse(model_json: &[u8], weights: &[u8], source: &str) -> Result<Self, TfjsError> {
        let model: ModelJson = parse_json(model_json, source)?;
        let mut constants = HashMap::new();
        let mut offset = 0usize;
        for spec in model.manifest.iter().flat_map(|g| &g.weights) {
            let (tensor, used) = decode_weight(spec, &weights[offset.min(weights.len())..])
                .map_err(|message| TfjsError::Weights {
                    file: source.to_string(),
                    message: format!("`{}`: {message}", spec.name),
                })?;
            offset += used;
            constants.insert(spec.name.clone(), tensor);
        }
        if offset != weights.len() {
            return Err(TfjsError::Weights {
                file: source.to_string(),
                message: format!(
                    "the manifest describes {offset} bytes but the shards hold {}",
                    weights.len()
                ),
            });
        }
        Ok(Self { source: source.to_string(), nodes: model.topology.node, constants })
    }

    /// The first node with `op`, if any (e.g. the `Placeholder` input).
    pub fn find_op(&self, op: &str) -> Option<&NodeDef> {
        self.nodes.iter().find(|n| n.op == op)
    }

    pub fn node_error(&self, node: &NodeDef, message: impl Into<String>) -> TfjsError {
        TfjsError::Node {
            file: self.source.clone(),
            node: node.name.clone(),
            op: node.op.clone(),
            message: message.into(),
        }
    }
}

/// One normal path component: no folder, no `.` or `..`, no root or drive,
/// no backslash (a separator on Windows), no control characters.
fn is_plain_file_name(name: &str) -> bool {
    let mut components = std::path::Path::new(name).components();
    matches!(components.next(), Some(std::path::Component::Normal(_)))
        && components.next().is_none()
        && !name.contains(['/', '\\', ':'])
        && !name.chars().any(char::is_control)
}

fn parse_json(bytes: &[u8], source: &str) -> Result<ModelJson, TfjsError> {
    serde_json::from_slice(bytes)
        .map_err(|e| TfjsError::Json { file: source.to_string(), message: e.to_string() })
}

/// Decodes one weight from the front of `bytes`; returns it and the bytes used.
fn decode_weight(spec: &WeightSpec, bytes: &[u8]) -> Result<(HostTensor, usize), String> {
    let count = element_count(&spec.shape).ok_or("its shape's size overflows")?;
    let stored = spec.quantization.as_ref().map_or(spec.dtype.as_str(), |q| q.dtype.as_str());
    let width = match stored {
        "float32" | "int32" => 4,
        "float16" | "uint16" => 2,
        "uint8" | "bool" => 1,
        other => return Err(format!("unsupported dtype {other}")),
    };
    // Bounded by the shards' length below: a weight can never ask for more
    // memory than the files hold.
    let used = count.checked_mul(width).ok_or("its size overflows")?;
    let raw = bytes
        .get(..used)
        .ok_or_else(|| format!("needs {used} bytes, only {} left in the shards", bytes.len()))?;
    let words = |n: usize| raw.chunks_exact(n);
    let data = match (stored, spec.quantization.as_ref()) {
        ("float32", _) => {
            HostData::F32(words(4).map(|b| f32::from_le_bytes(b.try_into().unwrap())).collect())
        }
        ("int32", _) => HostData::I64(
            words(4).map(|b| i32::from_le_bytes(b.try_into().unwrap()) as i64).collect(),
        ),
        ("float16", _) => HostData::F32(
            words(2).map(|b| half::f16::from_le_bytes(b.try_into().unwrap()).to_f32()).collect(),
        ),
        ("bool", _) => HostData::I64(raw.iter().map(|&b| (b != 0) as i64).collect()),
        ("uint8" | "uint16", Some(q)) => {
            let (min, scale) = (q.min.unwrap_or(0.0), q.scale.unwrap_or(1.0));
            let levels: Vec<f32> = if width == 1 {
                raw.iter().map(|&b| b as f32).collect()
            } else {
                words(2).map(|b| u16::from_le_bytes(b.try_into().unwrap()) as f32).collect()
            };
            let values = levels.into_iter().map(|q| min + q * scale);
            if spec.dtype == "int32" {
                HostData::I64(values.map(|v| v.round() as i64).collect())
            } else {
                HostData::F32(values.collect())
            }
        }
        (other, None) => return Err(format!("unsupported dtype {other} without quantization")),
        (other, _) => return Err(format!("unsupported dtype {other}")),
    };
    Ok((HostTensor { shape: spec.shape.clone(), data }, used))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_attributes_decode() {
        assert_eq!(decode_base64("TkhXQw==").unwrap(), b"NHWC");
        assert_eq!(decode_base64("U0FNRQ==").unwrap(), b"SAME");
        assert_eq!(decode_base64("VkFMSUQ=").unwrap(), b"VALID");
        assert_eq!(decode_base64("UmVsdTY=").unwrap(), b"Relu6");
    }

    fn model_json(weights: &str) -> String {
        format!(
            r#"{{"modelTopology":{{"node":[{{"name":"x","op":"Placeholder"}}]}},
               "weightsManifest":[{{"paths":["m.bin"],"weights":[{weights}]}}]}}"#
        )
    }

    #[test]
    fn weights_decode_in_every_storage_type() {
        let json = model_json(
            r#"{"name":"a","shape":[2],"dtype":"float32"},
               {"name":"b","shape":[2],"dtype":"int32"},
               {"name":"c","shape":[2],"dtype":"float32","quantization":{"dtype":"float16","original_dtype":"float32"}},
               {"name":"d","shape":[2],"dtype":"float32","quantization":{"dtype":"uint8","min":-1.0,"scale":0.5}}"#,
        );
        let mut bin = Vec::new();
        bin.extend(1.5f32.to_le_bytes());
        bin.extend((-2.0f32).to_le_bytes());
        bin.extend(7i32.to_le_bytes());
        bin.extend((-3i32).to_le_bytes());
        bin.extend(half::f16::from_f32(0.25).to_le_bytes());
        bin.extend(half::f16::from_f32(-8.0).to_le_bytes());
        bin.extend([0u8, 4]);
        let model = GraphModel::parse(json.as_bytes(), &bin, "m.json").unwrap();
        assert_eq!(model.constants["a"].to_f32(), vec![1.5, -2.0]);
        assert_eq!(model.constants["b"].data, HostData::I64(vec![7, -3]));
        assert_eq!(model.constants["c"].to_f32(), vec![0.25, -8.0]);
        assert_eq!(model.constants["d"].to_f32(), vec![-1.0, 1.0]);
        assert_eq!(GraphModel::shard_paths(json.as_bytes(), "m.json").unwrap(), vec!["m.bin"]);
    }

    #[test]
    fn shard_paths_outside_the_models_folder_are_refused() {
        for bad in [
            "../../../etc/passwd",
            "/etc/passwd",
            "sub/m.bin",
            "..",
            ".",
            "",
            "a\\b.bin",
            "C:m.bin",
            "m\n.bin",
        ] {
            let json = format!(
                r#"{{"modelTopology":{{"node":[]}},"weightsManifest":[{{"paths":[{}],"weights":[]}}]}}"#,
                serde_json::to_string(bad).unwrap()
            );
            let err = GraphModel::shard_paths(json.as_bytes(), "m.json").unwrap_err().to_string();
            assert!(
                err.contains("m.json") && err.contains("not a plain file name"),
                "{bad}: {err}"
            );
        }
        let json = model_json(r#"{"name":"a","shape":[1],"dtype":"float32"}"#);
        assert_eq!(GraphModel::shard_paths(json.as_bytes(), "m.json").unwrap(), vec!["m.bin"]);
    }

    #[test]
    fn short_or_long_shards_are_named_errors() {
        let json = model_json(r#"{"name":"conv/w","shape":[4],"dtype":"float32"}"#);
        let err = GraphModel::parse(json.as_bytes(), &[0; 8], "m.json").unwrap_err().to_string();
        assert!(
            err.contains("m.json") && err.contains("conv/w") && err.contains("16 bytes"),
            "{err}"
        );
        let err = GraphModel::parse(json.as_bytes(), &[0; 20], "m.json").unwrap_err().to_string();
        assert!(err.contains("describes 16 bytes") && err.contains("20"), "{err}");
        let err = GraphModel::parse(b"{\"format\":1}", &[], "m.json").unwrap_err().to_string();
        assert!(err.contains("m.json") && err.contains("not a TF.js graph model"), "{err}");
    }
}
