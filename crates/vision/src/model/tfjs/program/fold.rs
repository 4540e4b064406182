//! Constant folding: a node whose inputs are all constants is evaluated on
//! the host once, at compile time (shape arithmetic, converters' constant
//! sub-graphs), so it costs nothing per run.

use super::*;

/// Evaluates a node whose inputs are all constants.
pub(super) fn fold(node: &NodeDef, inputs: &[HostTensor]) -> Result<Vec<HostTensor>, String> {
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
        "Add" | "AddV2" | "Sub" | "Mul" | "RealDiv" | "FloorDiv" | "Maximum" | "Minimum"
        | "Reshape" => 2,
        "SparseToDense" => 4,
        _ => 1,
    };
    if inputs.len() < arity {
        return Err(format!("{} needs {arity} inputs, has {}", node.op, inputs.len()));
    }
    for input in inputs {
        if !input.is_consistent() {
            return Err(format!(
                "a constant of shape {:?} holds {} values",
                input.shape,
                input.len()
            ));
        }
    }
    Ok(match node.op.as_str() {
        "Identity" | "StopGradient" => vec![inputs[0].clone()],
        "Cast" => {
            let to_float =
                node.attr.get("DstT").and_then(|t| t.get("type")).and_then(|t| t.as_str())
                    == Some("DT_FLOAT");
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
            let (indices, shape, values, default) =
                (ints(&inputs[0]), ints(&inputs[1]), &inputs[2], &inputs[3]);
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
                let slot = usize::try_from(i)
                    .ok()
                    .and_then(|i| out.get_mut(i))
                    .ok_or("index out of range")?;
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
