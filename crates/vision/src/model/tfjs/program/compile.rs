//! Compiling: walks back from the requested outputs, folds what is
//! constant, fuses what a reader alone reads (padding into a convolution, a
//! bias into the layer before), and emits the steps. `OPS` is the list of
//! supported ops: one entry per TF.js op name, with the function that
//! compiles it; the corpus in `tests/ops/` has a case for each.

use super::*;

/// Explicit `[before, after]` paddings of the two spatial axes.
type Pairs = [(usize, usize); 2];

/// Compiles one node of a supported op into steps.
type CompileOp = for<'a, 'c> fn(&'c mut Compiler<'a>, &'a NodeDef) -> Result<(), TfjsError>;

/// The supported TF.js ops (beyond `Const` and `Placeholder`), each with
/// its compile function. Adding an op: an entry here, its compile function
/// below, an [`Op`] variant if no existing step does it, its run in
/// `execute.rs`, and a case in `tests/ops/generate.py`.
pub(super) const OPS: &[(&str, CompileOp)] = &[
    ("Identity", pass_through),
    ("Cast", pass_through),
    ("StopGradient", pass_through),
    ("Snapshot", pass_through),
    ("Conv2D", convolution),
    ("_FusedConv2D", convolution),
    ("DepthwiseConv2dNative", convolution),
    ("FusedDepthwiseConv2dNative", convolution),
    ("MaxPool", pooling),
    ("AvgPool", pooling),
    ("Add", binary),
    ("AddV2", binary),
    ("BiasAdd", binary),
    ("Sub", binary),
    ("Mul", binary),
    ("RealDiv", binary),
    ("Maximum", binary),
    ("Minimum", binary),
    ("SquaredDifference", binary),
    ("Relu", activation),
    ("Relu6", activation),
    ("LeakyRelu", activation),
    ("Sigmoid", activation),
    ("Tanh", activation),
    ("Sqrt", sqrt),
    ("Pad", pad),
    ("PadV2", pad),
    ("Transpose", transpose),
    ("Reshape", reshape),
    ("ExpandDims", expand_or_squeeze),
    ("Squeeze", expand_or_squeeze),
    ("ConcatV2", concat),
    ("SplitV", split),
    ("Split", split),
    ("Unpack", unpack),
    ("ResizeBilinear", resize),
    ("ResizeNearestNeighbor", resize),
];

pub(super) struct Compiler<'a> {
    pub(super) graph: &'a GraphModel,
    pub(super) nodes: HashMap<&'a str, &'a NodeDef>,
    /// How many node inputs read each node: a node read once can be fused
    /// into its reader.
    pub(super) readers: HashMap<&'a str, usize>,
    /// Memo of [`Compiler::is_constant`].
    pub(super) constant: HashMap<String, bool>,
    pub(super) known: HashMap<String, Known>,
    pub(super) steps: Vec<Step>,
    pub(super) slot_count: usize,
    pub(super) device: &'a Device,
    /// Nodes being compiled, innermost last: a node met again is a cycle,
    /// and the depth is bounded (compiling recurses along the graph).
    pub(super) in_progress: Vec<&'a str>,
}

impl<'a> Compiler<'a> {
    pub(super) fn error(&self, node: &NodeDef, message: impl Into<String>) -> TfjsError {
        self.graph.node_error(node, message)
    }

    pub(super) fn new_slot(&mut self) -> usize {
        self.slot_count += 1;
        self.slot_count - 1
    }

    pub(super) fn upload(&self, host: &HostTensor) -> Result<Value, String> {
        let shape = host.shape.clone();
        check_shape(&shape)?;
        if !host.is_consistent() {
            return Err(format!("constant of shape {shape:?} holds {} values", host.len()));
        }
        let data = TensorData::new(host.to_f32(), pad4(&shape));
        Ok(Value::new(Tensor::from_data(data, self.device), shape))
    }

