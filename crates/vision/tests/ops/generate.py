#!/usr/bin/env python3
"""Writes the per-op test corpus (cases.json): one tiny TF.js graph per
supported op, with its input and the output TensorFlow's semantics give,
computed here with numpy (independently of the Rust compiler under test).

    PYTHONPATH=~/.cache/lookalike/pylib python3 crates/vision/tests/ops/generate.py

Each case: `nodes` after the placeholder `x` (NHWC input), `constants`
(name, dtype, shape, values), `input`, the `output` node and `expected`.
"""
import base64, json, os
import numpy as np

rng = np.random.default_rng(7)
def s(text):  # TF.js encodes string attributes in base64
    return {"s": base64.b64encode(text.encode()).decode()}
def ints(values):
    return {"list": {"i": [str(v) for v in values]}}
def arr(a):
    return {"shape": list(a.shape), "values": [round(float(v), 6) for v in a.reshape(-1)]}
def const(name, a, dtype="float32"):
    return {"name": name, "dtype": dtype, "shape": list(a.shape), "values": [float(v) if dtype == "float32" else int(v) for v in a.reshape(-1)]}

X = rng.uniform(-2, 2, (1, 4, 4, 3)).astype(np.float32)
cases = []
def case(name, nodes, expected, constants=(), x=X, output="y"):
    cases.append({"name": name, "nodes": nodes, "constants": list(constants), "input": arr(x), "output": output, "expected": arr(np.asarray(expected, np.float32))})

def unary(op, f, attr=None):
    node = {"name": "y", "op": op, "input": ["x"]}
    if attr: node["attr"] = attr
    case(op, [node], f(X))
unary("Identity", lambda x: x)
unary("Cast", lambda x: x)
unary("StopGradient", lambda x: x)
unary("Snapshot", lambda x: x)
unary("Relu", lambda x: np.maximum(x, 0))
unary("Relu6", lambda x: np.clip(x, 0, 6))
unary("LeakyRelu", lambda x: np.where(x > 0, x, 0.1 * x), {"alpha": {"f": 0.1}})
unary("Sigmoid", lambda x: 1 / (1 + np.exp(-x)))
unary("Tanh", np.tanh)
case("Sqrt", [{"name": "y", "op": "Sqrt", "input": ["x"]}], np.sqrt(np.abs(X)), x=np.abs(X))

B = rng.uniform(0.5, 2, (3,)).astype(np.float32)
for op, f in [("AddV2", np.add), ("Add", np.add), ("BiasAdd", np.add), ("Sub", np.subtract), ("Mul", np.multiply), ("RealDiv", np.divide),
              ("Maximum", np.maximum), ("Minimum", np.minimum), ("SquaredDifference", lambda a, b: (a - b) ** 2)]:
    case(f"{op} (broadcast constant)", [{"name": "y", "op": op, "input": ["x", "b"]}], f(X, B), [const("b", B)])
case("Mul (two computed inputs)", [{"name": "r", "op": "Relu", "input": ["x"]}, {"name": "y", "op": "Mul", "input": ["x", "r"]}], X * np.maximum(X, 0))

P = np.array([[0, 0], [1, 2], [2, 1], [0, 0]])
case("Pad", [{"name": "y", "op": "Pad", "input": ["x", "p"]}], np.pad(X, P), [const("p", P, "int32")])
case("PadV2", [{"name": "y", "op": "PadV2", "input": ["x", "p", "v"]}], np.pad(X, P, constant_values=1.5), [const("p", P, "int32"), const("v", np.array(1.5, np.float32))])
T = np.array([0, 3, 1, 2])
case("Transpose", [{"name": "y", "op": "Transpose", "input": ["x", "p"]}], X.transpose(T), [const("p", T, "int32")])
case("Reshape", [{"name": "y", "op": "Reshape", "input": ["x", "s"]}], X.reshape(1, 16, 3), [const("s", np.array([1, -1, 3]), "int32")])
case("ExpandDims", [{"name": "r", "op": "Reshape", "input": ["x", "s"]}, {"name": "y", "op": "ExpandDims", "input": ["r", "a"]}],
     X.reshape(16, 3)[:, None, :], [const("s", np.array([16, 3]), "int32"), const("a", np.array(1), "int32")])
case("Squeeze", [{"name": "y", "op": "Squeeze", "input": ["x"], "attr": {"squeeze_dims": ints([0])}}], X[0])
case("ConcatV2", [{"name": "r", "op": "Relu", "input": ["x"]}, {"name": "y", "op": "ConcatV2", "input": ["x", "r", "a"]}],
     np.concatenate([X, np.maximum(X, 0)], axis=3), [const("a", np.array(3), "int32")])
case("Split (output 1)", [{"name": "y", "op": "Split", "input": ["a", "x"], "attr": {"num_split": {"i": "2"}}}], np.split(X, 2, axis=1)[1],
     [const("a", np.array(1), "int32")], output="y:1")
case("SplitV (output 1)", [{"name": "y", "op": "SplitV", "input": ["x", "n", "a"]}], X[..., 1:3],
     [const("n", np.array([1, 2]), "int32"), const("a", np.array(3), "int32")], output="y:1")
case("Unpack (output 2)", [{"name": "y", "op": "Unpack", "input": ["x"], "attr": {"axis": {"i": "3"}, "num": {"i": "3"}}}], X[..., 2], output="y:2")

def pool(x, k, stride, kind):
    n, h, w, c = x.shape
    oh, ow = (h - k) // stride + 1, (w - k) // stride + 1
    out = np.zeros((n, oh, ow, c), np.float32)
    for i in range(oh):
        for j in range(ow):
            win = x[:, i * stride:i * stride + k, j * stride:j * stride + k, :]
            out[:, i, j, :] = win.max(axis=(1, 2)) if kind == "max" else win.mean(axis=(1, 2))
    return out
