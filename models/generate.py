#!/usr/bin/env python3
"""Build Flotilla's small, deterministic sample ONNX models and their reference outputs.

    python3 models/generate.py                # (re)write models/*.onnx and models/expected.json
    python3 models/generate.py --check        # regenerate in a temp dir, compare byte for byte
    python3 models/generate.py --mobilenet X  # write a MobileNetV2-sized benchmark model to X

Every weight comes from a fixed numpy seed; nothing is downloaded. The reference outputs are
computed with onnxruntime (the versions pinned in requirements.txt). See README.md for the
layout of expected.json and the rule that makes the faulty model fail.
"""

from __future__ import annotations

import argparse
import filecmp
import hashlib
import json
import math
import re
import sys
import tempfile
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

OPSET = 13
# tract 0.21 reads IR version 8 (onnx 1.10-1.12 era) and opset 13 without trouble.
IR_VERSION = 8
PRODUCER = "flotilla-models-generate"
MODELS_DIR = Path(__file__).resolve().parent
BATCH = "N"  # name of the symbolic batch dimension

FP32 = "FP32"  # KServe v2 datatype name for float32


# ---------------------------------------------------------------------------------------------
# graph helpers


def init(name: str, array: np.ndarray) -> onnx.TensorProto:
    return numpy_helper.from_array(np.ascontiguousarray(array), name=name)


def f32_input(name: str, dims: list) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, dims)


def finish(graph: onnx.GraphProto, doc: str) -> onnx.ModelProto:
    model = helper.make_model(
        graph,
        producer_name=PRODUCER,
        producer_version="1",
        doc_string=doc,
        opset_imports=[helper.make_opsetid("", OPSET)],
    )
    model.ir_version = IR_VERSION
    onnx.checker.check_model(model, full_check=True)
    return model


# ---------------------------------------------------------------------------------------------
# fraud scoring MLP: features [N,8] -> Gemm -> Relu -> Gemm -> Softmax -> probabilities [N,2]

FRAUD_FEATURES = 8
FRAUD_HIDDEN = 16


