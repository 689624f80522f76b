#!/usr/bin/env bash
# Our sfuserver against Janus (Debian's janus, videoroom plugin, driven by the same generator
# through its HTTP API) and the raw forwarder (examples/raw_forwarder.rs: receive, SRTP
# decrypt, per-subscriber header rewrite and SRTP encrypt, send — the minimal work of any
# SFU, the physical ceiling of this machine), in rounds whose order rotates, then the stepping
# scenarios of `meeting-appliance loadtest` (meeting, fanout, audio) against ours.
#
# Servers (the appliance with one media worker; Janus with JANUS_LOOPS shared media loops;
# the forwarder's thread) on CPU 1, generator on CPU 0; everything inside a private network
# namespace: ours on loopback, Janus on a veth pair made inside it (Janus cannot use `lo` for
# media). Figures: forwarded RTP packets/s and forwarded packets per server CPU-second (the
# fairest figure when the offered load does not saturate the server), medians over the
# rounds, ratios ours/raw and ours/Janus; then one saturating fanout (SAT subscribers) each
# for ours and Janus: what is delivered when the offered load exceeds one core.
# A figure to read, not a test.
#
#   scripts/bench-sfu.sh                          # release build (built if missing)
#   ROUNDS=5 FANOUT=50 SECS=10 STEP=0 JANUS_LOOPS=1 scripts/bench-sfu.sh
set -euo pipefail
cd "$(dirname "$0")/.."

ROUNDS=${ROUNDS:-3}
FANOUT=${FANOUT:-50}          # subscribers of the one publisher in the A/B rounds
VIDEO_KBPS=${VIDEO_KBPS:-1000}
SECS=${SECS:-8}
STEP=${STEP:-1}               # also run the stepping scenarios
SAT=${SAT:-300}               # subscribers in the saturating fanout (0: skip)
JANUS_LOOPS=${JANUS_LOOPS:-1} # Janus event_loops ("" = Janus' default, a thread per handle)
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
HAVE_JANUS=0
if command -v janus >/dev/null; then
  HAVE_JANUS=1
  ip link add jv0 type veth peer name jv1
  ip addr add 10.99.0.1/24 dev jv0
  ip link set jv0 up; ip link set jv1 up
fi
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
for _ in $(seq 300); do curl -sf "http://127.0.0.1:$PORT/healthz" >/dev/null && break; sleep 0.1; done
curl -sf "http://127.0.0.1:$PORT/healthz" >/dev/null || { echo "bench-sfu: appliance did not start" >&2; tail "$WORK/app.log" >&2; exit 1; }

# Sign in with the code the dev-mode appliance writes to its log (no mail server).
curl -sf -XPOST -H 'content-type: application/json' -d '{"email":"bench@corp.test"}' "$URL/api/v1/auth/code" >/dev/null
for _ in $(seq 50); do grep -q "Your sign-in code is" "$WORK/app.log" && break; sleep 0.1; done
CODE=$(grep -o "Your sign-in code is [0-9A-Za-z]*" "$WORK/app.log" | tail -1 | awk '{print substr($5,1,6)}')
TOKEN=$(curl -sf -XPOST -H 'content-type: application/json' \
  -d "{\"email\":\"bench@corp.test\",\"code\":\"$CODE\"}" "$URL/api/v1/auth/verify" |
  python3 -c 'import json,sys; print(json.load(sys.stdin)["token"])')
export MEETING_LOADTEST_TOKEN=$TOKEN

JANUS_API=http://10.99.0.1:8088/janus
if [ "$HAVE_JANUS" = 1 ]; then
  scripts/janus-conf.sh "$WORK/janus" 10.99.0.1 jv0 "$JANUS_LOOPS"
  taskset -c "$SERVER_CPU" janus -C "$WORK/janus/janus.jcfg" -F "$WORK/janus" >"$WORK/janus.log" 2>&1 &
  JANUS=$!; PIDS+=("$JANUS")
  for _ in $(seq 100); do curl -sf "$JANUS_API/info" >/dev/null && break; sleep 0.1; done
  curl -sf "$JANUS_API/info" >/dev/null || { echo "bench-sfu: Janus did not start" >&2; tail "$WORK/janus.log" >&2; exit 1; }
else
  echo "bench-sfu: janus not installed (apt install janus): Janus rounds skipped" >&2
fi

lt() { taskset -c "$GEN_CPU" "$BIN" loadtest --url "$URL" --server-pid "$APP" "$@"; }