    pub(super) fn operand(&mut self, node: &NodeDef, name: &str) -> Result<Operand, TfjsError> {
        Ok(match self.resolve(name)? {
            Known::Slot(slot) => Operand::Slot(slot),
            Known::Host(host) => {
                Operand::Const(self.upload(&host).map_err(|m| self.error(node, m))?)
            }
        })
    }

    pub(super) fn host_input(
        &mut self,
        node: &NodeDef,
        index: usize,
    ) -> Result<HostTensor, TfjsError> {
        let name = node
            .data_inputs()
            .nth(index)
            .ok_or_else(|| self.error(node, format!("missing input {index}")))?;
        match self.resolve(name)? {
            Known::Host(host) => Ok(host),
            Known::Slot(_) => Err(self.error(node, format!("input {index} must be a constant"))),
        }
    }

    /// Resolves a value by name, compiling (or folding) its node first.
    pub(super) fn resolve(&mut self, name: &str) -> Result<Known, TfjsError> {
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
            return Err(
                self.error(node, format!("the graph is deeper than {MAX_GRAPH_DEPTH} nodes"))
            );
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
    pub(super) fn is_constant(&mut self, name: &str) -> bool {
        self.is_constant_at(name, 0)
    }

    pub(super) fn is_constant_at(&mut self, name: &str, depth: usize) -> bool {
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

    pub(super) fn compile_node(&mut self, node: &'a NodeDef) -> Result<(), TfjsError> {
        if node.op == "Const" {
            let host =
                self.graph.constants.get(&node.name).cloned().ok_or_else(|| {
                    self.error(node, "constant missing from the weights manifest")
                })?;
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
                    Known::Slot(_) => {
                        return Err(self.error(node, "mixes constants and computed values"));
                    }
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

    pub(super) fn first_slot(&mut self, node: &NodeDef) -> Result<usize, TfjsError> {
        let name = node.data_inputs().next().ok_or_else(|| self.error(node, "has no input"))?;
        match self.resolve(name)? {
            Known::Slot(slot) => Ok(slot),
            Known::Host(_) => Err(self.error(node, "expects a computed input first")),
        }
    }

    pub(super) fn emit(&mut self, node: &NodeDef, input: Option<usize>, op: Op) -> usize {
        let output = self.new_slot();
        self.steps.push(Step { node: node.name.clone(), input, op, output });
        self.known.insert(key(&node.name, 0), Known::Slot(output));
        output
    }

    pub(super) fn compile_device_node(&mut self, node: &'a NodeDef) -> Result<(), TfjsError> {
        match OPS.iter().find(|(name, _)| *name == node.op) {
            Some((_, compile)) => compile(self, node),
            None => Err(self.error(node, format!("operation {} is not supported", node.op))),
        }
    }
    /// The node named `name` when only one input anywhere reads it.
    pub(super) fn read_once(&self, name: &str) -> Option<&'a NodeDef> {
        let (node, _) = split_output(name);
        (self.readers.get(node) == Some(&1)).then(|| self.nodes.get(node).copied()).flatten()
    }

    /// ONNX converters pad explicitly (often on the other layout, behind a
    /// transpose) and then run a VALID convolution. Folding the zero padding
    /// into the convolution saves a full copy of the activations per layer.
    /// Returns the unpadded input (transposed as the graph wanted) and the
    /// padding for the convolution, or `None` when the pattern does not apply.
    pub(super) fn fold_padding(
        &mut self,
        node: &NodeDef,
        conv: &Conv,
    ) -> Result<Option<(usize, Pairs)>, TfjsError> {
        if !matches!(conv.padding, Padding::Valid) {
            return Ok(None);
        }
        let Some(first) = node.data_inputs().next() else { return Ok(None) };
        let Some(mut producer) = self.read_once(first) else { return Ok(None) };
        let mut transpose = None;
        if producer.op == "Transpose" {
            let Some(pad) = producer.data_inputs().next().and_then(|i| self.read_once(i)) else {
                return Ok(None);
            };
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
        let Some(source) = producer.data_inputs().next().map(str::to_string) else {
            return Ok(None);
        };
        let Known::Slot(mut slot) = self.resolve(&source)? else { return Ok(None) };
        if let Some(t) = transpose {
            slot = self.emit(t, Some(slot), Op::Transpose(perm));
        }
        Ok(Some((slot, [pairs[h], pairs[w]])))
    }

    /// A bias added right after a bias-less convolution becomes its bias.
    pub(super) fn fold_bias(
        &mut self,
        node: &NodeDef,
        a: &str,
        b: &str,
    ) -> Result<bool, TfjsError> {
        if self.read_once(a).is_none() {
            return Ok(false);
        }
        let (Known::Slot(slot), Known::Host(bias)) = (self.resolve(a)?, self.resolve(b)?) else {
            return Ok(false);
        };
        let Some(step) = self.steps.iter_mut().rev().find(|s| s.output == slot) else {
            return Ok(false);
        };
        let Op::Conv(conv) = &mut step.op else { return Ok(false) };
        let channels = conv.weight.dims()[0];
        // The bias must run along the channel axis: [C], or ones elsewhere.
        let channel_axis = if conv.nhwc { 3 } else { 1 };
        let along_channels = bias.shape.len() == 1
            || (bias.shape.len() == 4
                && bias.shape.iter().enumerate().all(|(i, &d)| d == 1 || i == channel_axis));
        if conv.bias.is_some()
            || conv.activation != Activation::None
            || bias.len() != channels
            || !along_channels
            || !bias.is_consistent()
        {
            return Ok(false);
        }
        conv.bias =
            Some(Tensor::from_data(TensorData::new(bias.to_f32(), [channels]), self.device));
        self.known.insert(key(&node.name, 0), Known::Slot(slot));
        Ok(true)
    }

    pub(super) fn nhwc(&self, node: &NodeDef) -> Result<bool, TfjsError> {
        match node.attr_str("data_format").as_deref() {
            None | Some("NHWC") => Ok(true),
            Some("NCHW") => Ok(false),
            Some(other) => Err(self.error(node, format!("data format {other} is not supported"))),
        }
    }

    /// The height and width entries of a 4-entry attribute (strides, ksize, ...).
    pub(super) fn spatial(
        &self,
        node: &NodeDef,
        attr: &str,
        nhwc: bool,
    ) -> Result<[usize; 2], TfjsError> {
        let list = node.attr_int_list(attr).unwrap_or_else(|| vec![1; 4]);
        if list.len() != 4 {
            return Err(self.error(node, format!("`{attr}` must have 4 entries")));
        }
        let (h, w) = if nhwc { (list[1], list[2]) } else { (list[2], list[3]) };
        let value = |v: i64| {
            bounded(v, MAX_WINDOW, attr).ok().filter(|&v| v >= 1).ok_or_else(|| {
                self.error(node, format!("`{attr}` {list:?} must be 1..={MAX_WINDOW}"))
            })
        };
        Ok([value(h)?, value(w)?])
    }

    pub(super) fn padding(&self, node: &NodeDef, nhwc: bool) -> Result<Padding, TfjsError> {
        match node.attr_str("padding").as_deref() {
            Some("SAME") => Ok(Padding::Same),
            Some("VALID") | None => Ok(Padding::Valid),
            Some("EXPLICIT") => {
                let pads = node.attr_int_list("explicit_paddings").unwrap_or_default();
                if pads.len() != 8 {
                    return Err(self.error(node, "explicit_paddings must have 8 entries"));
                }
                let (h, w) = if nhwc { (2, 4) } else { (4, 6) };
                let pad = |v: i64| {
                    bounded(v, MAX_WINDOW, "explicit padding").map_err(|m| self.error(node, m))
                };
                Ok(Padding::Explicit([
                    (pad(pads[h])?, pad(pads[h + 1])?),
                    (pad(pads[w])?, pad(pads[w + 1])?),
                ]))
            }
            Some(other) => Err(self.error(node, format!("padding {other} is not supported"))),
        }
    }

    pub(super) fn conv(&mut self, node: &NodeDef) -> Result<Conv, TfjsError> {
        let depthwise = node.op.contains("Depthwise");
        let nhwc = self.nhwc(node)?;
        let filter = self.host_input(node, 1)?;
        if filter.shape.len() != 4 {
            return Err(self.error(node, "the filter must be 4-D"));
        }
        let [kh, kw, cin, cout] =
            [filter.shape[0], filter.shape[1], filter.shape[2], filter.shape[3]];
        let values = filter.to_f32();
        if !filter.is_consistent() || values.is_empty() {
            return Err(self.error(
                node,
                format!("filter of shape {:?} holds {} values", filter.shape, values.len()),
            ));
        }
        // TF filters are [kh, kw, in, out] (depthwise: [kh, kw, in, multiplier]);
        // Burn wants [out, in / groups, kh, kw] with out = in * multiplier + m.
        let (out_channels, per_group, groups) =
            if depthwise { (cin * cout, 1, cin) } else { (cout, cin, 1) };
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
        let weight = Tensor::from_data(
            TensorData::new(weight, [out_channels, per_group, kh, kw]),
            self.device,
        );
        let fused = node.attr_str_list("fused_ops");
        let mut bias = None;
        let mut activation = Activation::None;
        for (i, fused_op) in fused.iter().enumerate() {
            match fused_op.as_str() {
                "BiasAdd" => {
                    let values = self.host_input(node, 2)?.to_f32();
                    if values.len() != out_channels {
                        return Err(self.error(
                            node,
                            format!("bias has {} values for {out_channels} channels", values.len()),
                        ));
                    }
                    bias = Some(Tensor::from_data(
                        TensorData::new(values, [out_channels]),
                        self.device,
                    ));
                }
                other if i > 0 || fused.len() == 1 => {
                    let alpha = node.attr_float("leakyrelu_alpha").unwrap_or(0.2);
                    activation = Activation::parse(other, alpha).ok_or_else(|| {
                        self.error(node, format!("fused operation {other} is not supported"))
                    })?;
                }
                other => {
                    return Err(
                        self.error(node, format!("fused operation {other} is not supported"))
                    );
                }
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

pub(super) fn pass_through<'a>(c: &mut Compiler<'a>, node: &'a NodeDef) -> Result<(), TfjsError> {
    let slot = c.first_slot(node)?;
    c.known.insert(key(&node.name, 0), Known::Slot(slot));
    Ok(())
}

pub(super) fn convolution<'a>(c: &mut Compiler<'a>, node: &'a NodeDef) -> Result<(), TfjsError> {
    let mut conv = c.conv(node)?;
    let input = match c.fold_padding(node, &conv)? {
        Some((slot, pairs)) => {
            conv.padding = Padding::Explicit(pairs);
            slot
        }
        None => c.first_slot(node)?,
    };
    c.emit(node, Some(input), Op::Conv(Box::new(conv)));
    Ok(())
}

pub(super) fn pooling<'a>(c: &mut Compiler<'a>, node: &'a NodeDef) -> Result<(), TfjsError> {
    let op = node.op.as_str();
    let input = c.first_slot(node)?;
    let nhwc = c.nhwc(node)?;
    let (kernel, stride) = (c.spatial(node, "ksize", nhwc)?, c.spatial(node, "strides", nhwc)?);
    let padding = c.padding(node, nhwc)?;
    let kind = if op == "MaxPool" { PoolKind::Max } else { PoolKind::Avg };
    c.emit(node, Some(input), Op::Pool { kind, kernel, stride, padding, nhwc });
    Ok(())
}

pub(super) fn binary<'a>(c: &mut Compiler<'a>, node: &'a NodeDef) -> Result<(), TfjsError> {
    let op = node.op.as_str();
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
        return Err(c.error(node, "expects two inputs"));
    }
    if matches!(binary, Binary::Add) && c.fold_bias(node, names[0], names[1])? {
        return Ok(());
    }
    let (a, b) = (c.operand(node, names[0])?, c.operand(node, names[1])?);
    c.emit(node, None, Op::Binary(binary, a, b));
    Ok(())
}

pub(super) fn activation<'a>(c: &mut Compiler<'a>, node: &'a NodeDef) -> Result<(), TfjsError> {
    let op = node.op.as_str();
    let input = c.first_slot(node)?;
    let alpha = node.attr_float("alpha").unwrap_or(0.2);
    let act =
        Activation::parse(op, alpha).ok_or_else(|| c.error(node, "unsupported activation"))?;
    c.emit(node, Some(input), Op::Unary(act));
    Ok(())
}

pub(super) fn sqrt<'a>(c: &mut Compiler<'a>, node: &'a NodeDef) -> Result<(), TfjsError> {
    let input = c.first_slot(node)?;
    c.emit(node, Some(input), Op::Sqrt);
    Ok(())
}

pub(super) fn pad<'a>(c: &mut Compiler<'a>, node: &'a NodeDef) -> Result<(), TfjsError> {
    let op = node.op.as_str();
    let input = c.first_slot(node)?;
    let pads = c.host_input(node, 1)?.to_i64();
    let value = if op == "PadV2" {
        *c.host_input(node, 2)?.to_f32().first().ok_or_else(|| c.error(node, "no pad value"))?
    } else {
        0.0
    };
    let pairs = pad_pairs(&pads).map_err(|m| c.error(node, m))?;
    c.emit(node, Some(input), Op::Pad { pairs, value });
    Ok(())
}