def fraud_weights(seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    w1 = rng.normal(0.0, 1.0 / math.sqrt(FRAUD_FEATURES), (FRAUD_FEATURES, FRAUD_HIDDEN))
    b1 = rng.normal(0.0, 0.1, (FRAUD_HIDDEN,))
    # Wide enough that probabilities spread over (0, 1): confidence thresholds need both ends.
    w2 = rng.normal(0.0, 3.0 / math.sqrt(FRAUD_HIDDEN), (FRAUD_HIDDEN, 2))
    weights = {"w1": w1, "b1": b1, "w2": w2, "b2": np.zeros(2)}
    # Centre the output bias so that both classes are common on inputs like the test rows.
    probe = fraud_rows(np.random.default_rng(seed + 1000), 256)
    logits = np.maximum(probe @ w1 + b1, 0.0) @ w2
    diff = float(np.median(logits[:, 1] - logits[:, 0]))
    weights["b2"] = np.array([diff / 2.0, -diff / 2.0])
    return {k: v.astype(np.float32) for k, v in weights.items()}


def fraud_rows(rng: np.random.Generator, rows: int) -> np.ndarray:
    # Multiples of 1/256 in [-2, 2): exact in f32, f64 and short decimal, so JSON is lossless.
    return (rng.integers(-512, 512, (rows, FRAUD_FEATURES)) / 256.0).astype(np.float32)


def fraud_mlp_nodes(w: dict[str, np.ndarray], out: str) -> tuple[list, list]:
    nodes = [
        helper.make_node("Gemm", ["features", "w1", "b1"], ["hidden_pre"], name="dense1"),
        helper.make_node("Relu", ["hidden_pre"], ["hidden"], name="relu1"),
        helper.make_node("Gemm", ["hidden", "w2", "b2"], ["logits"], name="dense2"),
        helper.make_node("Softmax", ["logits"], [out], name="softmax", axis=1),
    ]
    inits = [init(k, w[k]) for k in ("w1", "b1", "w2", "b2")]
    return nodes, inits


def fraud_graph(name: str, w: dict[str, np.ndarray]) -> onnx.GraphProto:
    nodes, inits = fraud_mlp_nodes(w, "probabilities")
    return helper.make_graph(
        nodes,
        name,
        [f32_input("features", [BATCH, FRAUD_FEATURES])],
        [f32_input("probabilities", [BATCH, 2])],
        inits,
    )


def fraud_faulty_graph(w: dict[str, np.ndarray]) -> onnx.GraphProto:
    # probabilities = softmax(mlp(x)) + sqrt(-relu(x[:, 0:1] - 0.5))
    # The second term is sqrt(-0) = 0 when feature 0 <= 0.5 and sqrt(negative) = NaN when it is
    # > 0.5, so the failure is data dependent without any control flow.
    nodes, inits = fraud_mlp_nodes(w, "clean_probabilities")
    nodes += [
        helper.make_node(
            "Slice", ["features", "f0_start", "f0_end", "f0_axis"], ["feature0"], name="take_f0"
        ),
        helper.make_node("Sub", ["feature0", "threshold"], ["over"], name="over_threshold"),
        helper.make_node("Relu", ["over"], ["excess"], name="excess"),
        helper.make_node("Neg", ["excess"], ["neg_excess"], name="negate"),
        helper.make_node("Sqrt", ["neg_excess"], ["poison"], name="sqrt_of_negative"),
        helper.make_node("Add", ["clean_probabilities", "poison"], ["probabilities"], name="poisoned"),
    ]
    inits += [
        init("f0_start", np.array([0], dtype=np.int64)),
        init("f0_end", np.array([1], dtype=np.int64)),
        init("f0_axis", np.array([1], dtype=np.int64)),
        init("threshold", np.array([0.5], dtype=np.float32)),
    ]
    return helper.make_graph(
        nodes,
        "fraud_faulty",
        [f32_input("features", [BATCH, FRAUD_FEATURES])],
        [f32_input("probabilities", [BATCH, 2])],
        inits,
    )


def fraud_variants() -> dict[str, onnx.ModelProto]:
    base = fraud_weights(seed=1)

    # 1.1.0: the same network after a little more training, modelled as a small perturbation.
    rng = np.random.default_rng(11)
    later = {k: (v + rng.normal(0.0, 0.05, v.shape)).astype(np.float32) for k, v in base.items()}

    # 2.0.0: output columns swapped (plus noise), so the top class usually flips.
    rng = np.random.default_rng(20)
    swapped = dict(base)
    swapped["w2"] = base["w2"][:, ::-1]
    swapped["b2"] = base["b2"][::-1]
    disagree = {k: (v + rng.normal(0.0, 0.02, v.shape)).astype(np.float32) for k, v in swapped.items()}

    return {
        "fraud-1.0.0.onnx": finish(
            fraud_graph("fraud", base), "Fraud scoring MLP v1.0.0 (synthetic weights)"
        ),
        "fraud-1.1.0.onnx": finish(
            fraud_graph("fraud", later), "Fraud scoring MLP v1.1.0 (synthetic weights)"
        ),
        "fraud-1.2.0-faulty.onnx": finish(
            fraud_faulty_graph(base),
            "Fraud scoring MLP v1.2.0, deliberately faulty: NaN outputs when features[:,0] > 0.5",
        ),
        "fraud-2.0.0-disagree.onnx": finish(
            fraud_graph("fraud", disagree),
            "Fraud scoring MLP v2.0.0, deliberately disagrees with v1.0.0 on the top class",
        ),
    }


# ---------------------------------------------------------------------------------------------
# sensor anomaly detector: window [N,16] -> Gemm -> Tanh -> Gemm -> Sigmoid -> anomaly_score [N,1]


def sensor_model() -> onnx.ModelProto:
    rng = np.random.default_rng(3)
    w1 = rng.normal(0.0, 0.25, (16, 8)).astype(np.float32)
    b1 = rng.normal(0.0, 0.1, (8,)).astype(np.float32)
    w2 = rng.normal(0.0, 0.5, (8, 1)).astype(np.float32)
    b2 = np.zeros((1,), dtype=np.float32)
    graph = helper.make_graph(
        [
            helper.make_node("Gemm", ["window", "w1", "b1"], ["h_pre"], name="dense1"),
            helper.make_node("Tanh", ["h_pre"], ["h"], name="tanh1"),
            helper.make_node("Gemm", ["h", "w2", "b2"], ["score_logit"], name="dense2"),
            helper.make_node("Sigmoid", ["score_logit"], ["anomaly_score"], name="sigmoid"),
        ],
        "sensor_anomaly",
        [f32_input("window", [BATCH, 16])],
        [f32_input("anomaly_score", [BATCH, 1])],
        [init("w1", w1), init("b1", b1), init("w2", w2), init("b2", b2)],
    )
    return finish(graph, "Sensor window anomaly scorer v1.0.0 (synthetic weights)")


# ---------------------------------------------------------------------------------------------
# small image CNN: image [N,3,32,32] -> (Conv Relu MaxPool) x2 -> Flatten -> Gemm -> Softmax


def conv_weights(rng: np.random.Generator, out_c: int, in_c: int, k: int) -> np.ndarray:
    fan_in = in_c * k * k
    return rng.normal(0.0, math.sqrt(2.0 / fan_in), (out_c, in_c, k, k)).astype(np.float32)


def vision_model() -> onnx.ModelProto:
    rng = np.random.default_rng(4)
    c1 = conv_weights(rng, 8, 3, 3)
    c2 = conv_weights(rng, 16, 8, 3)
    fc = rng.normal(0.0, math.sqrt(1.0 / 1024), (1024, 10)).astype(np.float32)
    inits = [
        init("conv1_w", c1),
        init("conv1_b", rng.normal(0.0, 0.05, (8,)).astype(np.float32)),
        init("conv2_w", c2),
        init("conv2_b", rng.normal(0.0, 0.05, (16,)).astype(np.float32)),
        init("fc_w", fc),
        init("fc_b", rng.normal(0.0, 0.05, (10,)).astype(np.float32)),
    ]
    pool = dict(kernel_shape=[2, 2], strides=[2, 2])
    conv = dict(kernel_shape=[3, 3], pads=[1, 1, 1, 1])
    nodes = [
        helper.make_node("Conv", ["image", "conv1_w", "conv1_b"], ["c1"], name="conv1", **conv),
        helper.make_node("Relu", ["c1"], ["r1"], name="relu1"),
        helper.make_node("MaxPool", ["r1"], ["p1"], name="pool1", **pool),
        helper.make_node("Conv", ["p1", "conv2_w", "conv2_b"], ["c2"], name="conv2", **conv),
        helper.make_node("Relu", ["c2"], ["r2"], name="relu2"),
        helper.make_node("MaxPool", ["r2"], ["p2"], name="pool2", **pool),
        helper.make_node("Flatten", ["p2"], ["flat"], name="flatten", axis=1),
        helper.make_node("Gemm", ["flat", "fc_w", "fc_b"], ["logits"], name="classifier"),
        helper.make_node("Softmax", ["logits"], ["probabilities"], name="softmax", axis=1),
    ]
    graph = helper.make_graph(
        nodes,
        "vision_cnn",
        [f32_input("image", [BATCH, 3, 32, 32])],
        [f32_input("probabilities", [BATCH, 10])],
        inits,
    )
    return finish(graph, "Small image classifier CNN v1.0.0 (synthetic weights)")


# ---------------------------------------------------------------------------------------------
# MobileNetV2-sized benchmark model (not committed)

# (expansion t, output channels c, repeats n, first stride s), as in the MobileNetV2 paper.
MOBILENET_V2_BLOCKS = [
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
]


class GraphBuilder:
    """Accumulates nodes and initializers; batch norm is assumed folded into conv biases."""

    def __init__(self, rng: np.random.Generator):
        self.rng = rng
        self.nodes: list = []
        self.inits: list = []
        self.params = 0
        self.count = 0
        self.inits += [init("relu6_min", np.array(0.0, np.float32)),
                       init("relu6_max", np.array(6.0, np.float32))]

    def fresh(self, prefix: str) -> str:
        self.count += 1
        return f"{prefix}_{self.count}"

    def conv(self, x: str, in_c: int, out_c: int, k: int, stride: int, groups: int, relu6: bool) -> str:
        name = self.fresh("conv")
        w = conv_weights(self.rng, out_c, in_c // groups, k)
        if not relu6:
            w *= 0.5  # linear bottleneck: keep the residual stream's scale steady
        b = np.zeros((out_c,), np.float32)
        self.inits += [init(f"{name}_w", w), init(f"{name}_b", b)]
        self.params += w.size + b.size
        pad = k // 2
        self.nodes.append(
            helper.make_node(
                "Conv", [x, f"{name}_w", f"{name}_b"], [name], name=name,
                kernel_shape=[k, k], strides=[stride, stride], pads=[pad] * 4, group=groups,
            )
        )
        if not relu6:
            return name
        out = self.fresh("relu6")
        self.nodes.append(helper.make_node("Clip", [name, "relu6_min", "relu6_max"], [out], name=out))
        return out

    def inverted_residual(self, x: str, in_c: int, out_c: int, stride: int, t: int) -> str:
        hidden = in_c * t
        y = x
        if t != 1:
            y = self.conv(y, in_c, hidden, 1, 1, 1, relu6=True)
        y = self.conv(y, hidden, hidden, 3, stride, hidden, relu6=True)  # depthwise
        y = self.conv(y, hidden, out_c, 1, 1, 1, relu6=False)  # pointwise, linear
        if stride == 1 and in_c == out_c:
            out = self.fresh("residual")
            self.nodes.append(helper.make_node("Add", [x, y], [out], name=out))
            y = out
        return y


def mobilenet_model() -> tuple[onnx.ModelProto, int]:
    b = GraphBuilder(np.random.default_rng(224))
    x = b.conv("image", 3, 32, 3, 2, 1, relu6=True)
    channels = 32
    for t, c, n, s in MOBILENET_V2_BLOCKS:
        for i in range(n):
            x = b.inverted_residual(x, channels, c, s if i == 0 else 1, t)
            channels = c
    x = b.conv(x, channels, 1280, 1, 1, 1, relu6=True)
    fc_w = b.rng.normal(0.0, math.sqrt(1.0 / 1280), (1280, 1000)).astype(np.float32)
    fc_b = np.zeros((1000,), np.float32)
    b.inits += [init("fc_w", fc_w), init("fc_b", fc_b)]
    b.params += fc_w.size + fc_b.size
    b.nodes += [
        helper.make_node("GlobalAveragePool", [x], ["gap"], name="gap"),
        helper.make_node("Flatten", ["gap"], ["flat"], name="flatten", axis=1),
        helper.make_node("Gemm", ["flat", "fc_w", "fc_b"], ["logits"], name="classifier"),
        helper.make_node("Softmax", ["logits"], ["probabilities"], name="softmax", axis=1),
    ]
    graph = helper.make_graph(
        b.nodes,
        "mobilenet_v2_like",
        [f32_input("image", [1, 3, 224, 224])],
        [f32_input("probabilities", [1, 1000])],
        b.inits,
    )
    model = finish(graph, "MobileNetV2-shaped benchmark CNN with random weights (not trained)")
    return model, b.params


# ---------------------------------------------------------------------------------------------
# fixed inputs and reference outputs


def grid_rows(rng: np.random.Generator, shape: tuple, low: int, high: int) -> np.ndarray:
    """Random multiples of 1/256 in [low/256, high/256): exactly representable everywhere."""
    return (rng.integers(low, high, shape) / 256.0).astype(np.float32)


def fraud_cases(seed: int, faulty: bool) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    single = fraud_rows(rng, 1)
    batch = fraud_rows(rng, 6)
    if faulty:
        # The single row is healthy; the batch mixes healthy (f0 <= 0.5) and poisoned rows.
        single[0, 0] = 0.25
        batch[:, 0] = np.array([0.25, 0.75, -1.0, 0.5, 0.5078125, 1.5], dtype=np.float32)
        poisoned_single = fraud_rows(rng, 1)
        poisoned_single[0, 0] = 1.0
        return [single, batch, poisoned_single]
    return [single, batch]


def inputs_for(file: str) -> dict:
    """The input name and the list of fixed input batches for each committed model."""
    if file.startswith("fraud-"):
        return {"name": "features", "cases": fraud_cases(100, faulty="faulty" in file)}
    if file.startswith("sensor-"):
        rng = np.random.default_rng(500)
        return {"name": "window", "cases": [grid_rows(rng, (1, 16), -768, 768),
                                            grid_rows(rng, (5, 16), -768, 768)]}
    if file.startswith("vision-"):
        rng = np.random.default_rng(600)
        # Pixels on a 1/16 grid keep expected.json small.
        pixels = [(rng.integers(0, 16, shape) / 16.0).astype(np.float32)
                  for shape in ((1, 3, 32, 32), (3, 3, 32, 32))]
        return {"name": "image", "cases": pixels}
    raise ValueError(file)


def f32_list(array: np.ndarray) -> list:
    """Flatten to JSON-safe numbers that parse back to the same f32; NaN becomes null."""
    out = []
    for v in np.asarray(array, dtype=np.float32).ravel():
        if np.isnan(v):
            out.append(None)
        elif np.isinf(v):
            out.append("Infinity" if v > 0 else "-Infinity")
        else:
            exact = float(v)  # every f32 is exactly an f64
            shortest = float(np.format_float_positional(v, unique=True, trim="-"))
            # Grid inputs (k/256) print exactly; other values as the shortest f32 round-trip.
            number = exact if len(repr(exact)) <= len(repr(shortest)) + 3 else shortest
            out.append(int(number) if number.is_integer() and abs(number) < 2**24 else number)
    return out


def tensor_spec(value_info: onnx.ValueInfoProto) -> dict:
    dims = [d.dim_value if d.HasField("dim_value") else -1
            for d in value_info.type.tensor_type.shape.dim]
    assert value_info.type.tensor_type.elem_type == TensorProto.FLOAT
    return {"name": value_info.name, "datatype": FP32, "shape": dims}


def reference_entry(file: str, data: bytes) -> dict:
    model = onnx.load_from_string(data)
    session = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    spec = inputs_for(file)
    output_names = [o.name for o in model.graph.output]
    cases = []
    for batch in spec["cases"]:
        results = session.run(output_names, {spec["name"]: batch})
        cases.append({
            "inputs": [{"name": spec["name"], "datatype": FP32, "shape": list(batch.shape),
                        "data": f32_list(batch)}],
            "outputs": [{"name": name, "datatype": FP32, "shape": list(r.shape),
                         "data": f32_list(r)} for name, r in zip(output_names, results)],
        })
    return {
        "file": file,
        "sha256": hashlib.sha256(data).hexdigest(),
        "size_bytes": len(data),
        "inputs": [tensor_spec(i) for i in model.graph.input],
        "outputs": [tensor_spec(o) for o in model.graph.output],
        "cases": cases,
    }


def sanity_checks(models: dict[str, onnx.ModelProto]) -> None:
    """Fail loudly if a seed change breaks the properties the tests rely on."""
    rows = fraud_rows(np.random.default_rng(7), 512)
    rows_healthy = rows.copy()
    rows_healthy[:, 0] = np.minimum(rows_healthy[:, 0], 0.5)

    def top(file: str, x: np.ndarray) -> np.ndarray:
        data = models[file].SerializeToString()
        session = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
        (probs,) = session.run(["probabilities"], {"features": x})
        return probs

    base = top("fraud-1.0.0.onnx", rows)
    share_class_1 = float(np.mean(base.argmax(1) == 1))
    assert 0.25 < share_class_1 < 0.75, f"fraud 1.0.0 classes unbalanced: {share_class_1}"
    agree = float(np.mean(top("fraud-1.1.0.onnx", rows).argmax(1) == base.argmax(1)))
    assert agree >= 0.85, f"fraud 1.1.0 agrees with 1.0.0 on only {agree:.0%}"
    disagree = float(np.mean(top("fraud-2.0.0-disagree.onnx", rows).argmax(1) != base.argmax(1)))
    assert disagree >= 0.85, f"fraud 2.0.0 disagrees with 1.0.0 on only {disagree:.0%}"
    faulty = top("fraud-1.2.0-faulty.onnx", rows)
    nan_rows = np.isnan(faulty).any(axis=1)
    assert np.array_equal(nan_rows, rows[:, 0] > 0.5), "faulty model's NaN rule broken"
    assert np.isnan(faulty[nan_rows]).all()
    healthy = top("fraud-1.2.0-faulty.onnx", rows_healthy)
    assert np.allclose(healthy, top("fraud-1.0.0.onnx", rows_healthy), atol=1e-6)


def build_all() -> dict[str, onnx.ModelProto]:
    models = fraud_variants()
    models["sensor-anomaly-1.0.0.onnx"] = sensor_model()
    models["vision-cnn-1.0.0.onnx"] = vision_model()
    return models


def generate(out_dir: Path) -> list[str]:
    """Write every committed model and expected.json into out_dir; return the file names."""
    models = build_all()
    sanity_checks(models)
    entries = []
    for file, model in models.items():
        data = model.SerializeToString()
        (out_dir / file).write_bytes(data)
        entries.append(reference_entry(file, data))
    expected = {
        "generator": "models/generate.py",
        "versions": {"onnx": onnx.__version__, "onnxruntime": ort.__version__,
                     "numpy": np.__version__},
        "nan_encoding": "null",
        "models": entries,
    }
    text = dumps_compact_lists(expected) + "\n"
    (out_dir / "expected.json").write_text(text)
    return [*models.keys(), "expected.json"]


def dumps_compact_lists(value: dict) -> str:
    """Indented JSON, except that each tensor's flat data list stays on one line."""
    lists: list[str] = []

    def stash(node):
        if isinstance(node, dict):
            return {k: stash(v) for k, v in node.items()}
        if isinstance(node, list):
            if all(not isinstance(v, (dict, list)) for v in node):
                lists.append(json.dumps(node, allow_nan=False, separators=(",", ":")))
                return f"@@LIST{len(lists) - 1}@@"
            return [stash(v) for v in node]
        return node

    text = json.dumps(stash(value), indent=1, allow_nan=False)
    return re.sub(r'"@@LIST(\d+)@@"', lambda m: lists[int(m.group(1))], text)


def check() -> int:
    with tempfile.TemporaryDirectory() as tmp:
        files = generate(Path(tmp))
        bad = [f for f in files if not (MODELS_DIR / f).exists()
               or not filecmp.cmp(Path(tmp) / f, MODELS_DIR / f, shallow=False)]
    for f in bad:
        print(f"differs from a fresh build: models/{f}", file=sys.stderr)
    if bad:
        print("run `python3 models/generate.py` with the pinned requirements", file=sys.stderr)
        return 1
    print(f"ok: {len(files)} files are byte-identical to a fresh build")
    return 0


def write_mobilenet(path: Path) -> None:
    model, params = mobilenet_model()
    data = model.SerializeToString()
    path.write_bytes(data)
    session = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    image = grid_rows(np.random.default_rng(9), (1, 3, 224, 224), 0, 256)
    (probs,) = session.run(["probabilities"], {"image": image})
    assert probs.shape == (1, 1000) and np.isfinite(probs).all()
    print(f"wrote {path}: {params:,} parameters, {len(data):,} bytes, "
          f"{len(model.graph.node)} nodes; onnxruntime top class {int(probs.argmax())}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true",
                        help="regenerate in a temp dir and compare with the committed files")
    parser.add_argument("--mobilenet", metavar="OUT", type=Path,
                        help="write the MobileNetV2-sized benchmark model to OUT and exit")
    args = parser.parse_args()
    if args.mobilenet:
        write_mobilenet(args.mobilenet)
        return 0
    if args.check:
        return check()
    files = generate(MODELS_DIR)
    for f in files:
        print(f"wrote models/{f} ({(MODELS_DIR / f).stat().st_size:,} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
