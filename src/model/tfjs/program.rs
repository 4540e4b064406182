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

use super::format::{GraphModel, HostData, HostTensor, NodeDef, TfjsError, element_count};
use burn::tensor::activation;
use burn::tensor::module::{avg_pool2d, conv2d, interpolate, max_pool2d};
use burn::tensor::ops::{AvgPoolOptions, ConvOptions, InterpolateMode, InterpolateOptions, MaxPoolOptions, PadMode};
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

fn pad4(shape: &[usize]) -> [usize; 4] {
    let mut out = [1; 4];
    out[4 - shape.len()..].copy_from_slice(shape);
    out
}

/// The most values one tensor may hold (256 MB of f32). A hostile graph
/// can ask for any size through a reshape, a pad or a resize; past this it
/// is an error, not an allocation that aborts the process.
pub const MAX_TENSOR_ELEMENTS: usize = 1 << 26;
/// The deepest chain of nodes compiled (the compiler recurses along it).
const MAX_GRAPH_DEPTH: usize = 2_000;
/// The most outputs one Split or Unpack may have.
const MAX_OUTPUTS: usize = 4_096;
/// The largest stride, dilation, kernel or padding accepted.
const MAX_WINDOW: usize = 1 << 16;

/// Checks a logical shape: rank at most 4, elements within the limit.
fn check_shape(shape: &[usize]) -> Result<(), String> {
    if shape.len() > 4 {
        return Err(format!("rank {} tensors are not supported", shape.len()));
    }
    match element_count(shape) {
        Some(n) if n <= MAX_TENSOR_ELEMENTS => Ok(()),
        _ => Err(format!("shape {shape:?} holds more than {MAX_TENSOR_ELEMENTS} values")),
    }
}

/// The first value of a constant (an axis, a pad value).
fn first_value(host: &HostTensor) -> Result<i64, String> {
    host.to_i64().first().copied().ok_or_else(|| "expects a non-empty constant".to_string())
}

/// A non-negative size or count read from a graph, at most `max`.
fn bounded(value: i64, max: usize, what: &str) -> Result<usize, String> {
    usize::try_from(value).ok().filter(|&v| v <= max).ok_or_else(|| format!("{what} {value} is out of range (0..={max})"))
}

