#!/usr/bin/env bash
# Our sfuserver against the raw forwarder (examples/raw_forwarder.rs: receive, SRTP decrypt,
# per-subscriber header rewrite and SRTP encrypt, send — the minimal work of any SFU, the
# physical ceiling of this machine), in alternating A/B rounds, then the stepping scenarios of
# `meeting-appliance loadtest` (meeting, fanout, audio) for the highest load that holds.
#
# Server (the appliance, one media worker; the forwarder's thread) on CPU 1, generator on
# CPU 0; everything inside a private network namespace, on loopback. Figures: forwarded RTP
# packets/s, and forwarded packets per server CPU-second (the fairest figure when the offered
# load does not saturate the server), medians over the rounds, ratio ours/raw. Janus is NOT
# driven here yet (BENCHMARKS.md says so). A figure to read, not a test: the box is shared.
#
#   scripts/bench-sfu.sh                          # release build (built if missing)
#   ROUNDS=5 FANOUT=50 SECS=10 STEP=0 scripts/bench-sfu.sh
set -euo pipefail
cd "$(dirname "$0")/.."

ROUNDS=${ROUNDS:-3}
FANOUT=${FANOUT:-50}          # subscribers of the one publisher in the A/B rounds
VIDEO_KBPS=${VIDEO_KBPS:-1000}
SECS=${SECS:-8}
STEP=${STEP:-1}               # also run the stepping scenarios
SERVER_CPU=${SERVER_CPU:-1}
GEN_CPU=${GEN_CPU:-0}
BIN=${BIN:-target/release/meeting-appliance}
RAW=${RAW:-target/release/examples/raw_forwarder}
OUT=${OUT:-target/bench}

if [ "${BENCH_IN_NETNS:-}" != 1 ]; then
  for t in taskset unshare python3 curl; do
    command -v "$t" >/dev/null || { echo "bench-sfu: $t missing" >&2; exit 1; }
  done
  if [ ! -x "$BIN" ] || [ ! -x "$RAW" ]; then
    echo "bench-sfu: building $BIN and $RAW (release)" >&2
    nice -n 10 cargo build --release --bin meeting-appliance --example raw_forwarder >&2
  fi
  mkdir -p "$OUT"
  export BENCH_IN_NETNS=1 BIN="$(realpath "$BIN")" RAW="$(realpath "$RAW")" OUT="$(realpath "$OUT")"
  exec unshare -n -- "$0" "$@"
fi

ip link set lo up
WORK=$(mktemp -d /tmp/bench-sfu.XXXXXX)
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

PORT=18081
MEETING_SFU__WORKERS=1 MEETING_SFU__UDP_PORT=0 MEETING_TURN__PORT=0 MEETING_TURN__TLS_PORT=0 \
MEETING_LOG__LEVEL=warn NO_COLOR=1 \
  taskset -c "$SERVER_CPU" "$BIN" --dataDir "$WORK/app" --listen "127.0.0.1:$PORT" \
  >"$WORK/app.log" 2>&1 &
APP=$!; PIDS+=("$APP")
URL="http://127.0.0.1:$PORT"
for _ in $(seq 300); do grep -q "listening on" "$WORK/app.log" 2>/dev/null && break; sleep 0.1; done
grep -q "listening on" "$WORK/app.log" || { echo "bench-sfu: appliance did not start" >&2; tail "$WORK/app.log" >&2; exit 1; }

# Sign in with the code the dev-mode appliance writes to its log (no mail server).
curl -sf -XPOST -H 'content-type: application/json' -d '{"email":"bench@corp.test"}' "$URL/api/v1/auth/code" >/dev/null
for _ in $(seq 50); do grep -q "Your sign-in code is" "$WORK/app.log" && break; sleep 0.1; done
CODE=$(grep -o "Your sign-in code is [0-9A-Za-z]*" "$WORK/app.log" | tail -1 | awk '{print substr($5,1,6)}')
TOKEN=$(curl -sf -XPOST -H 'content-type: application/json' \
  -d "{\"email\":\"bench@corp.test\",\"code\":\"$CODE\"}" "$URL/api/v1/auth/verify" |
  python3 -c 'import json,sys; print(json.load(sys.stdin)["token"])')
