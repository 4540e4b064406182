//! Shape arithmetic and the limits that keep a hostile graph from asking
//! for more than it may: checked before any tensor is made.

use super::*;

pub(super) fn pad4(shape: &[usize]) -> [usize; 4] {
    let mut out = [1; 4];
    out[4 - shape.len()..].copy_from_slice(shape);
    out
}

/// The most values one tensor may hold (256 MB of f32). A hostile graph
/// can ask for any size through a reshape, a pad or a resize; past this it
/// is an error, not an allocation that aborts the process.
pub const MAX_TENSOR_ELEMENTS: usize = 1 << 26;
/// The deepest chain of nodes compiled (the compiler recurses along it).
pub(super) const MAX_GRAPH_DEPTH: usize = 2_000;
/// The most outputs one Split or Unpack may have.
pub(super) const MAX_OUTPUTS: usize = 4_096;
/// The largest stride, dilation, kernel or padding accepted.
pub(super) const MAX_WINDOW: usize = 1 << 16;

/// Checks a logical shape: rank at most 4, elements within the limit.
pub(super) fn check_shape(shape: &[usize]) -> Result<(), String> {
    if shape.len() > 4 {
        return Err(format!("rank {} tensors are not supported", shape.len()));
    }
    match element_count(shape) {
        Some(n) if n <= MAX_TENSOR_ELEMENTS => Ok(()),
        _ => Err(format!("shape {shape:?} holds more than {MAX_TENSOR_ELEMENTS} values")),
    }
}

/// The first value of a constant (an axis, a pad value).
pub(super) fn first_value(host: &HostTensor) -> Result<i64, String> {
    host.to_i64().first().copied().ok_or_else(|| "expects a non-empty constant".to_string())
}

/// A non-negative size or count read from a graph, at most `max`.
pub(super) fn bounded(value: i64, max: usize, what: &str) -> Result<usize, String> {
    usize::try_from(value)
        .ok()
        .filter(|&v| v <= max)
        .ok_or_else(|| format!("{what} {value} is out of range (0..={max})"))
}

/// `[before, after]` pairs from a flat list of paddings, each bounded.
pub(super) fn pad_pairs(pads: &[i64]) -> Result<Vec<(usize, usize)>, String> {
    if !pads.len().is_multiple_of(2) || pads.len() > 8 {
        return Err(format!("paddings {pads:?} are not pairs for rank <= 4"));
    }
    pads.chunks(2)
        .map(|p| Ok((bounded(p[0], MAX_WINDOW, "padding")?, bounded(p[1], MAX_WINDOW, "padding")?)))
        .collect()
}

/// A permutation of `0..n` (n <= 4), or an error.
pub(super) fn permutation(values: &[i64]) -> Result<Vec<usize>, String> {
    let n = values.len();
    let perm: Vec<usize> =
        values.iter().filter_map(|&v| usize::try_from(v).ok().filter(|&v| v < n)).collect();
    let mut seen = [false; 4];
    if n > 4 || perm.len() != n || perm.iter().any(|&p| std::mem::replace(&mut seen[p], true)) {
        return Err(format!("{values:?} is not a permutation of 0..{n}"));
    }
    Ok(perm)
}

/// The output size of a window (convolution, pooling) sliding over
/// `input` with `padding`: an error when the window does not fit once.
pub(super) fn window_output(
    input: [usize; 2],
    kernel: [usize; 2],
    stride: [usize; 2],
    dilation: [usize; 2],
    padding: [(usize, usize); 2],
) -> Result<[usize; 2], String> {
    let mut out = [0; 2];
    for i in 0..2 {
        let padded = input[i] + padding[i].0 + padding[i].1;
        let span =
            dilation[i].checked_mul(kernel[i].saturating_sub(1)).and_then(|s| s.checked_add(1));
        match span {
            Some(span) if kernel[i] >= 1 && stride[i] >= 1 && span <= padded => {
                out[i] = (padded - span) / stride[i] + 1
            }
            _ => {
                return Err(format!(
                    "a {}x{} window does not fit a {}x{} input",
                    kernel[0], kernel[1], input[0], input[1]
                ));
            }
        }
    }
    Ok(out)
}

pub(super) fn broadcast_shape(a: &[usize], b: &[usize]) -> Result<Vec<usize>, String> {
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
pub(super) fn reshape_target(shape: &[usize], spec: &[i64]) -> Result<Vec<usize>, String> {
    let rank = shape.len() as i64;
    let target: Vec<usize> = match spec.first() {
        Some(&i64::MIN) => {
            let axis = *spec.get(1).ok_or("ExpandDims without an axis")?;
            let axis = usize::try_from(if axis < 0 { axis + rank + 1 } else { axis })
                .map_err(|_| format!("axis {axis} out of range"))?;
            let mut out = shape.to_vec();
            out.insert(axis.min(shape.len()), 1);
            out
        }
        Some(&s) if s == i64::MIN + 1 => {
            let dims: Vec<usize> = spec[1..]
                .iter()
                .filter_map(|&d| usize::try_from(if d < 0 { d + rank } else { d }).ok())
                .collect();
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
            let known = element_count(&known)
                .ok_or_else(|| format!("cannot reshape {shape:?} to {spec:?}"))?;
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
