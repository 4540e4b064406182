//! The per-op corpus (`tests/ops/cases.json`, written by `generate.py` with
//! numpy): one tiny TF.js graph per supported op, compiled to Burn and run
//! on the CPU backend, against the output TensorFlow's semantics give. It
//! needs no download, so every op is tested by a plain `cargo test`.

use burn::tensor::{Device, Tensor, TensorData};
use lookalike_vision::model::tfjs::{GraphModel, Program, supported_ops};
use serde::Deserialize;

#[derive(Deserialize)]
struct Case {
    name: String,
    nodes: Vec<serde_json::Value>,
    constants: Vec<Constant>,
    input: Array,
    output: String,
    expected: Array,
}

#[derive(Deserialize)]
struct Constant {
    name: String,
    dtype: String,
    shape: Vec<usize>,
    values: Vec<f64>,
}

#[derive(Deserialize)]
struct Array {
    shape: Vec<usize>,
    values: Vec<f32>,
}

fn cases() -> Vec<Case> {
    serde_json::from_str(include_str!("ops/cases.json")).expect("the corpus parses")
}

/// A TF.js graph model: the placeholder `x`, the case's nodes, and its
/// constants as one weight shard.
fn graph(case: &Case) -> GraphModel {
    let mut nodes = vec![serde_json::json!({"name": "x", "op": "Placeholder"})];
    let mut weights = Vec::new();
    let mut shard = Vec::new();
    for c in &case.constants {
        nodes.push(serde_json::json!({"name": c.name, "op": "Const"}));
        weights.push(serde_json::json!({"name": c.name, "shape": c.shape, "dtype": c.dtype}));
        for &v in &c.values {
            match c.dtype.as_str() {
                "int32" => shard.extend((v as i32).to_le_bytes()),
                _ => shard.extend((v as f32).to_le_bytes()),
            }
        }
    }
    nodes.extend(case.nodes.iter().cloned());
    let json = serde_json::json!({
        "modelTopology": {"node": nodes},
        "weightsManifest": [{"paths": ["case.bin"], "weights": weights}],
    });
    GraphModel::parse(json.to_string().as_bytes(), &shard, &case.name)
        .unwrap_or_else(|e| panic!("{}: {e}", case.name))
}

#[test]
fn every_op_in_the_corpus_matches_tensorflow() {
    let device = Device::flex();
    let mut failures = Vec::new();
    for case in cases() {
        let program =
            match Program::compile(&graph(&case), &[&case.output], &case.input.shape, &device) {
                Ok(program) => program,
                Err(e) => {
                    failures.push(format!("{}: {e}", case.name));
                    continue;
                }
            };
        let input: Tensor<4> =
            Tensor::from_data(TensorData::new(case.input.values.clone(), [1, 4, 4, 3]), &device);
        let outputs = program.run(input).unwrap_or_else(|e| panic!("{}: {e}", case.name));
        let value = &outputs[0];
        let got = value.tensor.clone().into_data().convert::<f32>().try_to_vec::<f32>().unwrap();
        let worst = got
            .iter()
            .zip(&case.expected.values)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0f32, f32::max);
        if value.shape != case.expected.shape
            || got.len() != case.expected.values.len()
            || worst > 1e-4
        {
            failures.push(format!(
                "{}: shape {:?} (expected {:?}), largest difference {worst}",
                case.name, value.shape, case.expected.shape
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// The op table is the list of supported ops, and the corpus covers it.
#[test]
fn the_corpus_covers_every_supported_op() {
    let covered: std::collections::HashSet<String> = cases()
        .iter()
        .flat_map(|c| c.nodes.iter().filter_map(|n| n["op"].as_str().map(String::from)))
        .collect();
    let missing: Vec<&str> = supported_ops().filter(|op| !covered.contains(*op)).collect();
    assert!(missing.is_empty(), "ops without a test case: {missing:?}");
}