for op, kind in [("MaxPool", "max"), ("AvgPool", "avg")]:
    case(op, [{"name": "y", "op": op, "input": ["x"], "attr": {"ksize": ints([1, 2, 2, 1]), "strides": ints([1, 2, 2, 1]), "padding": s("VALID")}}], pool(X, 2, 2, kind))

def conv(x, w, stride, pad, depthwise=False):
    x = np.pad(x, ((0, 0), pad[0], pad[1], (0, 0)))
    n, h, wd, c = x.shape
    kh, kw = w.shape[:2]
    oh, ow = (h - kh) // stride + 1, (wd - kw) // stride + 1
    out_c = c * w.shape[3] if depthwise else w.shape[3]
    out = np.zeros((n, oh, ow, out_c), np.float32)
    for i in range(oh):
        for j in range(ow):
            win = x[:, i * stride:i * stride + kh, j * stride:j * stride + kw, :]
            if depthwise:
                out[:, i, j, :] = np.einsum("nhwc,hwcm->ncm", win, w).reshape(n, -1)
            else:
                out[:, i, j, :] = np.einsum("nhwc,hwco->no", win, w)
    return out
W = rng.uniform(-1, 1, (3, 3, 3, 2)).astype(np.float32)
case("Conv2D (SAME, stride 1)", [{"name": "y", "op": "Conv2D", "input": ["x", "w"], "attr": {"strides": ints([1, 1, 1, 1]), "padding": s("SAME")}}],
     conv(X, W, 1, [(1, 1), (1, 1)]), [const("w", W)])
case("Conv2D (VALID, stride 2)", [{"name": "y", "op": "Conv2D", "input": ["x", "w"], "attr": {"strides": ints([1, 2, 2, 1]), "padding": s("VALID")}}],
     conv(X, W, 2, [(0, 0), (0, 0)]), [const("w", W)])
case("_FusedConv2D (bias, Relu)", [{"name": "y", "op": "_FusedConv2D", "input": ["x", "w", "b2"],
     "attr": {"strides": ints([1, 1, 1, 1]), "padding": s("SAME"), "fused_ops": {"list": {"s": [s("BiasAdd")["s"], s("Relu")["s"]]}}}}],
     np.maximum(conv(X, W, 1, [(1, 1), (1, 1)]) + np.array([0.5, -0.5], np.float32), 0), [const("w", W), const("b2", np.array([0.5, -0.5], np.float32))])
D = rng.uniform(-1, 1, (3, 3, 3, 1)).astype(np.float32)
case("DepthwiseConv2dNative", [{"name": "y", "op": "DepthwiseConv2dNative", "input": ["x", "w"], "attr": {"strides": ints([1, 1, 1, 1]), "padding": s("SAME")}}],
     conv(X, D, 1, [(1, 1), (1, 1)], depthwise=True), [const("w", D)])

case("FusedDepthwiseConv2dNative (bias, Relu6)", [{"name": "y", "op": "FusedDepthwiseConv2dNative", "input": ["x", "w", "b3"],
     "attr": {"strides": ints([1, 1, 1, 1]), "padding": s("SAME"), "fused_ops": {"list": {"s": [s("BiasAdd")["s"], s("Relu6")["s"]]}}}}],
     np.clip(conv(X, D, 1, [(1, 1), (1, 1)], depthwise=True) * 3 + np.array([0.5, -0.5, 1.0], np.float32), 0, 6),
     [const("w", D * 3), const("b3", np.array([0.5, -0.5, 1.0], np.float32))])

def resize_nearest(x, oh, ow):
    n, h, w, c = x.shape
    ys = np.minimum((np.arange(oh) * h / oh).astype(int), h - 1)
    xs = np.minimum((np.arange(ow) * w / ow).astype(int), w - 1)
    return x[:, ys][:, :, xs]
def resize_bilinear_half(x, oh, ow):
    n, h, w, c = x.shape
    def coords(o, i):
        src = (np.arange(o) + 0.5) * i / o - 0.5
        src = np.clip(src, 0, i - 1)
        lo = np.floor(src).astype(int); hi = np.minimum(lo + 1, i - 1)
        return lo, hi, src - lo
    y0, y1, fy = coords(oh, h); x0, x1, fx = coords(ow, w)
    top = x[:, y0][:, :, x0] * (1 - fx)[None, None, :, None] + x[:, y0][:, :, x1] * fx[None, None, :, None]
    bot = x[:, y1][:, :, x0] * (1 - fx)[None, None, :, None] + x[:, y1][:, :, x1] * fx[None, None, :, None]
    return top * (1 - fy)[None, :, None, None] + bot * fy[None, :, None, None]
case("ResizeNearestNeighbor", [{"name": "y", "op": "ResizeNearestNeighbor", "input": ["x", "s"]}], resize_nearest(X, 8, 8), [const("s", np.array([8, 8]), "int32")])
case("ResizeBilinear (half-pixel)", [{"name": "y", "op": "ResizeBilinear", "input": ["x", "s"], "attr": {"half_pixel_centers": {"b": True}}}],
     resize_bilinear_half(X, 6, 6), [const("s", np.array([6, 6]), "int32")])
case("constant folding (Mul of two constants)", [{"name": "c", "op": "Mul", "input": ["b", "b"]}, {"name": "y", "op": "AddV2", "input": ["x", "c"]}],
     X + B * B, [const("b", B)])

with open(os.path.join(os.path.dirname(__file__), "cases.json"), "w") as f:
    json.dump(cases, f, indent=None, separators=(",", ":"))
    f.write("\n")
print(f"{len(cases)} cases")