# fanout_json FILE -> "pps pps_per_core cpu p50 p99 loss"
fanout_json() {
  python3 - "$1" <<'PY'
import json, sys
s = json.load(open(sys.argv[1]))["steps"][0]
sv = s.get("server") or {}
loss = max(s["loss_pct"], s["light_loss_pct"])
print(f'{s["forwarded_pps"]:.0f} {sv.get("pps_per_core", 0):.0f} {sv.get("cpu_cores", 0):.2f} '
      f'{s["latency"]["p50_us"]} {s["latency"]["p99_us"]} {loss:.3f}')
PY
}
# ours [M] -> "pps pps_per_core cpu p50 p99 loss"
ours() {
  lt --scenario fanout --steps "${1:-$FANOUT}" --video-kbps "$VIDEO_KBPS" --duration "${SECS}s" \
    --json "$WORK/ours.json" >/dev/null 2>"$WORK/ours.err" || { cat "$WORK/ours.err" >&2; exit 1; }
  fanout_json "$WORK/ours.json"
}
# janus [M] -> the same, the same generator driving Janus' videoroom
janus_run() {
  taskset -c "$GEN_CPU" "$BIN" loadtest --janus "$JANUS_API" --local-ip 10.99.0.1 --server-pid "$JANUS" \
    --scenario fanout --steps "${1:-$FANOUT}" --video-kbps "$VIDEO_KBPS" --duration "${SECS}s" \
    --json "$WORK/janus.json" >/dev/null 2>"$WORK/janus.err" || { cat "$WORK/janus.err" >&2; exit 1; }
  fanout_json "$WORK/janus.json"
}
# raw -> "pps pps_per_core cpu - - -"
raw() {
  "$RAW" --subscribers "$FANOUT" --seconds "$SECS" --server-cpu "$SERVER_CPU" --gen-cpu "$GEN_CPU" |
    python3 -c '
import sys
kv = dict(x.split("=") for x in sys.stdin.read().split()[1:])
print(kv["out_pps"], kv["out_pps_per_core"], kv["cpu_cores"], "-", "-", "-")'
}

echo "bench-sfu: $ROUNDS rounds, fanout 1 -> $FANOUT, video $VIDEO_KBPS kbit/s, ${SECS} s each; server on CPU $SERVER_CPU, generator on CPU $GEN_CPU; Janus event_loops=${JANUS_LOOPS:-default}"
printf '%-6s %-6s %10s %12s %6s %8s %8s %7s\n' round who "pkt/s" "pkt/cpu-s" cores "p50 us" "p99 us" "loss%"
WHO=(ours raw); [ "$HAVE_JANUS" = 1 ] && WHO+=(janus)
OURS_RES=(); RAW_RES=(); JANUS_RES=()
for r in $(seq "$ROUNDS"); do
  n=${#WHO[@]}; order=()
  for i in $(seq 0 $((n - 1))); do order+=("${WHO[$(((i + r - 1) % n))]}"); done
  for s in "${order[@]}"; do
    case $s in
      ours) res=$(ours); OURS_RES+=("$res") ;;
      raw) res=$(raw); RAW_RES+=("$res") ;;
      janus) res=$(janus_run); JANUS_RES+=("$res") ;;
    esac
    read -r a b c d e f <<<"$res"
    printf '%-6s %-6s %10s %12s %6s %8s %8s %7s\n' "$r" "$s" "$a" "$b" "$c" "$d" "$e" "$f"
  done
done
python3 - "$(printf '%s\n' "${OURS_RES[@]}")" "$(printf '%s\n' "${RAW_RES[@]}")" "$(printf '%s\n' "${JANUS_RES[@]}")" <<'PY'
import statistics, sys
def col(block, i):
    return [float(l.split()[i]) for l in block.strip().splitlines() if l.strip()]
ours, raw, janus = sys.argv[1], sys.argv[2], sys.argv[3]
for i, name in [(0, "forwarded pkt/s"), (1, "forwarded pkt per server CPU-second")]:
    a = statistics.median(col(ours, i))
    line = f"median {name}: ours {a:.0f}"
    for who, block in [("raw forwarder", raw), ("Janus", janus)]:
        if col(block, i):
            b = statistics.median(col(block, i))
            line += f", {who} {b:.0f} (ours/{who.split()[0]} {a / b if b else float('nan'):.2f})"
    print(line)
PY

if [ "$SAT" != 0 ]; then
  echo "--- saturating fanout 1 -> $SAT (offered load above one core): delivered"
  printf '%-6s %10s %12s %6s %8s %8s %7s\n' who "pkt/s" "pkt/cpu-s" cores "p50 us" "p99 us" "loss%"
  printf '%-6s %10s %12s %6s %8s %8s %7s\n' ours $(ours "$SAT")
  [ "$HAVE_JANUS" = 1 ] && printf '%-6s %10s %12s %6s %8s %8s %7s\n' janus $(janus_run "$SAT")
fi

if [ "$STEP" = 1 ]; then
  for sc in meeting fanout audio; do
    echo "--- loadtest --scenario $sc (stepping until loss > 1 % or p99 > 5 ms)"
    lt --scenario "$sc" --video-kbps "$VIDEO_KBPS" --duration "${SECS}s" --json "$OUT/loadtest-$sc.json" 2>/dev/null || true
  done
fi
echo "server after the runs: VmRSS $(awk '/VmRSS/ {printf "%.1f", $2/1024}' /proc/$APP/status) MB, peak $(awk '/VmHWM/ {printf "%.1f", $2/1024}' /proc/$APP/status) MB"
