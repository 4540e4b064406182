//! A TF.js graph compiled to a straight list of Burn operations.
//!
//! Compiling walks back from the requested outputs, so only the nodes they
//! need are kept (a model's own post-processing can be cut off and done in
//! Rust instead). Nodes whose inputs are all constants (shape arithmetic,
//! `SparseToDense` from ONNX converters, ...) are folded on the host once.
//! Weights are uploaded once, already in Burn's layouts. Running is then one
//! pass over the steps; every intermediate tensor is dropped right after its
//! last use, so peak memory stays near two layers' activations.
//!
//! Tensors of rank below 4 are held as rank-4 Burn tensors with leading ones,
//! which is how TensorFlow broadcasting aligns shapes anyway.
//!
//! The phases live in their own files: `compile` (with `compile::OPS`,
//! the list of supported ops), `fold` (constant folding), `execute`
//! (running the steps) and `shapes` (shape arithmetic and limits).

use super::format::{GraphModel, HostData, HostTensor, NodeDef, TfjsError, element_count};
use burn::tensor::activation;
use burn::tensor::module::{avg_pool2d, conv2d, interpolate, max_pool2d};
use burn::tensor::ops::{
    AvgPoolOptions, ConvOptions, InterpolateMode, InterpolateOptions, MaxPoolOptions, PadMode,
};
use burn::tensor::{Device, Tensor, TensorData};
use std::collections::HashMap;

/// A device tensor with its logical shape (rank <= 4).
#[derive(Debug, Clone)]
pub struct Value {
    pub tensor: Tensor<4>,
    pub shape: Vec<usize>,
}

impl Value {
    fn new(tensor: Tensor<4>, shape: Vec<usize>) -> Self {
        debug_assert_eq!(tensor.dims().to_vec(), pad4(&shape).to_vec());
        Self { tensor, shape }
    }

    fn rank(&self) -> usize {
        self.shape.len()
    }

    /// Moves axis `axis` of the logical shape to its rank-4 position.
    fn axis4(&self, axis: i64) -> Result<usize, String> {
        let rank = self.rank() as i64;
        let axis = if axis < 0 { axis + rank } else { axis };
        if !(0..rank).contains(&axis) {
            return Err(format!("axis {axis} out of range for rank {rank}"));
        }
        Ok(4 - self.rank() + axis as usize)
    }
}

/// Where a step reads an operand: an earlier step's output, or a constant.
#[derive(Debug, Clone)]
// A program holds a few hundred of these: boxing the constant buys nothing.
#[allow(clippy::large_enum_variant)]
enum Operand {
    Slot(usize),
    Const(Value),
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Activation {
    None,
    Relu,
    Relu6,
    LeakyRelu(f64),
    Sigmoid,
    Tanh,
}

impl Activation {
    fn parse(name: &str, alpha: f64) -> Option<Self> {
        Some(match name {
            "Relu" => Self::Relu,
            "Relu6" => Self::Relu6,
            "LeakyRelu" => Self::LeakyRelu(alpha),
            "Sigmoid" => Self::Sigmoid,
            "Tanh" => Self::Tanh,
            "Identity" => Self::None,
            _ => return None,
        })
    }