pub(super) fn transpose<'a>(c: &mut Compiler<'a>, node: &'a NodeDef) -> Result<(), TfjsError> {
    let input = c.first_slot(node)?;
    let perm = permutation(&c.host_input(node, 1)?.to_i64()).map_err(|m| c.error(node, m))?;
    c.emit(node, Some(input), Op::Transpose(perm));
    Ok(())
}

pub(super) fn reshape<'a>(c: &mut Compiler<'a>, node: &'a NodeDef) -> Result<(), TfjsError> {
    let input = c.first_slot(node)?;
    let shape = c.host_input(node, 1)?.to_i64();
    c.emit(node, Some(input), Op::Reshape(shape));
    Ok(())
}

pub(super) fn expand_or_squeeze<'a>(
    c: &mut Compiler<'a>,
    node: &'a NodeDef,
) -> Result<(), TfjsError> {
    let op = node.op.as_str();
    // Both only change the logical shape: compile them as a reshape
    // resolved at run time from the input's shape.
    let input = c.first_slot(node)?;
    let op = if op == "ExpandDims" {
        let axis = first_value(&c.host_input(node, 1)?).map_err(|m| c.error(node, m))?;
        if !(-5..=4).contains(&axis) {
            return Err(c.error(node, format!("axis {axis} is out of range")));
        }
        Op::Reshape(vec![i64::MIN, axis])
    } else {
        let dims = node.attr_int_list("squeeze_dims").unwrap_or_default();
        if dims.iter().any(|d| !(-4..4).contains(d)) {
            return Err(c.error(node, format!("squeeze_dims {dims:?} are out of range")));
        }
        Op::Reshape([i64::MIN + 1].into_iter().chain(dims).collect())
    };
    c.emit(node, Some(input), op);
    Ok(())
}

