#!/usr/bin/env bash
# Upload-and-verify benchmark: streams a large model to the server and reports throughput as a
# ratio to `openssl dgst -sha256` of the same file, plus the server's resident memory before,
# at peak (VmHWM) and after. Usage: benches/upload.sh [SIZE_MIB] (default 1024).
set -euo pipefail
cd "$(dirname "$0")/.."
size_mib="${1:-1024}"
profile="${PROFILE:-release}"
cargo build --quiet --profile "$profile" -p flotilla-server
bin="target/$profile/flotilla-server"
[ "$profile" = dev ] && bin="target/debug/flotilla-server"

work=$(mktemp -d)
trap 'kill "$pid" 2>/dev/null || true; rm -rf "$work"' EXIT
file="$work/model.bin"
head -c "$((size_mib * 1024 * 1024))" /dev/urandom >"$file"
bytes=$(stat -c %s "$file")

t0=$(date +%s.%N)
hex=$(openssl dgst -sha256 -r "$file" | cut -d' ' -f1)
t1=$(date +%s.%N)
openssl_s=$(echo "$t1 - $t0" | bc -l)

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
token="bench-token-$(date +%s%N)"
FLOTILLA_BOOTSTRAP_TOKEN="$token" RUST_LOG=warn "$bin" --listen "127.0.0.1:$port" --data-dir "$work/data" >"$work/server.log" 2>&1 &
pid=$!
for _ in $(seq 1 100); do curl -sf "http://127.0.0.1:$port/readyz" >/dev/null && break; sleep 0.1; done
rss_idle=$(awk '/VmRSS/ {print $2}' /proc/$pid/status)

t0=$(date +%s.%N)
status=$(curl -s -o "$work/put.json" -w '%{http_code}' -X PUT -T "$file" \
    -H "Authorization: Bearer $token" -H 'Content-Type: application/octet-stream' \
    "http://127.0.0.1:$port/api/v1/artifacts/sha256/$hex")
t1=$(date +%s.%N)
upload_s=$(echo "$t1 - $t0" | bc -l)
[ "$status" = 201 ] || { echo "upload failed: $status $(cat "$work/put.json")" >&2; exit 1; }
rss_peak=$(awk '/VmHWM/ {print $2}' /proc/$pid/status)
rss_after=$(awk '/VmRSS/ {print $2}' /proc/$pid/status)

mib=$(echo "$bytes / 1048576" | bc -l)
printf 'size_mib=%.0f\n' "$mib"
printf 'openssl_sha256_mib_s=%.1f\n' "$(echo "$mib / $openssl_s" | bc -l)"
printf 'upload_verify_mib_s=%.1f\n' "$(echo "$mib / $upload_s" | bc -l)"
printf 'ratio_to_openssl=%.2f\n' "$(echo "$openssl_s / $upload_s" | bc -l)"
printf 'server_rss_idle_mib=%.1f\nserver_rss_peak_mib=%.1f\nserver_rss_after_mib=%.1f\n' \
    "$(echo "$rss_idle / 1024" | bc -l)" "$(echo "$rss_peak / 1024" | bc -l)" "$(echo "$rss_after / 1024" | bc -l)"
