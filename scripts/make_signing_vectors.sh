#!/usr/bin/env bash
# Regenerates protocol/testdata/signing/, the model-signature test vectors:
#
#   model.onnx                    1 KiB of fixed bytes (not a real ONNX model; only its hash matters)
#   upstream/p256.pub.pem, p256.sig    signed by the real `model_signing sign key` (PyPI 1.1.1), P-256
#   upstream/p384.pub.pem, p384.sig    same, P-384
#   upstream/two-files.sig        the tool signing a directory of two files (multi-resource statement)
#   flotilla/ed25519.pub.pem, ed25519.sig   made by our Rust signer from a fixed seed (deterministic)
#   flotilla/p256-with-facts.sig  our statement layout (with the `flotilla` facts), signed with the
#                                 P-256 key above by the Rust tests, to prove upstream accepts it
#
# Then it checks, with the upstream verifier, that the upstream bundles and our P-256 bundle
# verify, that a modified model does not, and reports what upstream makes of our ed25519 bundle.
# The ECDSA private keys live only in a temporary directory; ECDSA signatures are randomized, so
# every run changes the upstream/ files. Needs python3 (venv), openssl and cargo.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
OUT="$ROOT/protocol/testdata/signing"
VENV="${MODEL_SIGNING_VENV:-${TMPDIR:-/tmp}/flotilla-model-signing-venv}"
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

if [ ! -x "$VENV/bin/model_signing" ]; then
  python3 -m venv "$VENV"
  # 1.1.1 imports pyOpenSSL without declaring it.
  "$VENV/bin/pip" install --quiet model-signing==1.1.1 pyopenssl
fi
MS="$VENV/bin/model_signing"

mkdir -p "$OUT/upstream" "$OUT/flotilla"
python3 -c 'import sys; sys.stdout.buffer.write(bytes((i * 31 + 7) % 256 for i in range(1024)))' \
  >"$OUT/model.onnx"

for curve in p256:prime256v1 p384:secp384r1; do
  name=${curve%%:*}
  openssl ecparam -name "${curve#*:}" -genkey -noout \
    | openssl pkcs8 -topk8 -nocrypt -out "$WORK/$name.key"
  openssl pkey -in "$WORK/$name.key" -pubout -out "$OUT/upstream/$name.pub.pem"
  "$MS" sign key "$OUT/model.onnx" --private_key "$WORK/$name.key" \
    --signature "$OUT/upstream/$name.sig"
done

mkdir "$WORK/two-files"
cp "$OUT/model.onnx" "$WORK/two-files/model.onnx"
printf '{"labels": ["ok", "fraud"]}\n' >"$WORK/two-files/config.json"
"$MS" sign key "$WORK/two-files" --private_key "$WORK/p256.key" \
  --signature "$OUT/upstream/two-files.sig"

# Our vectors: the golden test writes them instead of comparing when asked to.
(cd "$ROOT" && FLOTILLA_REGENERATE_SIGNING_VECTORS=1 \
  FLOTILLA_SIGNING_VECTORS_P256_KEY="$WORK/p256.key" \
  CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}" \
  cargo test --quiet -p flotilla-protocol --lib signing::tests::golden_vectors -- --exact)

echo "--- upstream verifier"
"$MS" verify key "$OUT/model.onnx" --signature "$OUT/upstream/p256.sig" \
  --public_key "$OUT/upstream/p256.pub.pem"
"$MS" verify key "$OUT/model.onnx" --signature "$OUT/upstream/p384.sig" \
  --public_key "$OUT/upstream/p384.pub.pem"
echo "flotilla/p256-with-facts.sig (our statement, extra predicate field):"
"$MS" verify key "$OUT/model.onnx" --signature "$OUT/flotilla/p256-with-facts.sig" \
  --public_key "$OUT/upstream/p256.pub.pem"

cp "$OUT/model.onnx" "$WORK/model.onnx"
printf '\x00' | dd of="$WORK/model.onnx" bs=1 seek=100 conv=notrunc status=none
if "$MS" verify key "$WORK/model.onnx" --signature "$OUT/flotilla/p256-with-facts.sig" \
  --public_key "$OUT/upstream/p256.pub.pem" >/dev/null 2>&1; then
  echo "upstream accepted a modified model: the vectors are wrong" >&2
  exit 1
fi
echo "modified model rejected, as it should be"

echo "flotilla/ed25519.sig (upstream 1.1.1 supports only EC keys, so this is expected to fail):"
"$MS" verify key "$OUT/model.onnx" --signature "$OUT/flotilla/ed25519.sig" \
  --public_key "$OUT/flotilla/ed25519.pub.pem" || true

echo "vectors written to $OUT"