/// Where a step reads an operand: an earlier step's output, or a constant.
#[derive(Debug, Clone)]
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
    fn resolve(&self, input: [usize; 2], kernel: [usize; 2], stride: [usize; 2], dilation: [usize; 2]) -> [(usize, usize); 2] {
        match self {
            Self::Valid => [(0, 0); 2],
            Self::Explicit(pairs) => *pairs,
            Self::Same => std::array::from_fn(|i| {
                let out = input[i].div_ceil(stride[i]);
                let span = kernel[i].saturating_sub(1).saturating_mul(dilation[i]).saturating_add(1);
                let total = out.saturating_sub(1).saturating_mul(stride[i]).saturating_add(span).saturating_sub(input[i]);
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
enum Op {
    Conv(Box<Conv>),
    Pool { kind: PoolKind, kernel: [usize; 2], stride: [usize; 2], padding: Padding, nhwc: bool },
    Binary(Binary, Operand, Operand),
    Unary(Activation),
    Sqrt,
    Pad { pairs: Vec<(usize, usize)>, value: f32 },
    Transpose(Vec<usize>),
    Reshape(Vec<i64>),
    Concat { inputs: Vec<Operand>, axis: i64 },
    /// Splits along `axis`; output k of the node goes to `outputs[k]`.
    Split { axis: i64, sizes: Vec<usize>, outputs: Vec<usize> },
    /// Removes axis `axis` (of size `count`) and sends each slice to `outputs`.
    Unpack { axis: i64, outputs: Vec<usize> },
    Resize { size: [usize; 2], bilinear: bool, align_corners: bool, nhwc: bool },
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

struct Compiler<'a> {
    graph: &'a GraphModel,
    nodes: HashMap<&'a str, &'a NodeDef>,
    /// How many node inputs read each node: a node read once can be fused
    /// into its reader.
    readers: HashMap<&'a str, usize>,
    /// Memo of [`Compiler::is_constant`].
    constant: HashMap<String, bool>,
    known: HashMap<String, Known>,
    steps: Vec<Step>,
    slot_count: usize,
    device: &'a Device,
    /// Nodes being compiled, innermost last: a node met again is a cycle,
    /// and the depth is bounded (compiling recurses along the graph).
    in_progress: Vec<&'a str>,
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
    pub fn compile(graph: &GraphModel, outputs: &[&str], input_shape: &[usize], device: &Device) -> Result<Self, TfjsError> {
        let placeholder = graph
            .find_op("Placeholder")
            .ok_or_else(|| TfjsError::Graph { file: graph.source.clone(), message: "the graph has no input".into() })?;
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
                Known::Host(host) => Operand::Const(
                    compiler.upload(&host).map_err(|message| TfjsError::Graph { file: graph.source.clone(), message: format!("output `{name}`: {message}") })?,
                ),
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

impl<'a> Compiler<'a> {
    fn error(&self, node: &NodeDef, message: impl Into<String>) -> TfjsError {
        self.graph.node_error(node, message)
    }

    fn new_slot(&mut self) -> usize {
        self.slot_count += 1;
        self.slot_count - 1
    }

    fn upload(&self, host: &HostTensor) -> Result<Value, String> {
        let shape = host.shape.clone();
        check_shape(&shape)?;
        if !host.is_consistent() {
            return Err(format!("constant of shape {shape:?} holds {} values", host.len()));
        }
        let data = TensorData::new(host.to_f32(), pad4(&shape));
        Ok(Value::new(Tensor::from_data(data, self.device), shape))
    }

    fn operand(&mut self, node: &NodeDef, name: &str) -> Result<Operand, TfjsError> {
        Ok(match self.resolve(name)? {
            Known::Slot(slot) => Operand::Slot(slot),
            Known::Host(host) => Operand::Const(self.upload(&host).map_err(|m| self.error(node, m))?),
        })
    }

    fn host_input(&mut self, node: &NodeDef, index: usize) -> Result<HostTensor, TfjsError> {
        let name = node.data_inputs().nth(index).ok_or_else(|| self.error(node, format!("missing input {index}")))?;
        match self.resolve(name)? {
            Known::Host(host) => Ok(host),
            Known::Slot(_) => Err(self.error(node, format!("input {index} must be a constant"))),
        }
    }

    /// Resolves a value by name, compiling (or folding) its node first.
    fn resolve(&mut self, name: &str) -> Result<Known, TfjsError> {
        let (node_name, k) = split_output(name);
        if let Some(known) = self.known.get(&key(node_name, k)) {
            return Ok(known.clone());
        }
        let node = *self.nodes.get(node_name).ok_or_else(|| TfjsError::Graph {
            file: self.graph.source.clone(),
            message: format!("no node named `{node_name}`"),
        })?;
        if self.in_progress.contains(&node.name.as_str()) {
            return Err(self.error(node, "is its own input (the graph has a cycle)"));
        }
        if self.in_progress.len() >= MAX_GRAPH_DEPTH {
            return Err(self.error(node, format!("the graph is deeper than {MAX_GRAPH_DEPTH} nodes")));
        }
        self.in_progress.push(node.name.as_str());
        let compiled = self.compile_node(node);
        self.in_progress.pop();
        compiled?;
        self.known
            .get(&key(node_name, k))
            .cloned()
            .ok_or_else(|| self.error(node, format!("has no output {k}")))
    }

    /// Whether a value depends on constants only (never on the input).
    fn is_constant(&mut self, name: &str) -> bool {
        self.is_constant_at(name, 0)
    }

    fn is_constant_at(&mut self, name: &str, depth: usize) -> bool {
        let (node_name, _) = split_output(name);
        if let Some(&known) = self.constant.get(node_name) {
            return known;
        }
        if depth > MAX_GRAPH_DEPTH {
            return false; // compiling it will name the error
        }
        // Provisionally not: a cycle back to this node ends here.
        self.constant.insert(node_name.to_string(), false);
        let constant = match self.nodes.get(node_name) {
            Some(node) if node.op == "Const" => true,
            Some(node) if node.op == "Placeholder" => false,
            Some(node) => {
                let node: &NodeDef = node;
                let inputs: Vec<&str> = node.data_inputs().collect();
                !inputs.is_empty() && inputs.into_iter().all(|i| self.is_constant_at(i, depth + 1))
            }
            None => false,
        };
        self.constant.insert(node_name.to_string(), constant);
        constant
    }

    fn compile_node(&mut self, node: &'a NodeDef) -> Result<(), TfjsError> {
        if node.op == "Const" {
            let host = self
                .graph
                .constants
                .get(&node.name)
                .cloned()
                .ok_or_else(|| self.error(node, "constant missing from the weights manifest"))?;
            self.known.insert(key(&node.name, 0), Known::Host(host));
            return Ok(());
        }
        // Nodes of constants only are folded now; the others resolve their
        // inputs as they compile (depth first, so steps come out in order,
        // and a reader can fuse a producer it alone reads before it is emitted).
        if node.data_inputs().next().is_some() && node.data_inputs().all(|i| self.is_constant(i)) {
            let mut hosts = Vec::new();
            for input in node.data_inputs() {
                match self.resolve(input)? {
                    Known::Host(h) => hosts.push(h),
                    Known::Slot(_) => return Err(self.error(node, "mixes constants and computed values")),
                }
            }
            let folded = fold(node, &hosts).map_err(|m| self.error(node, m))?;
            for (k, host) in folded.into_iter().enumerate() {
                self.known.insert(key(&node.name, k), Known::Host(host));
            }
            return Ok(());
        }
        self.compile_device_node(node)
    }

    fn first_slot(&mut self, node: &NodeDef) -> Result<usize, TfjsError> {
        let name = node.data_inputs().next().ok_or_else(|| self.error(node, "has no input"))?;
        match self.resolve(name)? {
            Known::Slot(slot) => Ok(slot),
            Known::Host(_) => Err(self.error(node, "expects a computed input first")),
        }
    }

    fn emit(&mut self, node: &NodeDef, input: Option<usize>, op: Op) -> usize {
        let output = self.new_slot();
        self.steps.push(Step { node: node.name.clone(), input, op, output });
        self.known.insert(key(&node.name, 0), Known::Slot(output));
        output
    }

    fn compile_device_node(&mut self, node: &'a NodeDef) -> Result<(), TfjsError> {
        let op = node.op.as_str();
        match op {
            "Identity" | "Cast" | "StopGradient" | "Snapshot" => {
                let slot = self.first_slot(node)?;
                self.known.insert(key(&node.name, 0), Known::Slot(slot));
            }
            "Conv2D" | "_FusedConv2D" | "DepthwiseConv2dNative" | "FusedDepthwiseConv2dNative" => {
                let mut conv = self.conv(node)?;
                let input = match self.fold_padding(node, &conv)? {
                    Some((slot, pairs)) => {
                        conv.padding = Padding::Explicit(pairs);
                        slot
                    }
                    None => self.first_slot(node)?,
                };
                self.emit(node, Some(input), Op::Conv(Box::new(conv)));
            }
            "MaxPool" | "AvgPool" => {
                let input = self.first_slot(node)?;
                let nhwc = self.nhwc(node)?;
                let (kernel, stride) = (self.spatial(node, "ksize", nhwc)?, self.spatial(node, "strides", nhwc)?);
                let padding = self.padding(node, nhwc)?;
                let kind = if op == "MaxPool" { PoolKind::Max } else { PoolKind::Avg };
                self.emit(node, Some(input), Op::Pool { kind, kernel, stride, padding, nhwc });
            }
            "Add" | "AddV2" | "BiasAdd" | "Sub" | "Mul" | "RealDiv" | "Maximum" | "Minimum" | "SquaredDifference" => {
                let binary = match op {
                    "Add" | "AddV2" | "BiasAdd" => Binary::Add,
                    "Sub" => Binary::Sub,
                    "Mul" => Binary::Mul,
                    "RealDiv" => Binary::Div,
                    "Maximum" => Binary::Max,
                    "Minimum" => Binary::Min,
                    _ => Binary::SquaredDifference,
                };
                let names: Vec<&str> = node.data_inputs().collect();
                if names.len() != 2 {
                    return Err(self.error(node, "expects two inputs"));
                }
                if matches!(binary, Binary::Add) && self.fold_bias(node, names[0], names[1])? {
                    return Ok(());
                }
                let (a, b) = (self.operand(node, names[0])?, self.operand(node, names[1])?);
                self.emit(node, None, Op::Binary(binary, a, b));
            }
            "Relu" | "Relu6" | "LeakyRelu" | "Sigmoid" | "Tanh" => {
                let input = self.first_slot(node)?;
                let alpha = node.attr_float("alpha").unwrap_or(0.2);
                let act = Activation::parse(op, alpha).ok_or_else(|| self.error(node, "unsupported activation"))?;
                self.emit(node, Some(input), Op::Unary(act));
            }
            "Sqrt" => {
                let input = self.first_slot(node)?;
                self.emit(node, Some(input), Op::Sqrt);
            }
            "Pad" | "PadV2" => {
                let input = self.first_slot(node)?;
                let pads = self.host_input(node, 1)?.to_i64();
                let value = if op == "PadV2" {
                    *self.host_input(node, 2)?.to_f32().first().ok_or_else(|| self.error(node, "no pad value"))?
                } else {
                    0.0
                };
                let pairs = pad_pairs(&pads).map_err(|m| self.error(node, m))?;
                self.emit(node, Some(input), Op::Pad { pairs, value });
            }
            "Transpose" => {
                let input = self.first_slot(node)?;
                let perm = permutation(&self.host_input(node, 1)?.to_i64()).map_err(|m| self.error(node, m))?;
                self.emit(node, Some(input), Op::Transpose(perm));
            }
            "Reshape" => {
                let input = self.first_slot(node)?;
                let shape = self.host_input(node, 1)?.to_i64();
                self.emit(node, Some(input), Op::Reshape(shape));
            }
            "ExpandDims" | "Squeeze" => {
                // Both only change the logical shape: compile them as a reshape
                // resolved at run time from the input's shape.
                let input = self.first_slot(node)?;
                let op = if op == "ExpandDims" {
                    let axis = first_value(&self.host_input(node, 1)?).map_err(|m| self.error(node, m))?;
                    if !(-5..=4).contains(&axis) {
                        return Err(self.error(node, format!("axis {axis} is out of range")));
                    }
                    Op::Reshape(vec![i64::MIN, axis])
                } else {
                    let dims = node.attr_int_list("squeeze_dims").unwrap_or_default();
                    if dims.iter().any(|d| !(-4..4).contains(d)) {
                        return Err(self.error(node, format!("squeeze_dims {dims:?} are out of range")));
                    }
                    Op::Reshape([i64::MIN + 1].into_iter().chain(dims).collect())
                };
                self.emit(node, Some(input), op);
            }
            "ConcatV2" => {
                let names: Vec<&str> = node.data_inputs().collect();
                let (axis_name, value_names) = names.split_last().ok_or_else(|| self.error(node, "no inputs"))?;
                let axis = match self.resolve(axis_name)? {
                    Known::Host(h) => first_value(&h).map_err(|m| self.error(node, m))?,
                    Known::Slot(_) => return Err(self.error(node, "axis must be a constant")),
                };
                if value_names.is_empty() {
                    return Err(self.error(node, "nothing to concatenate"));
                }
                let inputs = value_names.iter().map(|n| self.operand(node, n)).collect::<Result<_, _>>()?;
                self.emit(node, None, Op::Concat { inputs, axis });
            }
            "SplitV" | "Split" => {
                let (input, sizes, axis) = if op == "SplitV" {
                    let input = self.first_slot(node)?;
                    let sizes = self.host_input(node, 1)?.to_i64();
                    let axis = first_value(&self.host_input(node, 2)?).map_err(|m| self.error(node, m))?;
                    (input, sizes, axis)
                } else {
                    let axis = first_value(&self.host_input(node, 0)?).map_err(|m| self.error(node, m))?;
                    let name = node.data_inputs().nth(1).ok_or_else(|| self.error(node, "missing input"))?;
                    let Known::Slot(input) = self.resolve(name)? else {
                        return Err(self.error(node, "expects a computed input"));
                    };
                    let parts = bounded(node.attr_int("num_split").unwrap_or(1), MAX_OUTPUTS, "num_split").map_err(|m| self.error(node, m))?;
                    (input, vec![-(parts as i64)], axis)
                };
                // `[-n]` asks for n equal parts; otherwise one output per size.
                let count = match sizes.as_slice() {
                    [n] if *n < 0 => n.unsigned_abs() as usize,
                    _ => sizes.len(),
                };
                if count == 0 || count > MAX_OUTPUTS {
                    return Err(self.error(node, format!("{count} outputs (1..={MAX_OUTPUTS})")));
                }
                if count == sizes.len() && sizes.iter().any(|&s| s < 0) && sizes.len() > 1 {
                    return Err(self.error(node, format!("split sizes {sizes:?} must not be negative")));
                }
                let outputs: Vec<usize> = (0..count).map(|_| self.new_slot()).collect();
                for (k, &slot) in outputs.iter().enumerate() {
                    self.known.insert(key(&node.name, k), Known::Slot(slot));
                }
                let sizes = sizes.iter().map(|&s| s.max(0) as usize).collect();
                let first = outputs[0];
                self.steps.push(Step {
                    node: node.name.clone(),
                    input: Some(input),
                    op: Op::Split { axis, sizes, outputs },
                    output: first,
                });
            }
            "Unpack" => {
                let input = self.first_slot(node)?;
                let axis = node.attr_int("axis").unwrap_or(0);
                let count = bounded(node.attr_int("num").unwrap_or(1), MAX_OUTPUTS, "num").map_err(|m| self.error(node, m))?.max(1);
                let outputs: Vec<usize> = (0..count).map(|_| self.new_slot()).collect();
                for (k, &slot) in outputs.iter().enumerate() {
                    self.known.insert(key(&node.name, k), Known::Slot(slot));
                }
                let first = outputs[0];
                self.steps.push(Step { node: node.name.clone(), input: Some(input), op: Op::Unpack { axis, outputs }, output: first });
            }
            "ResizeBilinear" | "ResizeNearestNeighbor" => {
                let input = self.first_slot(node)?;
                let size = self.host_input(node, 1)?.to_i64();
                if size.len() != 2 {
                    return Err(self.error(node, "size must have two values"));
                }
                let align_corners = node.attr_bool("align_corners").unwrap_or(false);
                let half_pixel = node.attr_bool("half_pixel_centers").unwrap_or(false);
                if !align_corners && !half_pixel && op == "ResizeBilinear" {
                    return Err(self.error(node, "legacy (asymmetric) resize sampling is not supported; re-export with half_pixel_centers"));
                }
                let side = |v: i64| bounded(v, MAX_WINDOW, "resize size").map_err(|m| self.error(node, m));
                let op = Op::Resize {
                    size: [side(size[0])?, side(size[1])?],
                    bilinear: op == "ResizeBilinear",
                    align_corners,
                    nhwc: true,
                };
                self.emit(node, Some(input), op);
            }
            other => return Err(self.error(node, format!("operation {other} is not supported"))),
        }
        Ok(())
    }

    /// The node named `name` when only one input anywhere reads it.
    fn read_once(&self, name: &str) -> Option<&'a NodeDef> {
        let (node, _) = split_output(name);
        (self.readers.get(node) == Some(&1)).then(|| self.nodes.get(node).copied()).flatten()
    }

    /// ONNX converters pad explicitly (often on the other layout, behind a
    /// transpose) and then run a VALID convolution. Folding the zero padding
    /// into the convolution saves a full copy of the activations per layer.
    /// Returns the unpadded input (transposed as the graph wanted) and the
    /// padding for the convolution, or `None` when the pattern does not apply.
    fn fold_padding(&mut self, node: &NodeDef, conv: &Conv) -> Result<Option<(usize, [(usize, usize); 2])>, TfjsError> {
        if !matches!(conv.padding, Padding::Valid) {
            return Ok(None);
        }
        let Some(first) = node.data_inputs().next() else { return Ok(None) };
        let Some(mut producer) = self.read_once(first) else { return Ok(None) };
        let mut transpose = None;
        if producer.op == "Transpose" {
            let Some(pad) = producer.data_inputs().next().and_then(|i| self.read_once(i)) else { return Ok(None) };
            transpose = Some(producer);
            producer = pad;
        }
        if !(producer.op == "Pad" || producer.op == "PadV2") {
            return Ok(None);
        }
        if producer.op == "PadV2" && self.host_input(producer, 2)?.to_f32().first() != Some(&0.0) {
            return Ok(None);
        }
        let pads = self.host_input(producer, 1)?.to_i64();
        let Ok(mut pairs) = pad_pairs(&pads) else { return Ok(None) };
        let perm = match transpose {
            Some(t) => match permutation(&self.host_input(t, 1)?.to_i64()) {
                Ok(perm) => perm,
                Err(_) => return Ok(None),
            },
            None => (0..pairs.len()).collect::<Vec<_>>(),
        };
        if pairs.len() != 4 || perm.len() != 4 {
            return Ok(None);
        }
        pairs = perm.iter().map(|&p| pairs[p]).collect(); // as the convolution sees them
        let (batch, channels, h, w) = if conv.nhwc { (0, 3, 1, 2) } else { (0, 1, 2, 3) };
        if pairs[batch] != (0, 0) || pairs[channels] != (0, 0) {
            return Ok(None);
        }
        let Some(source) = producer.data_inputs().next().map(str::to_string) else { return Ok(None) };
        let Known::Slot(mut slot) = self.resolve(&source)? else { return Ok(None) };
        if let Some(t) = transpose {
            slot = self.emit(t, Some(slot), Op::Transpose(perm));
        }
        Ok(Some((slot, [pairs[h], pairs[w]])))
    }

    /// A bias added right after a bias-less convolution becomes its bias.
    fn fold_bias(&mut self, node: &NodeDef, a: &str, b: &str) -> Result<bool, TfjsError> {
        if self.read_once(a).is_none() {
            return Ok(false);
        }
        let (Known::Slot(slot), Known::Host(bias)) = (self.resolve(a)?, self.resolve(b)?) else { return Ok(false) };
        let Some(step) = self.steps.iter_mut().rev().find(|s| s.output == slot) else { return Ok(false) };
        let Op::Conv(conv) = &mut step.op else { return Ok(false) };
        let channels = conv.weight.dims()[0];
        // The bias must run along the channel axis: [C], or ones elsewhere.
        let channel_axis = if conv.nhwc { 3 } else { 1 };
        let along_channels = bias.shape.len() == 1
            || (bias.shape.len() == 4 && bias.shape.iter().enumerate().all(|(i, &d)| d == 1 || i == channel_axis));
        if conv.bias.is_some() || conv.activation != Activation::None || bias.len() != channels || !along_channels || !bias.is_consistent() {
            return Ok(false);
        }
        conv.bias = Some(Tensor::from_data(TensorData::new(bias.to_f32(), [channels]), self.device));
        self.known.insert(key(&node.name, 0), Known::Slot(slot));
        Ok(true)
    }

    fn nhwc(&self, node: &NodeDef) -> Result<bool, TfjsError> {
        match node.attr_str("data_format").as_deref() {
            None | Some("NHWC") => Ok(true),
            Some("NCHW") => Ok(false),
            Some(other) => Err(self.error(node, format!("data format {other} is not supported"))),
        }
    }

    /// The height and width entries of a 4-entry attribute (strides, ksize, ...).
    fn spatial(&self, node: &NodeDef, attr: &str, nhwc: bool) -> Result<[usize; 2], TfjsError> {
        let list = node.attr_int_list(attr).unwrap_or_else(|| vec![1; 4]);
        if list.len() != 4 {
            return Err(self.error(node, format!("`{attr}` must have 4 entries")));
        }
        let (h, w) = if nhwc { (list[1], list[2]) } else { (list[2], list[3]) };
        let value = |v: i64| bounded(v, MAX_WINDOW, attr).ok().filter(|&v| v >= 1).ok_or_else(|| self.error(node, format!("`{attr}` {list:?} must be 1..={MAX_WINDOW}")));
        Ok([value(h)?, value(w)?])
    }

    fn padding(&self, node: &NodeDef, nhwc: bool) -> Result<Padding, TfjsError> {
        match node.attr_str("padding").as_deref() {
            Some("SAME") => Ok(Padding::Same),
            Some("VALID") | None => Ok(Padding::Valid),
            Some("EXPLICIT") => {
                let pads = node.attr_int_list("explicit_paddings").unwrap_or_default();
                if pads.len() != 8 {
                    return Err(self.error(node, "explicit_paddings must have 8 entries"));
                }
                let (h, w) = if nhwc { (2, 4) } else { (4, 6) };
                let pad = |v: i64| bounded(v, MAX_WINDOW, "explicit padding").map_err(|m| self.error(node, m));
                Ok(Padding::Explicit([(pad(pads[h])?, pad(pads[h + 1])?), (pad(pads[w])?, pad(pads[w + 1])?)]))
            }
            Some(other) => Err(self.error(node, format!("padding {other} is not supported"))),
        }
    }

    fn conv(&mut self, node: &NodeDef) -> Result<Conv, TfjsError> {
        let depthwise = node.op.contains("Depthwise");
        let nhwc = self.nhwc(node)?;
        let filter = self.host_input(node, 1)?;
        if filter.shape.len() != 4 {
            return Err(self.error(node, "the filter must be 4-D"));
        }
        let [kh, kw, cin, cout] = [filter.shape[0], filter.shape[1], filter.shape[2], filter.shape[3]];
        let values = filter.to_f32();
        if !filter.is_consistent() || values.is_empty() {
            return Err(self.error(node, format!("filter of shape {:?} holds {} values", filter.shape, values.len())));
        }
        // TF filters are [kh, kw, in, out] (depthwise: [kh, kw, in, multiplier]);
        // Burn wants [out, in / groups, kh, kw] with out = in * multiplier + m.
        let (out_channels, per_group, groups) = if depthwise { (cin * cout, 1, cin) } else { (cout, cin, 1) };
        let mut weight = vec![0f32; values.len()];
        for y in 0..kh {
            for x in 0..kw {
                for i in 0..cin {
                    for o in 0..cout {
                        let src = ((y * kw + x) * cin + i) * cout + o;
                        let (out, inp) = if depthwise { (i * cout + o, 0) } else { (o, i) };
                        weight[((out * per_group + inp) * kh + y) * kw + x] = values[src];
                    }
                }
            }
        }
        let weight = Tensor::from_data(TensorData::new(weight, [out_channels, per_group, kh, kw]), self.device);
        let fused = node.attr_str_list("fused_ops");
        let mut bias = None;
        let mut activation = Activation::None;
        for (i, fused_op) in fused.iter().enumerate() {
            match fused_op.as_str() {
                "BiasAdd" => {
                    let values = self.host_input(node, 2)?.to_f32();
                    if values.len() != out_channels {
                        return Err(self.error(node, format!("bias has {} values for {out_channels} channels", values.len())));
                    }
                    bias = Some(Tensor::from_data(TensorData::new(values, [out_channels]), self.device));
                }
                other if i > 0 || fused.len() == 1 => {
                    let alpha = node.attr_float("leakyrelu_alpha").unwrap_or(0.2);
                    activation = Activation::parse(other, alpha)
                        .ok_or_else(|| self.error(node, format!("fused operation {other} is not supported")))?;
                }
                other => return Err(self.error(node, format!("fused operation {other} is not supported"))),
            }
        }
        Ok(Conv {
            weight,
            bias,
            stride: self.spatial(node, "strides", nhwc)?,
            dilation: self.spatial(node, "dilations", nhwc)?,
            padding: self.padding(node, nhwc)?,
            groups,
            activation,
            nhwc,
        })
    }
}

/// Evaluates a node whose inputs are all constants.
fn fold(node: &NodeDef, inputs: &[HostTensor]) -> Result<Vec<HostTensor>, String> {
    let ints = |t: &HostTensor| t.to_i64();
    let same_kind = |a: &HostTensor, values: Vec<f64>, shape: Vec<usize>| HostTensor {
        shape,
        data: match a.data {
            HostData::I64(_) => HostData::I64(values.iter().map(|&v| v as i64).collect()),
            HostData::F32(_) => HostData::F32(values.iter().map(|&v| v as f32).collect()),
        },
    };
    let as_f64 = |t: &HostTensor| -> Vec<f64> {
        match &t.data {
            HostData::F32(v) => v.iter().map(|&x| x as f64).collect(),
            HostData::I64(v) => v.iter().map(|&x| x as f64).collect(),
        }
    };
    let arity = match node.op.as_str() {
        "Identity" | "StopGradient" | "Cast" => 1,
        "Add" | "AddV2" | "Sub" | "Mul" | "RealDiv" | "FloorDiv" | "Maximum" | "Minimum" | "Reshape" => 2,
        "SparseToDense" => 4,
        _ => 1,
    };
    if inputs.len() < arity {
        return Err(format!("{} needs {arity} inputs, has {}", node.op, inputs.len()));
    }
    for input in inputs {
        if !input.is_consistent() {
            return Err(format!("a constant of shape {:?} holds {} values", input.shape, input.len()));
        }
    }
    Ok(match node.op.as_str() {
        "Identity" | "StopGradient" => vec![inputs[0].clone()],
        "Cast" => {
            let to_float = node.attr.get("DstT").and_then(|t| t.get("type")).and_then(|t| t.as_str()) == Some("DT_FLOAT");
            let t = &inputs[0];
            let data = if to_float { HostData::F32(t.to_f32()) } else { HostData::I64(t.to_i64()) };
            vec![HostTensor { shape: t.shape.clone(), data }]
        }
        "Add" | "AddV2" | "Sub" | "Mul" | "RealDiv" | "FloorDiv" | "Maximum" | "Minimum" => {
            let (a, b) = (&inputs[0], &inputs[1]);
            let (x, y) = (as_f64(a), as_f64(b));
            let (long, short) = if x.len() >= y.len() { (a, b) } else { (b, a) };
            if short.len() != 1 && short.len() != long.len() {
                return Err(format!("cannot fold broadcast of {:?} and {:?}", a.shape, b.shape));
            }
            let n = x.len().max(y.len());
            let pick = |v: &Vec<f64>, i: usize| if v.len() == 1 { v[0] } else { v[i] };
            let values = (0..n)
                .map(|i| {
                    let (p, q) = (pick(&x, i), pick(&y, i));
                    match node.op.as_str() {
                        "Sub" => p - q,
                        "Mul" => p * q,
                        "RealDiv" => p / q,
                        "FloorDiv" => (p / q).floor(),
                        "Maximum" => p.max(q),
                        "Minimum" => p.min(q),
                        _ => p + q,
                    }
                })
                .collect();
            vec![same_kind(a, values, long.shape.clone())]
        }
        "SparseToDense" => {
            // (indices, output_shape, values, default): only the 1-D case,
            // which is what ONNX converters emit for shape vectors.
            let (indices, shape, values, default) = (ints(&inputs[0]), ints(&inputs[1]), &inputs[2], &inputs[3]);
            if shape.len() != 1 {
                return Err("only 1-D SparseToDense can be folded".into());
            }
            let length = bounded(shape[0], MAX_OUTPUTS, "SparseToDense length")?;
            let default = *as_f64(default).first().ok_or("no default value")?;
            let mut out = vec![default; length];
            let vals = as_f64(values);
            if vals.len() != 1 && vals.len() != indices.len() {
                return Err(format!("{} values for {} indices", vals.len(), indices.len()));
            }
            for (j, &i) in indices.iter().enumerate() {
                let slot = usize::try_from(i).ok().and_then(|i| out.get_mut(i)).ok_or("index out of range")?;
                *slot = if vals.len() == 1 { vals[0] } else { vals[j] };
            }
            vec![same_kind(values, out, vec![length])]
        }
        "Reshape" => {
            let mut t = inputs[0].clone();
            t.shape = reshape_target(&t.shape, &ints(&inputs[1]))?;
            vec![t]
        }
        "Pack" => {
            if inputs.iter().any(|t| t.shape != inputs[0].shape) {
                return Err("Pack of constants of different shapes".into());
            }
            let mut values = Vec::new();
            for t in inputs {
                values.extend(as_f64(t));
            }
            let mut shape = vec![inputs.len()];
            shape.extend(&inputs[0].shape);
            vec![same_kind(&inputs[0], values, shape)]
        }
        other => return Err(format!("cannot fold operation {other} on constants")),
    })
}

fn op_name(op: &Op) -> &'static str {
    match op {
        Op::Conv(_) => "Conv",
        Op::Pool { .. } => "Pool",
        Op::Binary(..) => "Binary",
        Op::Unary(_) => "Unary",
        Op::Sqrt => "Sqrt",
        Op::Pad { .. } => "Pad",
        Op::Transpose(_) => "Transpose",
        Op::Reshape(_) => "Reshape",
        Op::Concat { .. } => "Concat",
        Op::Split { .. } => "Split",
        Op::Unpack { .. } => "Unpack",
        Op::Resize { .. } => "Resize",
    }
}

/// Marks the one output of a single-output step.
const SINGLE_OUTPUT: usize = usize::MAX;

/// Runs one step; returns the slots it writes.
fn execute(op: &Op, input: Option<Value>, slots: &[Option<Value>]) -> Result<Vec<(usize, Value)>, String> {
    let fetch = |operand: &Operand| -> Value {
        match operand {
            Operand::Slot(slot) => slots[*slot].clone().expect("compiled in order"),
            Operand::Const(value) => value.clone(),
        }
    };
    let input = || input.clone().ok_or_else(|| "missing input".to_string());
    let value = match op {
        Op::Conv(conv) => run_conv(conv, input()?)?,
        Op::Pool { kind, kernel, stride, padding, nhwc } => {
            let x = input()?;
            let (nchw, [_, _, h, w]) = to_nchw(&x, *nhwc)?;
            let pads = padding.resolve([h, w], *kernel, *stride, [1, 1]);
            window_output([h, w], *kernel, *stride, [1, 1], pads)?;
            let y = match kind {
                PoolKind::Max => {
                    let options = MaxPoolOptions::new(*kernel).with_stride(*stride).with_padding_pairs(pads);
                    max_pool2d(nchw, options)
                }
                PoolKind::Avg => {
                    let options = AvgPoolOptions::new(*kernel)
                        .with_stride(*stride)
                        .with_padding_pairs(pads)
                        .with_count_include_pad(false);
                    avg_pool2d(nchw, options)
                }
            };
            from_nchw(y, *nhwc)
        }
        Op::Binary(kind, a, b) => {
            let (a, b) = (fetch(a), fetch(b));
            let shape = broadcast_shape(&a.shape, &b.shape)?;
            check_shape(&shape)?;
            let (x, y) = (a.tensor, b.tensor);
            let t = match kind {
                Binary::Add => x + y,
                Binary::Sub => x - y,
                Binary::Mul => x * y,
                Binary::Div => x / y,
                Binary::Max => x.max_pair(y),
                Binary::Min => x.min_pair(y),
                Binary::SquaredDifference => (x - y).square(),
            };
            Value::new(t, shape)
        }
        Op::Unary(act) => {
            let x = input()?;
            Value::new(act.apply(x.tensor), x.shape)
        }
        Op::Sqrt => {
            let x = input()?;
            Value::new(x.tensor.sqrt(), x.shape)
        }
        Op::Pad { pairs, value } => {
            let x = input()?;
            if pairs.len() != x.rank() {
                return Err(format!("{} padding pairs for rank {}", pairs.len(), x.rank()));
            }
            let shape: Vec<usize> = x.shape.iter().zip(pairs).map(|(d, (a, b))| d + a + b).collect();
            check_shape(&shape)?;
            Value::new(x.tensor.pad(pairs.clone(), PadMode::Constant(*value)), shape)
        }
        Op::Transpose(perm) => {
            let x = input()?;
            if perm.len() != x.rank() || perm.iter().any(|&p| p >= x.rank()) {
                return Err(format!("permutation {perm:?} for rank {}", x.rank()));
            }
            let offset = 4 - x.rank();
            let mut axes = [0, 1, 2, 3];
            for (i, &p) in perm.iter().enumerate() {
                axes[offset + i] = offset + p;
            }
            let shape = perm.iter().map(|&p| x.shape[p]).collect();
            Value::new(x.tensor.permute(axes), shape)
        }
        Op::Reshape(spec) => {
            let x = input()?;
            let shape = reshape_target(&x.shape, spec)?;
            Value::new(x.tensor.reshape(pad4(&shape)), shape)
        }
        Op::Concat { inputs, axis } => {
            let values: Vec<Value> = inputs.iter().map(fetch).collect();
            let first = values.first().ok_or("nothing to concatenate")?;
            let axis4 = first.axis4(*axis)?;
            let mismatched = values.iter().any(|v| {
                v.rank() != first.rank() || (0..4).any(|d| d != axis4 && v.tensor.dims()[d] != first.tensor.dims()[d])
            });
            if mismatched {
                return Err(format!("cannot concatenate shapes {:?} along axis {axis}", values.iter().map(|v| &v.shape).collect::<Vec<_>>()));
            }
            let mut shape = first.shape.clone();
            shape[axis4 - (4 - first.rank())] = values.iter().map(|v| v.tensor.dims()[axis4]).sum();
            check_shape(&shape)?;
            Value::new(Tensor::cat(values.into_iter().map(|v| v.tensor).collect(), axis4), shape)
        }
        Op::Split { axis, sizes, outputs } => {
            let x = input()?;
            let axis4 = x.axis4(*axis)?;
            let total = x.tensor.dims()[axis4];
            let sizes: Vec<usize> = if sizes.len() == 1 && outputs.len() > 1 {
                vec![total / outputs.len(); outputs.len()]
            } else {
                sizes.clone()
            };
            if sizes.len() != outputs.len() || sizes.iter().try_fold(0usize, |a, &s| a.checked_add(s)) != Some(total) {
                return Err(format!("split sizes {sizes:?} do not make {} parts of {total}", outputs.len()));
            }
            let parts = x.tensor.clone().split_with_sizes(sizes.clone(), axis4);
            return Ok(outputs
                .iter()
                .zip(parts)
                .zip(sizes)
                .map(|((&slot, part), size)| {
                    let mut shape = x.shape.clone();
                    shape[axis4 - (4 - x.rank())] = size;
                    (slot, Value::new(part, shape))
                })
                .collect());
        }
        Op::Unpack { axis, outputs } => {
            let x = input()?;
            let axis4 = x.axis4(*axis)?;
            let logical = axis4 - (4 - x.rank());
            if x.shape[logical] != outputs.len() {
                return Err(format!("unpacks {} values along an axis of {}", outputs.len(), x.shape[logical]));
            }
            let mut shape = x.shape.clone();
            shape.remove(logical);
            return Ok(outputs
                .iter()
                .enumerate()
                .map(|(k, &slot)| {
                    let part = x.tensor.clone().narrow(axis4, k, 1);
                    (slot, Value::new(part.reshape(pad4(&shape)), shape.clone()))
                })
                .collect());
        }
        Op::Resize { size, bilinear, align_corners, nhwc } => {
            let x = input()?;
            let (nchw, [n, c, _, _]) = to_nchw(&x, *nhwc)?;
            if size.contains(&0) {
                return Err("resize to an empty size".into());
            }
            check_shape(&[n, c, size[0], size[1]])?;
            let mode = if *bilinear { InterpolateMode::Bilinear } else { InterpolateMode::Nearest };
            let options = InterpolateOptions::new(mode).with_align_corners(*align_corners).with_output_size(*size);
            from_nchw(interpolate(nchw, options), *nhwc)
        }
    };
    Ok(vec![(SINGLE_OUTPUT, value)])
}

fn to_nchw(x: &Value, nhwc: bool) -> Result<(Tensor<4>, [usize; 4]), String> {
    if x.rank() != 4 {
        return Err(format!("expects a 4-D input, got shape {:?}", x.shape));
    }
    let t = if nhwc { x.tensor.clone().permute([0, 3, 1, 2]) } else { x.tensor.clone() };
    let dims = t.dims();
    Ok((t, dims))
}

fn from_nchw(y: Tensor<4>, nhwc: bool) -> Value {
    let y = if nhwc { y.permute([0, 2, 3, 1]) } else { y };
    let shape = y.dims().to_vec();
    Value::new(y, shape)
}

fn run_conv(conv: &Conv, x: Value) -> Result<Value, String> {
    let (nchw, [_, c, h, w]) = to_nchw(&x, conv.nhwc)?;
    let [_, per_group, kh, kw] = conv.weight.dims();
    if per_group * conv.groups != c {
        return Err(format!("input has {c} channels, the filter expects {}", per_group * conv.groups));
    }
    let padding = conv.padding.resolve([h, w], [kh, kw], conv.stride, conv.dilation);
    let [oh, ow] = window_output([h, w], [kh, kw], conv.stride, conv.dilation, padding)?;
    check_shape(&[1, conv.weight.dims()[0], oh, ow])?;
    let options = ConvOptions::new_with_padding(conv.stride, padding, conv.dilation, conv.groups);
    let y = conv2d(nchw, conv.weight.clone(), conv.bias.clone(), options);
    let y = conv.activation.apply(y);
    Ok(from_nchw(y, conv.nhwc))
}

/// `[before, after]` pairs from a flat list of paddings, each bounded.
fn pad_pairs(pads: &[i64]) -> Result<Vec<(usize, usize)>, String> {
    if pads.len() % 2 != 0 || pads.len() > 8 {
        return Err(format!("paddings {pads:?} are not pairs for rank <= 4"));
    }
    pads.chunks(2).map(|p| Ok((bounded(p[0], MAX_WINDOW, "padding")?, bounded(p[1], MAX_WINDOW, "padding")?))).collect()
}

/// A permutation of `0..n` (n <= 4), or an error.
fn permutation(values: &[i64]) -> Result<Vec<usize>, String> {
    let n = values.len();
    let perm: Vec<usize> = values.iter().filter_map(|&v| usize::try_from(v).ok().filter(|&v| v < n)).collect();
    let mut seen = [false; 4];
    if n > 4 || perm.len() != n || perm.iter().any(|&p| std::mem::replace(&mut seen[p], true)) {
        return Err(format!("{values:?} is not a permutation of 0..{n}"));
    }
    Ok(perm)
}

/// The output size of a window (convolution, pooling) sliding over
/// `input` with `padding`: an error when the window does not fit once.
fn window_output(input: [usize; 2], kernel: [usize; 2], stride: [usize; 2], dilation: [usize; 2], padding: [(usize, usize); 2]) -> Result<[usize; 2], String> {
    let mut out = [0; 2];
    for i in 0..2 {
        let padded = input[i] + padding[i].0 + padding[i].1;
        let span = dilation[i].checked_mul(kernel[i].saturating_sub(1)).and_then(|s| s.checked_add(1));
        match span {
            Some(span) if kernel[i] >= 1 && stride[i] >= 1 && span <= padded => out[i] = (padded - span) / stride[i] + 1,
            _ => return Err(format!("a {}x{} window does not fit a {}x{} input", kernel[0], kernel[1], input[0], input[1])),
        }
    }
    Ok(out)
}

fn broadcast_shape(a: &[usize], b: &[usize]) -> Result<Vec<usize>, String> {
    let rank = a.len().max(b.len());
    let at = |s: &[usize], i: usize| if i + s.len() >= rank { s[i + s.len() - rank] } else { 1 };
    (0..rank)
        .map(|i| match (at(a, i), at(b, i)) {
            (x, y) if x == y || y == 1 => Ok(x),
            (1, y) => Ok(y),
            (x, y) => Err(format!("shapes {a:?} and {b:?} do not broadcast ({x} vs {y})")),
        })
        .collect()
}

/// The target shape of a reshape. Two sentinels encode the shape-only ops:
/// `[MIN, axis]` is ExpandDims, `[MIN + 1, dims...]` is Squeeze.
fn reshape_target(shape: &[usize], spec: &[i64]) -> Result<Vec<usize>, String> {
    let rank = shape.len() as i64;
    let target: Vec<usize> = match spec.first() {
        Some(&i64::MIN) => {
            let axis = *spec.get(1).ok_or("ExpandDims without an axis")?;
            let axis = usize::try_from(if axis < 0 { axis + rank + 1 } else { axis }).map_err(|_| format!("axis {axis} out of range"))?;
            let mut out = shape.to_vec();
            out.insert(axis.min(shape.len()), 1);
            out
        }
        Some(&s) if s == i64::MIN + 1 => {
            let dims: Vec<usize> = spec[1..].iter().filter_map(|&d| usize::try_from(if d < 0 { d + rank } else { d }).ok()).collect();
            shape
                .iter()
                .enumerate()
                .filter(|&(i, &d)| !(d == 1 && (dims.is_empty() || dims.contains(&i))))
                .map(|(_, &d)| d)
                .collect()
        }
        _ => {
            let total: usize = shape.iter().product();
            if spec.len() > 4 || spec.iter().filter(|&&d| d < 0).count() > 1 {
                return Err(format!("cannot reshape {shape:?} to {spec:?}"));
            }
            let dims: Vec<Option<usize>> = spec.iter().map(|&d| usize::try_from(d).ok()).collect();
            let known: Vec<usize> = dims.iter().flatten().copied().collect();
            let known = element_count(&known).ok_or_else(|| format!("cannot reshape {shape:?} to {spec:?}"))?;
            dims.iter().map(|d| d.unwrap_or(total / known.max(1))).collect()
        }
    };
    if target.len() > 4 {
        return Err(format!("rank {} tensors are not supported", target.len()));
    }
    if element_count(&target) != Some(shape.iter().product::<usize>()) {
        return Err(format!("cannot reshape {shape:?} to {target:?}"));
    }
    Ok(target)
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
            let json = format!(r#"{{"modelTopology":{{"node":[{{"name":"x","op":"Placeholder"}},{nodes}]}},"weightsManifest":[{{"paths":["m.bin"],"weights":[{weights}]}}]}}"#);
            GraphModel::parse(json.as_bytes(), &bin, "m.json").unwrap()
        };
        let ints = |v: &[i32]| v.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<u8>>();
        let device = Device::flex();
        let run = |g: &GraphModel, output: &str| -> Result<(), String> {
            let program = Program::compile(g, &[output], &[1, 4, 4, 3], &device).map_err(|e| e.to_string())?;
            program.run(Tensor::zeros([1, 4, 4, 3], &device)).map(|_| ()).map_err(|e| e.to_string())
        };
        let cases = [
            (graph(r#"{"name":"p","op":"Const"},{"name":"y","op":"Pad","input":["x","p"]}"#, r#"{"name":"p","shape":[3],"dtype":"int32"}"#, ints(&[1, 1, 1])), "y", "pairs"),
            (graph(r#"{"name":"p","op":"Const"},{"name":"y","op":"Transpose","input":["x","p"]}"#, r#"{"name":"p","shape":[4],"dtype":"int32"}"#, ints(&[0, 0, 9, 1])), "y", "permutation"),
            (graph(r#"{"name":"s","op":"Const"},{"name":"y","op":"ResizeNearestNeighbor","input":["x","s"]}"#, r#"{"name":"s","shape":[2],"dtype":"int32"}"#, ints(&[99999, 99999])), "y", "out of range"),
            (graph(r#"{"name":"y","op":"Relu","input":["z"]},{"name":"z","op":"Relu","input":["y"]}"#, "", vec![]), "y", "cycle"),
            (graph(r#"{"name":"c","op":"Const"},{"name":"s","op":"Const"},{"name":"r","op":"Reshape","input":["c","s"]},{"name":"y","op":"AddV2","input":["x","r"]}"#,
                   r#"{"name":"c","shape":[2],"dtype":"float32"},{"name":"s","shape":[2],"dtype":"int32"}"#,
                   [1f32, 2.0].iter().flat_map(|v| v.to_le_bytes()).chain(ints(&[4096, 4096])).collect()), "y", "reshape"),
            (graph(r#"{"name":"a","op":"Const"},{"name":"y","op":"ExpandDims","input":["x","a"]}"#, r#"{"name":"a","shape":[0],"dtype":"int32"}"#, vec![]), "y", "non-empty"),
        ];
        for (g, output, expected) in cases {
            let err = run(&g, output).unwrap_err();
            assert!(err.contains(expected) && err.contains("m.json"), "expected `{expected}`: {err}");
        }
    }

    #[test]
    fn broadcasting() {
        assert_eq!(broadcast_shape(&[1, 4, 4, 8], &[8]).unwrap(), vec![1, 4, 4, 8]);
        assert_eq!(broadcast_shape(&[], &[2, 1]).unwrap(), vec![2, 1]);
        assert!(broadcast_shape(&[3], &[4]).is_err());
    }
}
