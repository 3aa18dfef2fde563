"""onnxruntime reference for flotilla-bench: p50/p99 latency and throughput of one model on one
input, with a fixed number of threads (the Rust side runs tract on the same count).

Usage: ort_infer.py MODEL INPUTS_JSON ITERATIONS THREADS
INPUTS_JSON is a list of Open Inference Protocol tensors ({"name", "shape", "data"}).
Prints one JSON object: {"p50_ms", "p99_ms", "per_s", "onnxruntime"}.
"""
import json
import sys
import time

import numpy as np
import onnxruntime as ort


def main() -> int:
    model, inputs_path, iterations, threads = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    session = ort.InferenceSession(model, opts, providers=["CPUExecutionProvider"])
    with open(inputs_path) as f:
        tensors = json.load(f)
    feed = {t["name"]: np.asarray(t["data"], dtype=np.float32).reshape(t["shape"]) for t in tensors}
    for _ in range(max(3, iterations // 20)):
        session.run(None, feed)
    times = []
    started = time.perf_counter()
    for _ in range(iterations):
        t0 = time.perf_counter()
        session.run(None, feed)
        times.append((time.perf_counter() - t0) * 1000.0)
    total = time.perf_counter() - started
    times.sort()
    pick = lambda q: times[min(len(times) - 1, max(0, int(np.ceil(q * len(times))) - 1))]
    print(json.dumps({"p50_ms": pick(0.5), "p99_ms": pick(0.99), "per_s": iterations / total,
                      "onnxruntime": ort.__version__}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
