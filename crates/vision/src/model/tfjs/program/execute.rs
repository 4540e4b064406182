//! Running: one step at a time on the program's device, each op by Burn.

use super::*;

pub(super) fn op_name(op: &Op) -> &'static str {
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
pub(super) const SINGLE_OUTPUT: usize = usize::MAX;

/// Runs one step; returns the slots it writes.
pub(super) fn execute(
    op: &Op,
    input: Option<Value>,
    slots: &[Option<Value>],
) -> Result<Vec<(usize, Value)>, String> {
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
                    let options =
                        MaxPoolOptions::new(*kernel).with_stride(*stride).with_padding_pairs(pads);
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
            let shape: Vec<usize> =
                x.shape.iter().zip(pairs).map(|(d, (a, b))| d + a + b).collect();
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
                v.rank() != first.rank()
                    || (0..4).any(|d| d != axis4 && v.tensor.dims()[d] != first.tensor.dims()[d])
            });
            if mismatched {
                return Err(format!(
                    "cannot concatenate shapes {:?} along axis {axis}",
                    values.iter().map(|v| &v.shape).collect::<Vec<_>>()
                ));
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
            if sizes.len() != outputs.len()
                || sizes.iter().try_fold(0usize, |a, &s| a.checked_add(s)) != Some(total)
            {
                return Err(format!(
                    "split sizes {sizes:?} do not make {} parts of {total}",
                    outputs.len()
                ));
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
                return Err(format!(
                    "unpacks {} values along an axis of {}",
                    outputs.len(),
                    x.shape[logical]
                ));
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
            let options = InterpolateOptions::new(mode)
                .with_align_corners(*align_corners)
                .with_output_size(*size);
            from_nchw(interpolate(nchw, options), *nhwc)
        }
    };
    Ok(vec![(SINGLE_OUTPUT, value)])
}

pub(super) fn to_nchw(x: &Value, nhwc: bool) -> Result<(Tensor<4>, [usize; 4]), String> {
    if x.rank() != 4 {
        return Err(format!("expects a 4-D input, got shape {:?}", x.shape));
    }
    let t = if nhwc { x.tensor.clone().permute([0, 3, 1, 2]) } else { x.tensor.clone() };
    let dims = t.dims();
    Ok((t, dims))
}

pub(super) fn from_nchw(y: Tensor<4>, nhwc: bool) -> Value {
    let y = if nhwc { y.permute([0, 2, 3, 1]) } else { y };
    let shape = y.dims().to_vec();
    Value::new(y, shape)
}

pub(super) fn run_conv(conv: &Conv, x: Value) -> Result<Value, String> {
    let (nchw, [_, c, h, w]) = to_nchw(&x, conv.nhwc)?;
    let [_, per_group, kh, kw] = conv.weight.dims();
    if per_group * conv.groups != c {
        return Err(format!(
            "input has {c} channels, the filter expects {}",
            per_group * conv.groups
        ));
    }
    let padding = conv.padding.resolve([h, w], [kh, kw], conv.stride, conv.dilation);
    let [oh, ow] = window_output([h, w], [kh, kw], conv.stride, conv.dilation, padding)?;
    check_shape(&[1, conv.weight.dims()[0], oh, ow])?;
    let options = ConvOptions::new_with_padding(conv.stride, padding, conv.dilation, conv.groups);
    let y = conv2d(nchw, conv.weight.clone(), conv.bias.clone(), options);
    let y = conv.activation.apply(y);
    Ok(from_nchw(y, conv.nhwc))
}
