"""Drives the server's inference endpoint (/v2) with NVIDIA's real Triton client (tritonclient[http]).

Usage: tritonclient_check.py --url 127.0.0.1:PORT --token flt_... --viewer-token flt_...
                             --expected models/expected.json

The server has fraud, sensor-anomaly and vision-cnn published as 1.0.0; --token has the
`inference` role, --viewer-token the `viewer` role. Exits 0 and prints
"tritonclient checks passed: N" when every check holds; any failure raises.
"""

import argparse
import json
import sys

import numpy as np
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

# (name, version, file) the Rust test publishes.
MODELS = [
    ("fraud", "1.0.0", "fraud-1.0.0.onnx"),
    ("sensor-anomaly", "1.0.0", "sensor-anomaly-1.0.0.onnx"),
    ("vision-cnn", "1.0.0", "vision-cnn-1.0.0.onnx"),
]
TOLERANCE = 1e-5


def expect_error(call, status, needle):
    try:
        call()
    except InferenceServerException as e:
        assert e.status() == str(status), f"status {e.status()!r}, expected {status}: {e.message()!r}"
        assert needle in e.message(), f"{e.message()!r} lacks {needle!r}"
        return
    raise AssertionError(f"expected a {status} error containing {needle!r}")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", required=True)
    parser.add_argument("--token", required=True)
    parser.add_argument("--viewer-token", required=True)
    parser.add_argument("--expected", required=True)
    args = parser.parse_args()
    with open(args.expected) as f:
        expected = {m["file"]: m for m in json.load(f)["models"]}
    auth = {"Authorization": f"Bearer {args.token}"}

    client = httpclient.InferenceServerClient(url=args.url)
    checks = 0

    # Health and server metadata need no credentials.
    assert client.is_server_live()
    assert client.is_server_ready()
    server = client.get_server_metadata()
    assert server["name"] == "flotilla-server", server
    assert server["extensions"] == ["binary_tensor_data"], server
    checks += 1

    for name, version, file in MODELS:
        model = expected[file]
        assert client.is_model_ready(name, headers=auth)
        assert client.is_model_ready(name, version, headers=auth)
        assert not client.is_model_ready(name, "0.0.0", headers=auth)
        metadata = client.get_model_metadata(name, version, headers=auth)
        assert metadata["name"] == name and metadata["versions"] == [version], metadata
        assert metadata["platform"] == "onnx", metadata
        for kind in ("inputs", "outputs"):
            got = [(t["name"], t["datatype"], t["shape"]) for t in metadata[kind]]
            want = [(t["name"], t["datatype"], t["shape"]) for t in model[kind]]
            assert got == want, (kind, got, want)
        checks += 1

        for index, case in enumerate(model["cases"]):
            arrays = {
                t["name"]: np.array(t["data"], dtype=np.float32).reshape(t["shape"])
                for t in case["inputs"]
            }
            answers = {}
            # JSON both ways (binary_data=False everywhere); tritonclient's default call (JSON
            # inputs, no outputs named: every output comes back as binary data); binary inputs
            # with binary outputs named.
            for encoding in ("json", "default", "binary"):
                inputs = []
                for tensor in case["inputs"]:
                    infer_input = httpclient.InferInput(tensor["name"], tensor["shape"], tensor["datatype"])
                    infer_input.set_data_from_numpy(arrays[tensor["name"]], binary_data=encoding == "binary")
                    inputs.append(infer_input)
                if encoding == "default":
                    outputs = None
                else:
                    outputs = [
                        httpclient.InferRequestedOutput(t["name"], binary_data=encoding == "binary")
                        for t in case["outputs"]
                    ]
                # Alternate the unversioned and the versioned endpoint.
                result = client.infer(
                    name,
                    inputs,
                    model_version=version if index % 2 else "",
                    outputs=outputs,
                    request_id=f"{name}-{index}-{encoding}",
                    # A copy: tritonclient writes Inference-Header-Content-Length into the
                    # dict it is given, which would then go with every later request.
                    headers=dict(auth),
                )
                response = result.get_response()
                assert response["model_name"] == name, response
                assert response["model_version"] == version, response
                assert response["id"] == f"{name}-{index}-{encoding}", response
                assert response["parameters"] == {"flotilla_served_by": "server"}, response
                for output in response["outputs"]:
                    binary = output.get("parameters", {}).get("binary_data_size")
                    if encoding == "json":
                        assert binary is None and "data" in output, output
                    else:
                        assert "data" not in output, output
                        assert binary == 4 * int(np.prod(output["shape"])), output
                for tensor in case["outputs"]:
                    got = result.as_numpy(tensor["name"])
                    want = np.array(
                        [np.nan if v is None else v for v in tensor["data"]], dtype=np.float32
                    ).reshape(tensor["shape"])
                    assert got is not None and got.dtype == np.float32, got
                    np.testing.assert_allclose(got, want, rtol=0, atol=TOLERANCE)
                    answers.setdefault(tensor["name"], []).append(got)
            # The same numbers whichever way they travelled, to the bit.
            for name_, got in answers.items():
                for other in got[1:]:
                    np.testing.assert_array_equal(other, got[0], err_msg=name_)
            checks += 1

    # Errors come back as tritonclient exceptions carrying the server's status and message.
    expect_error(lambda: client.get_model_metadata("fraud"), 401, "Authorization")
    viewer = {"Authorization": f"Bearer {args.viewer_token}"}
    expect_error(lambda: client.get_model_metadata("fraud", headers=viewer), 403, "viewer")
    assert not client.is_model_ready("no-such-model", headers=auth)
    expect_error(lambda: client.get_model_metadata("no-such-model", headers=auth), 404, "no-such-model")

    fraud = expected["fraud-1.0.0.onnx"]["cases"][0]["inputs"][0]
    values = np.array(fraud["data"], dtype=np.float32).reshape(fraud["shape"])
    # A datatype the model does not take is refused, sent as JSON or as binary data.
    for binary in (False, True):
        wrong = httpclient.InferInput("features", [1, 8], "FP64")
        wrong.set_data_from_numpy(values.astype(np.float64), binary_data=binary)
        expect_error(
            lambda: client.infer(
                "fraud",
                [wrong],
                outputs=[httpclient.InferRequestedOutput("probabilities", binary_data=binary)],
                headers=dict(auth),
            ),
            400,
            "must be FP32",
        )
    checks += 1

    client.close()
    print(f"tritonclient checks passed: {checks}")


if __name__ == "__main__":
    sys.exit(main())