    fn apply(self, x: Tensor<4>) -> Tensor<4> {
        match self {
            Self::None => x,
            Self::Relu => activation::relu(x),
            Self::Relu6 => x.clamp(0.0, 6.0),
            Self::LeakyRelu(alpha) => activation::leaky_relu(x, alpha),
            Self::Sigmoid => activation::sigmoid(x),
            Self::Tanh => x.tanh(),
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum Binary {
    Add,
    Sub,
    Mul,
    Div,
    Max,
    Min,
    SquaredDifference,
}

/// TensorFlow's padding modes, resolved per call (SAME depends on input size).
#[derive(Debug, Clone)]
enum Padding {
    Same,
    Valid,
    /// Explicit (before, after) for height and width.
    Explicit([(usize, usize); 2]),
}

impl Padding {
    fn resolve(
        &self,
        input: [usize; 2],
        kernel: [usize; 2],
        stride: [usize; 2],
        dilation: [usize; 2],
    ) -> [(usize, usize); 2] {
        match self {
            Self::Valid => [(0, 0); 2],
            Self::Explicit(pairs) => *pairs,
            Self::Same => std::array::from_fn(|i| {
                let out = input[i].div_ceil(stride[i]);
                let span =
                    kernel[i].saturating_sub(1).saturating_mul(dilation[i]).saturating_add(1);
                let total = out
                    .saturating_sub(1)
                    .saturating_mul(stride[i])
                    .saturating_add(span)
                    .saturating_sub(input[i]);
                (total / 2, total - total / 2)
            }),
        }
    }
}

#[derive(Debug, Clone)]
struct Conv {
    /// Burn layout: [out, in / groups, kh, kw].
    weight: Tensor<4>,
    bias: Option<Tensor<1>>,
    stride: [usize; 2],
    dilation: [usize; 2],
    padding: Padding,
    groups: usize,
    activation: Activation,
    nhwc: bool,
}

#[derive(Debug, Clone, Copy)]
enum PoolKind {
    Max,
    Avg,
}

#[derive(Debug, Clone)]
#[allow(clippy::large_enum_variant)]
enum Op {
    Conv(Box<Conv>),
    Pool {
        kind: PoolKind,
        kernel: [usize; 2],
        stride: [usize; 2],
        padding: Padding,
        nhwc: bool,
    },
    Binary(Binary, Operand, Operand),
    Unary(Activation),
    Sqrt,
    Pad {
        pairs: Vec<(usize, usize)>,
        value: f32,
    },
    Transpose(Vec<usize>),
    Reshape(Vec<i64>),
    Concat {
        inputs: Vec<Operand>,
        axis: i64,
    },
    /// Splits along `axis`; output k of the node goes to `outputs[k]`.
    Split {
        axis: i64,
        sizes: Vec<usize>,
        outputs: Vec<usize>,
    },
    /// Removes axis `axis` (of size `count`) and sends each slice to `outputs`.
    Unpack {
        axis: i64,
        outputs: Vec<usize>,
    },
    Resize {
        size: [usize; 2],
        bilinear: bool,
        align_corners: bool,
        nhwc: bool,
    },
}

#[derive(Debug, Clone)]
struct Step {
    node: String,
    input: Option<usize>,
    op: Op,
    output: usize,
}

/// A compiled graph, ready to run on its device.
#[derive(Debug, Clone)]
pub struct Program {
    steps: Vec<Step>,
    input_slot: usize,
    input_shape: Vec<usize>,
    outputs: Vec<Operand>,
    slot_count: usize,
    /// For each step, the slots whose last reader it is.
    frees: Vec<Vec<usize>>,
    source: String,
}

/// A value known while compiling.
#[derive(Debug, Clone)]
enum Known {
    Host(HostTensor),
    Slot(usize),
}

/// Splits `name:1` into (`name`, 1); a bare name is output 0.
fn split_output(name: &str) -> (&str, usize) {
    match name.rsplit_once(':') {
        Some((node, k)) if k.chars().all(|c| c.is_ascii_digit()) => (node, k.parse().unwrap_or(0)),
        _ => (name, 0),
    }
}

fn key(node: &str, k: usize) -> String {
    format!("{node}:{k}")
}

impl Program {
    /// Compiles the part of `graph` that `outputs` (e.g. `Identity:0` or
    /// `head/conv/BiasAdd`) need, with its only placeholder fed by an input of
    /// `input_shape`.
    pub fn compile(
        graph: &GraphModel,
        outputs: &[&str],
        input_shape: &[usize],
        device: &Device,
    ) -> Result<Self, TfjsError> {
        let placeholder = graph.find_op("Placeholder").ok_or_else(|| TfjsError::Graph {
            file: graph.source.clone(),
            message: "the graph has no input".into(),
        })?;
        let mut compiler = Compiler {
            graph,
            nodes: graph.nodes.iter().map(|n| (n.name.as_str(), n)).collect(),
            readers: count_readers(graph),
            constant: HashMap::new(),
            known: HashMap::new(),
            steps: Vec::new(),
            slot_count: 1,
            device,
            in_progress: Vec::new(),
        };
        compiler.known.insert(key(&placeholder.name, 0), Known::Slot(0));
        let mut output_operands = Vec::new();
        for name in outputs {
            let operand = match compiler.resolve(name)? {
                Known::Slot(slot) => Operand::Slot(slot),
                Known::Host(host) => {
                    Operand::Const(compiler.upload(&host).map_err(|message| TfjsError::Graph {
                        file: graph.source.clone(),
                        message: format!("output `{name}`: {message}"),
                    })?)
                }
            };
            output_operands.push(operand);
        }
        let Compiler { steps, slot_count, .. } = compiler;
        let frees = last_uses(&steps, &output_operands, slot_count);
        Ok(Self {
            steps,
            input_slot: 0,
            input_shape: input_shape.to_vec(),
            outputs: output_operands,
            slot_count,
            frees,
            source: graph.source.clone(),
        })
    }

    /// Operations the program runs (after folding and fusion).
    pub fn steps(&self) -> usize {
        self.steps.len()
    }

    /// How many of them are of each kind, e.g. `("Pad", 0)`: for tests and tuning.
    pub fn count(&self, kind: &str) -> usize {
        self.steps.iter().filter(|s| op_name(&s.op) == kind).count()
    }

    pub fn input_shape(&self) -> &[usize] {
        &self.input_shape
    }

    /// Runs the program on `input` (logical shape [`Self::input_shape`]).
    pub fn run(&self, input: Tensor<4>) -> Result<Vec<Value>, TfjsError> {
        let mut slots: Vec<Option<Value>> = vec![None; self.slot_count];
        slots[self.input_slot] = Some(Value::new(input, self.input_shape.clone()));
        for (step, frees) in self.steps.iter().zip(&self.frees) {
            let input = step.input.map(|slot| slots[slot].clone().expect("compiled in order"));
            let outputs = execute(&step.op, input, &slots).map_err(|message| TfjsError::Node {
                file: self.source.clone(),
                node: step.node.clone(),
                op: op_name(&step.op).to_string(),
                message,
            })?;
            for (slot, value) in outputs {
                // Single-output steps write to their own output slot.
                let slot = if slot == SINGLE_OUTPUT { step.output } else { slot };
                slots[slot] = Some(value);
            }
            for &slot in frees {
                slots[slot] = None;
            }
        }
        Ok(self
            .outputs
            .iter()
            .map(|operand| match operand {
                Operand::Slot(slot) => slots[*slot].clone().expect("outputs are never freed"),
                Operand::Const(value) => value.clone(),
            })
            .collect())
    }
}

fn count_readers(graph: &GraphModel) -> HashMap<&str, usize> {
    let mut readers = HashMap::new();
    for node in &graph.nodes {
        for input in node.data_inputs() {
            *readers.entry(split_output(input).0).or_insert(0) += 1;
        }
    }
    readers
}

/// For each step, the slots read for the last time there (outputs excluded).
fn last_uses(steps: &[Step], outputs: &[Operand], slot_count: usize) -> Vec<Vec<usize>> {
    let mut last = vec![None; slot_count];
    for (i, step) in steps.iter().enumerate() {
        for slot in reads(step) {
            last[slot] = Some(i);
        }
    }
    for operand in outputs {
        if let Operand::Slot(slot) = operand {
            last[*slot] = None;
        }
    }
    let mut frees = vec![Vec::new(); steps.len()];
    for (slot, step) in last.into_iter().enumerate() {
        if let Some(step) = step {
            frees[step].push(slot);
        }
    }
    frees
}

fn reads(step: &Step) -> Vec<usize> {
    let mut slots: Vec<usize> = step.input.into_iter().collect();
    let mut add = |operand: &Operand| {
        if let Operand::Slot(slot) = operand {
            slots.push(*slot);
        }
    };
    match &step.op {
        Op::Binary(_, a, b) => {
            add(a);
            add(b);
        }
        Op::Concat { inputs, .. } => inputs.iter().for_each(add),
        _ => {}
    }
    slots
}

mod compile;
mod execute;
mod fold;
mod shapes;

use compile::{Compiler, OPS};
use execute::*;
use fold::fold;
use shapes::*;

/// The TF.js ops [`Program::compile`] supports (besides `Const` and
/// `Placeholder`), in the op table's order.
pub fn supported_ops() -> impl Iterator<Item = &'static str> {
    OPS.iter().map(|(name, _)| *name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_padding_matches_tensorflow() {
        // TF pads the extra pixel after, not before, for even sizes at stride 2.
        assert_eq!(Padding::Same.resolve([224, 224], [3, 3], [2, 2], [1, 1]), [(0, 1), (0, 1)]);
        assert_eq!(Padding::Same.resolve([7, 7], [5, 5], [1, 1], [1, 1]), [(2, 2), (2, 2)]);
        assert_eq!(Padding::Same.resolve([9, 9], [3, 3], [2, 2], [1, 1]), [(1, 1), (1, 1)]);
    }

    #[test]
    fn reshape_targets() {
        assert_eq!(reshape_target(&[1, 80, 13, 13], &[1, 80, -1]).unwrap(), vec![1, 80, 169]);
        assert_eq!(reshape_target(&[2, 3], &[i64::MIN, 0]).unwrap(), vec![1, 2, 3]);
        assert_eq!(reshape_target(&[2, 3], &[i64::MIN, -1]).unwrap(), vec![2, 3, 1]);
        assert_eq!(reshape_target(&[1, 5, 1], &[i64::MIN + 1]).unwrap(), vec![5]);
        assert_eq!(reshape_target(&[1, 5, 1], &[i64::MIN + 1, 0]).unwrap(), vec![5, 1]);
        assert!(reshape_target(&[2, 3], &[4, 2]).is_err());
    }

    /// Hostile graphs that used to panic (or abort allocating gigabytes)
    /// are named errors: odd paddings, non-permutations, a resize to
    /// 99999 x 99999, a node that is its own input, a constant whose shape
    /// disagrees with its values.
    #[test]
    fn hostile_graphs_are_named_errors() {
        use super::super::format::GraphModel;
        let graph = |nodes: &str, weights: &str, bin: Vec<u8>| {
            let json = format!(
                r#"{{"modelTopology":{{"node":[{{"name":"x","op":"Placeholder"}},{nodes}]}},"weightsManifest":[{{"paths":["m.bin"],"weights":[{weights}]}}]}}"#
            );
            GraphModel::parse(json.as_bytes(), &bin, "m.json").unwrap()
        };
        let ints = |v: &[i32]| v.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<u8>>();
        let device = Device::flex();
        let run = |g: &GraphModel, output: &str| -> Result<(), String> {
            let program = Program::compile(g, &[output], &[1, 4, 4, 3], &device)
                .map_err(|e| e.to_string())?;
            program.run(Tensor::zeros([1, 4, 4, 3], &device)).map(|_| ()).map_err(|e| e.to_string())
        };
        let cases = [
            (
                graph(
                    r#"{"name":"p","op":"Const"},{"name":"y","op":"Pad","input":["x","p"]}"#,
                    r#"{"name":"p","shape":[3],"dtype":"int32"}"#,
                    ints(&[1, 1, 1]),
                ),
                "y",
                "pairs",
            ),
            (
                graph(
                    r#"{"name":"p","op":"Const"},{"name":"y","op":"Transpose","input":["x","p"]}"#,
                    r#"{"name":"p","shape":[4],"dtype":"int32"}"#,
                    ints(&[0, 0, 9, 1]),
                ),
                "y",
                "permutation",
            ),
            (
                graph(
                    r#"{"name":"s","op":"Const"},{"name":"y","op":"ResizeNearestNeighbor","input":["x","s"]}"#,
                    r#"{"name":"s","shape":[2],"dtype":"int32"}"#,
                    ints(&[99999, 99999]),
                ),
                "y",
                "out of range",
            ),
            (
                graph(
                    r#"{"name":"y","op":"Relu","input":["z"]},{"name":"z","op":"Relu","input":["y"]}"#,
                    "",
                    vec![],
                ),
                "y",
                "cycle",
            ),
            (
                graph(
                    r#"{"name":"c","op":"Const"},{"name":"s","op":"Const"},{"name":"r","op":"Reshape","input":["c","s"]},{"name":"y","op":"AddV2","input":["x","r"]}"#,
                    r#"{"name":"c","shape":[2],"dtype":"float32"},{"name":"s","shape":[2],"dtype":"int32"}"#,
                    [1f32, 2.0]
                        .iter()
                        .flat_map(|v| v.to_le_bytes())
                        .chain(ints(&[4096, 4096]))
                        .collect(),
                ),
                "y",
                "reshape",
            ),
            (
                graph(
                    r#"{"name":"a","op":"Const"},{"name":"y","op":"ExpandDims","input":["x","a"]}"#,
                    r#"{"name":"a","shape":[0],"dtype":"int32"}"#,
                    vec![],
                ),
                "y",
                "non-empty",
            ),
        ];
        for (g, output, expected) in cases {
            let err = run(&g, output).unwrap_err();
            assert!(
                err.contains(expected) && err.contains("m.json"),
                "expected `{expected}`: {err}"
            );
        }
    }

    #[test]
    fn broadcasting() {
        assert_eq!(broadcast_shape(&[1, 4, 4, 8], &[8]).unwrap(), vec![1, 4, 4, 8]);
        assert_eq!(broadcast_shape(&[], &[2, 1]).unwrap(), vec![2, 1]);
        assert!(broadcast_shape(&[3], &[4]).is_err());
    }
}