pub(super) fn concat<'a>(c: &mut Compiler<'a>, node: &'a NodeDef) -> Result<(), TfjsError> {
    let names: Vec<&str> = node.data_inputs().collect();
    let (axis_name, value_names) = names.split_last().ok_or_else(|| c.error(node, "no inputs"))?;
    let axis = match c.resolve(axis_name)? {
        Known::Host(h) => first_value(&h).map_err(|m| c.error(node, m))?,
        Known::Slot(_) => return Err(c.error(node, "axis must be a constant")),
    };
    if value_names.is_empty() {
        return Err(c.error(node, "nothing to concatenate"));
    }
    let inputs = value_names.iter().map(|n| c.operand(node, n)).collect::<Result<_, _>>()?;
    c.emit(node, None, Op::Concat { inputs, axis });
    Ok(())
}

pub(super) fn split<'a>(c: &mut Compiler<'a>, node: &'a NodeDef) -> Result<(), TfjsError> {
    let op = node.op.as_str();
    let (input, sizes, axis) = if op == "SplitV" {
        let input = c.first_slot(node)?;
        let sizes = c.host_input(node, 1)?.to_i64();
        let axis = first_value(&c.host_input(node, 2)?).map_err(|m| c.error(node, m))?;
        (input, sizes, axis)
    } else {
        let axis = first_value(&c.host_input(node, 0)?).map_err(|m| c.error(node, m))?;
        let name = node.data_inputs().nth(1).ok_or_else(|| c.error(node, "missing input"))?;
        let Known::Slot(input) = c.resolve(name)? else {
            return Err(c.error(node, "expects a computed input"));
        };
        let parts = bounded(node.attr_int("num_split").unwrap_or(1), MAX_OUTPUTS, "num_split")
            .map_err(|m| c.error(node, m))?;
        (input, vec![-(parts as i64)], axis)
    };
    // `[-n]` asks for n equal parts; otherwise one output per size.
    let count = match sizes.as_slice() {
        [n] if *n < 0 => n.unsigned_abs() as usize,
        _ => sizes.len(),
    };
    if count == 0 || count > MAX_OUTPUTS {
        return Err(c.error(node, format!("{count} outputs (1..={MAX_OUTPUTS})")));
    }
    if count == sizes.len() && sizes.iter().any(|&s| s < 0) && sizes.len() > 1 {
        return Err(c.error(node, format!("split sizes {sizes:?} must not be negative")));
    }
    let outputs: Vec<usize> = (0..count).map(|_| c.new_slot()).collect();
    for (k, &slot) in outputs.iter().enumerate() {
        c.known.insert(key(&node.name, k), Known::Slot(slot));
    }
    let sizes = sizes.iter().map(|&s| s.max(0) as usize).collect();
    let first = outputs[0];
    c.steps.push(Step {
        node: node.name.clone(),
        input: Some(input),
        op: Op::Split { axis, sizes, outputs },
        output: first,
    });
    Ok(())
}

