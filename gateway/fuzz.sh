#!/usr/bin/env bash
# Schema-based fuzzing of the gateway: starts `weir up` on a free port in a temp data
# dir, issues a token, registers one dataset through `weir upload --api` (so that flow
# is checked end to end, and the dataset routes have something to find), and runs
# schemathesis (from .tools/venv) against /openapi.json. Fails on any 5xx or any
# response that does not match the schema. The SSE route streams forever and is left
# out; tests/api.rs covers it.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/.tools/bin:$PATH"
export NATS_SERVER_BIN="${NATS_SERVER_BIN:-$PWD/.tools/bin/nats-server}"
cargo build -p weir --locked --quiet --features query
weir="$PWD/target/debug/weir"
dir="$(mktemp -d)"
"$weir" --data-dir "$dir" up --http 127.0.0.1:0 >"$dir/up.out" 2>"$dir/up.err" &
pid=$!
cleanup() { kill -INT "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; rm -rf "$dir"; }
trap cleanup EXIT
for _ in $(seq 1 300); do grep -q '^ready' "$dir/up.out" 2>/dev/null && break; sleep 0.1; done
grep -q '^ready' "$dir/up.out" || { cat "$dir/up.err" >&2; echo "fuzz: weir up did not become ready" >&2; exit 1; }
http="$(sed -n 's/.* http=\(http:[^ ]*\).*/\1/p' "$dir/up.out")"
token="$("$weir" --data-dir "$dir" tokens create fuzz)"
# The seed dataset goes in through `weir upload --api` (the HTTP multipart flow), in
# parts of 4 KiB so there are several; it must come out registered with its 200 rows.
seeded="$("$weir" upload samples/orders.csv --api "$http" --token "$token" --part-size 4096 --table seed --wait --json)"
echo "$seeded" | grep -q '"status":"registered"' && echo "$seeded" | grep -q '"row_count":200' \
  || { echo "fuzz: weir upload --api did not register the sample: $seeded" >&2; exit 1; }
echo "fuzz: weir upload --api registered the sample: $seeded" >&2
.tools/venv/bin/schemathesis run "$http/openapi.json" \
  --header "Authorization: Bearer $token" \
  --checks not_a_server_error,response_schema_conformance,status_code_conformance,content_type_conformance \
  --exclude-path /v1/events \
  --max-examples "${WEIR_FUZZ_EXAMPLES:-40}" \
  --request-timeout 30 \
  --generation-deterministic
