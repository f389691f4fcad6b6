#!/usr/bin/env bash
# `make bench`: measures Latchkey's token paths against the raw signature limits on this machine
# and writes docs/benchmarks.md and docs/images/benchmarks.svg.
#
#  1. the Go benchmarks (-benchmem), saved as benchstat input in $BENCH_DIR/gobench.txt;
#  2. `latchkey --dev` with a real redis-server, the server pinned to CPU 0 with GOMAXPROCS=1,
#     Redis and the load generator on CPU 1;
#  3. every loadgen workload for BENCH_DURATION (10s) after BENCH_WARMUP (2s), at concurrency
#     BENCH_CONCURRENCY (16); the in-process workloads (raw sign and verify, verifier.Verify,
#     TLS handshakes) run on CPU 0, the server's CPU, while the server is idle;
#  4. a CPU profile of the server under cc, refresh and introspect (a second, unmeasured run);
#  5. loadgen report.
#
# Needs Linux (taskset, /proc), Go and redis-server. Every figure comes from this one run: the
# targets are ratios, which a busy machine disturbs less than absolute rates.
set -euo pipefail
cd "$(dirname "$0")/.."

BENCH_DIR=${BENCH_DIR:-bin/bench}
BENCH_DURATION=${BENCH_DURATION:-10s}
BENCH_WARMUP=${BENCH_WARMUP:-2s}
BENCH_CONCURRENCY=${BENCH_CONCURRENCY:-16}
BENCH_COUNT=${BENCH_COUNT:-1}
BENCH_GOTEST=${BENCH_GOTEST:-1} # 0 skips the Go benchmarks (and reuses gobench.txt)
SERVER_CPU=${SERVER_CPU:-0}
LOAD_CPU=${LOAD_CPU:-1}
GO=${GO:-go}

for tool in taskset redis-server "$GO"; do
  command -v "$tool" >/dev/null || { echo "bench: $tool is required" >&2; exit 1; }
done
mkdir -p "$BENCH_DIR"
BENCH_DIR=$(cd "$BENCH_DIR" && pwd)

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
}
trap cleanup EXIT

# 1. Go benchmarks: every package with a Benchmark function.
if [ "$BENCH_GOTEST" = 1 ]; then
  pkgs=$(git ls-files '*_test.go' | xargs grep -l '^func Benchmark' | xargs -n1 dirname | sort -u | sed 's|^|./|')
  echo "bench: go test -bench . -benchmem -count $BENCH_COUNT $(echo $pkgs)"
  $GO test -run '^$' -bench . -benchmem -count "$BENCH_COUNT" -timeout 30m $pkgs | tee "$BENCH_DIR/gobench.txt"
fi

# 2. Binaries: the server with -tags pprof (profiles on a loopback port only when
#    LATCHKEY_PPROF_ADDR is set), and loadgen.
$GO build -tags pprof -o "$BENCH_DIR/latchkey" .
$GO build -o "$BENCH_DIR/loadgen" ./hack/loadgen

redis_port=$(free_port)
taskset -c "$LOAD_CPU" redis-server --port "$redis_port" --bind 127.0.0.1 --save '' --appendonly no \
  --logfile "$BENCH_DIR/redis.log" &
pids+=($!)

port=$(free_port)
pprof_port=$(free_port)
issuer="http://127.0.0.1:$port"
# --dev alone logs every request at debug level; the benchmark logs at info, as production does.
LATCHKEY_PPROF_ADDR="127.0.0.1:$pprof_port" GOMAXPROCS=1 taskset -c "$SERVER_CPU" \
  "$BENCH_DIR/latchkey" --dev --listen "127.0.0.1:$port" --redis-url "redis://127.0.0.1:$redis_port/0" \
  --metrics-bind-address 0 --health-probe-bind-address 0 --zap-log-level info \
  >"$BENCH_DIR/server.log" 2>&1 &
server_pid=$!
pids+=($server_pid)

for _ in $(seq 100); do
  curl -fsS "$issuer/.well-known/openid-configuration" >/dev/null 2>&1 && break
  sleep 0.1
done
curl -fsS "$issuer/.well-known/openid-configuration" >/dev/null

results="$BENCH_DIR/results.jsonl"
: >"$results"
common=(-issuer "$issuer" -c "$BENCH_CONCURRENCY" -d "$BENCH_DURATION" -warmup "$BENCH_WARMUP")

# 3a. In process, on the server's CPU while the server idles: the limits.
for w in raw-sign raw-verify raw-sign-eddsa raw-sign-rs256 verify tls-handshake; do
  echo "bench: $w (CPU $SERVER_CPU, in process)"
  GOMAXPROCS=1 taskset -c "$SERVER_CPU" "$BENCH_DIR/loadgen" -workload "$w" "${common[@]}" | tee -a "$results"
done
# 3b. Over HTTP: loadgen on the other CPU.
for w in cc refresh introspect jwks code; do
  echo "bench: $w (server on CPU $SERVER_CPU, loadgen on CPU $LOAD_CPU)"
  GOMAXPROCS=1 taskset -c "$LOAD_CPU" "$BENCH_DIR/loadgen" -workload "$w" "${common[@]}" -server-pid "$server_pid" | tee -a "$results"
done

# 4. Profiles, from separate runs so that sampling does not touch the measured ones.
mkdir -p "$BENCH_DIR/profiles"
for w in cc refresh introspect; do
  echo "bench: profiling the server under $w"
  GOMAXPROCS=1 taskset -c "$LOAD_CPU" "$BENCH_DIR/loadgen" -workload "$w" -issuer "$issuer" \
    -c "$BENCH_CONCURRENCY" -d 8s -warmup 1s >/dev/null &
  lg=$!
  sleep 1.5
  curl -fsS -o "$BENCH_DIR/profiles/$w.pprof" "http://127.0.0.1:$pprof_port/debug/pprof/profile?seconds=6"
  wait "$lg"
  # Cumulative top, cut to the frames that say where a request's CPU goes.
  $GO tool pprof -top -cum -nodecount 45 "$BENCH_DIR/latchkey" "$BENCH_DIR/profiles/$w.pprof" 2>/dev/null |
    sed -n '/flat%/,$p' >"$BENCH_DIR/profiles/$w.top.txt"
done

# 5. The report.
"$BENCH_DIR/loadgen" report -results "$results" -gobench "$BENCH_DIR/gobench.txt" \
  -profiles "$BENCH_DIR/profiles" -commit "$(git rev-parse --short HEAD)$(git diff --quiet HEAD -- . ':!docs' || echo '-dirty')" \
  -out docs/benchmarks.md -svg docs/images/benchmarks.svg
echo "bench: wrote docs/benchmarks.md and docs/images/benchmarks.svg (raw data in $BENCH_DIR)"