pub(super) fn unpack<'a>(c: &mut Compiler<'a>, node: &'a NodeDef) -> Result<(), TfjsError> {
    let input = c.first_slot(node)?;
    let axis = node.attr_int("axis").unwrap_or(0);
    let count = bounded(node.attr_int("num").unwrap_or(1), MAX_OUTPUTS, "num")
        .map_err(|m| c.error(node, m))?
        .max(1);
    let outputs: Vec<usize> = (0..count).map(|_| c.new_slot()).collect();
    for (k, &slot) in outputs.iter().enumerate() {
        c.known.insert(key(&node.name, k), Known::Slot(slot));
    }
    let first = outputs[0];
    c.steps.push(Step {
        node: node.name.clone(),
        input: Some(input),
        op: Op::Unpack { axis, outputs },
        output: first,
    });
    Ok(())
}

pub(super) fn resize<'a>(c: &mut Compiler<'a>, node: &'a NodeDef) -> Result<(), TfjsError> {
    let op = node.op.as_str();
    let input = c.first_slot(node)?;
    let size = c.host_input(node, 1)?.to_i64();
    if size.len() != 2 {
        return Err(c.error(node, "size must have two values"));
    }
    let align_corners = node.attr_bool("align_corners").unwrap_or(false);
    let half_pixel = node.attr_bool("half_pixel_centers").unwrap_or(false);
    if !align_corners && !half_pixel && op == "ResizeBilinear" {
        return Err(c.error(node, "legacy (asymmetric) resize sampling is not supported; re-export with half_pixel_centers"));
    }
    let side = |v: i64| bounded(v, MAX_WINDOW, "resize size").map_err(|m| c.error(node, m));
    let op = Op::Resize {
        size: [side(size[0])?, side(size[1])?],
        bilinear: op == "ResizeBilinear",
        align_corners,
        nhwc: true,
    };
    c.emit(node, Some(input), op);
    Ok(())
}