export MEETING_LOADTEST_TOKEN=$TOKEN

lt() { taskset -c "$GEN_CPU" "$BIN" loadtest --url "$URL" --server-pid "$APP" "$@"; }

# ours -> "pps pps_per_core cpu p50 p99 loss"
ours() {
  lt --scenario fanout --steps "$FANOUT" --video-kbps "$VIDEO_KBPS" --duration "${SECS}s" \
    --json "$WORK/ours.json" >/dev/null 2>"$WORK/ours.err" || { cat "$WORK/ours.err" >&2; exit 1; }
  python3 - "$WORK/ours.json" <<'PY'
import json, sys
s = json.load(open(sys.argv[1]))["steps"][0]
sv = s.get("server") or {}
print(f'{s["forwarded_pps"]:.0f} {sv.get("pps_per_core", 0):.0f} {sv.get("cpu_cores", 0):.2f} '
      f'{s["latency"]["p50_us"]} {s["latency"]["p99_us"]} {s["loss_pct"]:.3f}')
PY
}
# raw -> "pps pps_per_core cpu - - -"
raw() {
  "$RAW" --subscribers "$FANOUT" --seconds "$SECS" --server-cpu "$SERVER_CPU" --gen-cpu "$GEN_CPU" |
    python3 -c '
import sys
kv = dict(x.split("=") for x in sys.stdin.read().split()[1:])
print(kv["out_pps"], kv["out_pps_per_core"], kv["cpu_cores"], "-", "-", "-")'
}

echo "bench-sfu: $ROUNDS rounds, fanout 1 -> $FANOUT, video $VIDEO_KBPS kbit/s, ${SECS} s each; server on CPU $SERVER_CPU, generator on CPU $GEN_CPU"
printf '%-6s %-5s %10s %12s %6s %8s %8s %7s\n' round who "pkt/s" "pkt/cpu-s" cores "p50 us" "p99 us" "loss%"
OURS_RES=(); RAW_RES=()
for r in $(seq "$ROUNDS"); do
  if [ $((r % 2)) = 1 ]; then order="ours raw"; else order="raw ours"; fi
  for s in $order; do
    if [ "$s" = ours ]; then res=$(ours); OURS_RES+=("$res"); else res=$(raw); RAW_RES+=("$res"); fi
    read -r a b c d e f <<<"$res"
    printf '%-6s %-5s %10s %12s %6s %8s %8s %7s\n' "$r" "$s" "$a" "$b" "$c" "$d" "$e" "$f"
  done
done
python3 - "$(printf '%s\n' "${OURS_RES[@]}")" "$(printf '%s\n' "${RAW_RES[@]}")" <<'PY'
import statistics, sys
def col(block, i):
    return [float(l.split()[i]) for l in block.strip().splitlines()]
ours, raw = sys.argv[1], sys.argv[2]
for i, name in [(0, "forwarded pkt/s"), (1, "forwarded pkt per server CPU-second")]:
    a, b = statistics.median(col(ours, i)), statistics.median(col(raw, i))
    print(f"median {name}: ours {a:.0f}, raw forwarder {b:.0f}, ratio ours/raw {a / b if b else float('nan'):.2f}")
PY

if [ "$STEP" = 1 ]; then
  for sc in meeting fanout audio; do
    echo "--- loadtest --scenario $sc (stepping until loss > 1 % or p99 > 5 ms)"
    lt --scenario "$sc" --video-kbps "$VIDEO_KBPS" --duration "${SECS}s" --json "$OUT/loadtest-$sc.json" 2>/dev/null || true
  done
fi
echo "server after the runs: VmRSS $(awk '/VmRSS/ {printf "%.1f", $2/1024}' /proc/$APP/status) MB, peak $(awk '/VmHWM/ {printf "%.1f", $2/1024}' /proc/$APP/status) MB"
