#!/usr/bin/env bash
# The sfuserver's benchmark (issue 16's goals), with peers measured in the same run. A figure
# to read, not a test. Everything inside a private network namespace: ours on loopback, Janus
# on a veth pair made inside it (Janus cannot use `lo` for media).
#
#  A. ours vs Janus (Debian's janus, videoroom plugin, driven by the same generator through its
#     HTTP API) at fan-out 1->FANOUT and in MEET×MEET and BIG×BIG meetings (BIG at
#     BIG_KBPS video), plus the raw forwarder (examples/raw_forwarder.rs: receive, SRTP
#     decrypt, per-subscriber header rewrite and SRTP encrypt, send; with sendto and with
#     sendmmsg, saturated; and raw_paced: with sendmmsg at the generator's packet rate, its
#     receivers sleeping in epoll as the generator's do, i.e. the raw cost at ours' load) at
#     fan-out 1->FANOUT: ROUNDS rounds whose order rotates. Ours: one media
#     worker, audio top-K off (the same work as Janus), on CPU SERVER_CPU; Janus on that CPU
#     with JANUS_LOOPS media loops; the generator on CPU GEN_CPU.
#  B. the cross-worker cost: the same fan-out and MEET×MEET meeting on 1 worker and spread over
#     2 workers, both pinned to SERVER_CPU (rotating rounds).
#  C. audio top-K: an AUDIO-person audio-only meeting, one talker at a time, with K=3 and
#     with every stream forwarded (rotating rounds).
#  D. the server's own added latency at half of its saturating load: a fan-out sized so the
#     offered packets are half of what one core forwards (from A's median packets per CPU-s).
#  E. BIG×BIG at BIG_KBPS on the whole box: 2 workers, server and generator unpinned; end-to-
#     end latency, loss and server memory per participant.
#
# Figures: forwarded RTP packets/s, forwarded packets per server CPU-second (the fairest figure
# when the offered load does not saturate the server), medians over the rounds and ratios.
#
#   scripts/bench-sfu.sh                                   # release build (built if missing)
#   ROUNDS=5 FANOUT=100 SECS=10 PARTS=ABCDE scripts/bench-sfu.sh
set -euo pipefail
cd "$(dirname "$0")/.."

ROUNDS=${ROUNDS:-3}
FANOUT=${FANOUT:-100}         # subscribers of the one publisher
VIDEO_KBPS=${VIDEO_KBPS:-1000}
MEET=${MEET:-10}              # the middle meeting, at VIDEO_KBPS
BIG=${BIG:-25}                # the large meeting, at BIG_KBPS
BIG_KBPS=${BIG_KBPS:-250}
AUDIO=${AUDIO:-50}            # people in the audio-only top-K meeting
SECS=${SECS:-8}
PARTS=${PARTS:-ABCDE}
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

# start_app NAME PORT WORKERS TOPK CPUS: an appliance, signed in; sets APP_<NAME> (pid),
# URL_<NAME>, TOKEN_<NAME>.
start_app() {
  local name=$1 port=$2 workers=$3 topk=$4 cpus=$5
  # The generator joins hundreds of guests from one address and one account: the join rate
  # limits (meetings.joins_per_*_per_minute) are lifted for the benchmark.
  # Capacity (forwarded pkt/s the allocator plans with) lifted too: a round right after a
  # saturating one would otherwise be refused until the next load report.
  MEETING_SFU__WORKERS=$workers MEETING_SFU__AUDIO_TOP_K=$topk MEETING_SFU__UDP_PORT=0 \
  MEETING_SFU__CAPACITY_PPS=100000000 \
  MEETING_MEETINGS__JOINS_PER_USER_PER_MINUTE=0 MEETING_MEETINGS__JOINS_PER_IP_PER_MINUTE=0 \
  MEETING_TURN__PORT=0 MEETING_TURN__TLS_PORT=0 MEETING_LOG__LEVEL=warn NO_COLOR=1 \
    taskset -c "$cpus" "$BIN" --dataDir "$WORK/app-$name" --listen "127.0.0.1:$port" \
    >"$WORK/app-$name.log" 2>&1 &
  local pid=$!; PIDS+=("$pid")
  local url="http://127.0.0.1:$port"
  for _ in $(seq 300); do curl -sf "$url/healthz" >/dev/null && break; sleep 0.1; done
  curl -sf "$url/healthz" >/dev/null || { echo "bench-sfu: appliance $name did not start" >&2; tail "$WORK/app-$name.log" >&2; exit 1; }
  # Sign in with the code the dev-mode appliance writes to its log (no mail server).
  curl -sf -XPOST -H 'content-type: application/json' -d '{"email":"bench@corp.test"}' "$url/api/v1/auth/code" >/dev/null
  for _ in $(seq 50); do grep -q "Your sign-in code is" "$WORK/app-$name.log" && break; sleep 0.1; done
  local code token
  code=$(grep -o "Your sign-in code is [0-9A-Za-z]*" "$WORK/app-$name.log" | tail -1 | awk '{print substr($5,1,6)}')
  token=$(curl -sf -XPOST -H 'content-type: application/json' \
    -d "{\"email\":\"bench@corp.test\",\"code\":\"$code\"}" "$url/api/v1/auth/verify" |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["token"])')
  printf -v "APP_$name" '%s' "$pid"
  printf -v "URL_$name" '%s' "$url"
  printf -v "TOKEN_$name" '%s' "$token"
}

start_app one 18081 1 0 "$SERVER_CPU"          # A, B, D: one worker, top-K off
case $PARTS in *B*) start_app two 18082 2 0 "$SERVER_CPU" ;; esac        # B: two workers, one CPU
case $PARTS in *C*) start_app topk 18083 1 3 "$SERVER_CPU" ;; esac       # C: K = 3
case $PARTS in *E*) start_app box 18084 2 0 "0-1" ;; esac                # E: the whole box

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

# summary FILE -> "pps pps_per_core cores p50 p99 loss srv_p50 srv_p99 rss_per_participant_kib"
summary() {
  python3 - "$1" <<'PY'
import json, sys
s = json.load(open(sys.argv[1]))["steps"][0]
sv = s.get("server") or {}
sl = s.get("server_latency") or {}
loss = max(s["loss_pct"], s["light_loss_pct"])
if not s["all_ready"] or s["failures"]:
    loss = -1
print(f'{s["forwarded_pps"]:.0f} {sv.get("pps_per_core", 0):.0f} {sv.get("cpu_cores", 0):.2f} '
      f'{s["latency"]["p50_us"]} {s["latency"]["p99_us"]} {loss:.3f} '
      f'{sl.get("p50_us", "-")} {sl.get("p99_us", "-")} {sv.get("rss_per_participant_kib", 0):.0f}')
PY
}
# ours APP -- loadtest args -> summary
ours() {
  local app=$1; shift
  local pid_var=APP_$app url_var=URL_$app tok_var=TOKEN_$app
  MEETING_LOADTEST_TOKEN=${!tok_var} taskset -c "${LT_CPUS:-$GEN_CPU}" "$BIN" loadtest \
    --url "${!url_var}" --server-pid "${!pid_var}" --duration "${SECS}s" "$@" \
    --json "$WORK/r.json" >/dev/null 2>"$WORK/r.err" || { cat "$WORK/r.err" >&2; exit 1; }
  cp "$WORK/r.json" "$OUT/last-$app.json"
  summary "$WORK/r.json"
}
janus_run() {
  taskset -c "$GEN_CPU" "$BIN" loadtest --janus "$JANUS_API" --local-ip 10.99.0.1 --server-pid "$JANUS" \
    --duration "${SECS}s" "$@" --json "$WORK/j.json" >/dev/null 2>"$WORK/j.err" || { cat "$WORK/j.err" >&2; exit 1; }
  summary "$WORK/j.json"
}
# A subscriber gets ~VIDEO_KBPS/8/1.1 kB in ~1 100-byte packets plus 50 audio packets/s.
PER_SUB=$(python3 -c "print(round($VIDEO_KBPS*1000/8/1100*1.05 + 50))")
raw() {
  "$RAW" --subscribers "$FANOUT" --seconds "$SECS" --server-cpu "$SERVER_CPU" --gen-cpu "$GEN_CPU" --mmsg "$@" |
    python3 -c '
import sys
kv = dict(x.split("=") for x in sys.stdin.read().split()[1:])
print(kv["out_pps"], kv["out_pps_per_core"], kv["cpu_cores"], "- - - - - -")'
}
FAN=(--scenario fanout --steps "$FANOUT" --video-kbps "$VIDEO_KBPS")
MEETA=(--scenario meeting --steps "$MEET" --video-kbps "$VIDEO_KBPS")
BIGA=(--scenario meeting --steps "$BIG" --video-kbps "$BIG_KBPS")

header() { printf '%-6s %-14s %9s %10s %6s %8s %8s %7s %8s %8s %8s\n' round who "pkt/s" "pkt/cpu-s" cores "p50 us" "p99 us" "loss%" "srv p50" "srv p99" "KiB/pp"; }
row() { local r=$1 w=$2; shift 2; printf '%-6s %-14s %9s %10s %6s %8s %8s %7s %8s %8s %8s\n' "$r" "$w" "$@"; }
RES="$OUT/results.txt"; : >"$RES"
# run_rounds NAME... : each round runs every named case (function case_NAME) in rotating order
run_rounds() {
  local cases=("$@") n=${#@}
  for r in $(seq "$ROUNDS"); do
    for i in $(seq 0 $((n - 1))); do
      local c=${cases[$(((i + r - 1) % n))]}
      local res; res=$("case_$c")
      row "$r" "$c" $res
      echo "$c $res" >>"$RES"
    done
  done
}

case_ours_fanout() { ours one "${FAN[@]}"; }
case_janus_fanout() { janus_run "${FAN[@]}"; }
case_raw_sendto() { raw 0; }
case_raw_mmsg() { raw 1; }
case_raw_paced() { raw 1 --rate "$PER_SUB" --sleep-receivers 1; }
case_ours_meet() { ours one "${MEETA[@]}"; }
case_janus_meet() { janus_run "${MEETA[@]}"; }
case_ours_big() { ours one "${BIGA[@]}"; }
case_janus_big() { janus_run "${BIGA[@]}"; }
case_one_worker_fanout() { ours one "${FAN[@]}"; }
case_two_workers_fanout() { ours two "${FAN[@]}"; }
case_one_worker_meet() { ours one "${MEETA[@]}"; }
case_two_workers_meet() { ours two "${MEETA[@]}"; }
case_audio_all() { ours one --scenario meeting --no-video --talkers 1 --steps "$AUDIO"; }
case_audio_top3() { ours topk --scenario meeting --no-video --talkers 1 --audio-top-k 3 --steps "$AUDIO"; }

echo "bench-sfu: $ROUNDS rounds, ${SECS} s windows; server on CPU $SERVER_CPU, generator on CPU $GEN_CPU; Janus event_loops=${JANUS_LOOPS:-default}; load $(cut -d' ' -f1-3 /proc/loadavg)"
if [[ $PARTS == *A* ]]; then
  echo "--- A. fan-out 1->$FANOUT at $VIDEO_KBPS kbit/s, $MEET×$MEET at $VIDEO_KBPS kbit/s, $BIG×$BIG at $BIG_KBPS kbit/s; ours (1 worker, top-K off) vs Janus; raw forwarder"
  header
  A=(ours_fanout raw_sendto raw_mmsg raw_paced ours_meet ours_big)
  [ "$HAVE_JANUS" = 1 ] && A+=(janus_fanout janus_meet janus_big)
  run_rounds "${A[@]}"
fi
if [[ $PARTS == *B* ]]; then
  echo "--- B. the same load on 1 worker and on 2 workers, both on CPU $SERVER_CPU"
  header
  run_rounds one_worker_fanout two_workers_fanout one_worker_meet two_workers_meet
fi
if [[ $PARTS == *C* ]]; then
  echo "--- C. $AUDIO-person audio-only meeting, one talker at a time: top-K 3 vs every stream"
  header
  run_rounds audio_all audio_top3
fi
if [[ $PARTS == *D* ]]; then
  # PPC=… gives the saturating packets per CPU-s when part A is not run.
  PPC=${PPC:-$(python3 - "$RES" <<'PY'
import statistics, sys
v = [float(l.split()[2]) for l in open(sys.argv[1]) if l.startswith("ours_fanout ")]
print(int(statistics.median(v)) if v else 0)
PY
)}
  if [ "$PPC" -gt 0 ]; then
    HALF=$(python3 -c "print(max(1, round($PPC/2/$PER_SUB)))")
    echo "--- D. half of the saturating load: ours forwards $PPC pkt per CPU-s at 1->$FANOUT; 1->$HALF offers half of that"
    header
    for r in $(seq "$ROUNDS"); do res=$(ours one --scenario fanout --steps "$HALF" --video-kbps "$VIDEO_KBPS"); row "$r" "half_load" $res; echo "half_load $res" >>"$RES"; done
  fi
fi
if [[ $PARTS == *E* ]]; then
  echo "--- E. $BIG×$BIG at $BIG_KBPS kbit/s on the whole box (2 workers, nothing pinned)"
  header
  for r in $(seq "$ROUNDS"); do res=$(LT_CPUS=0-1 ours box "${BIGA[@]}" --threads 2); row "$r" "box_big" $res; echo "box_big $res" >>"$RES"; done
fi

python3 - "$RES" <<'PY'
import statistics, sys
rows = {}
for l in open(sys.argv[1]):
    f = l.split()
    rows.setdefault(f[0], []).append(f[1:])
def med(case, i):
    v = [float(r[i]) for r in rows.get(case, []) if r[i] not in ("-",)]
    return statistics.median(v) if v else float("nan")
def ratio(a, b, what="pkt per server CPU-s"):
    x, y = med(a, 1), med(b, 1)
    if x == x and y == y and y:
        print(f"  {a} / {b}: {x:.0f} / {y:.0f} {what} = {x / y:.2f}")
print("--- medians")
for c in rows:
    print(f"  {c}: {med(c, 0):.0f} pkt/s, {med(c, 1):.0f} pkt/CPU-s, {med(c, 2):.2f} cores, "
          f"e2e p50/p99 {med(c, 3):.0f}/{med(c, 4):.0f} us, loss {med(c, 5):.3f} %, "
          f"server p50/p99 {med(c, 6):.0f}/{med(c, 7):.0f} us, {med(c, 8):.0f} KiB/participant")
print("--- ratios (medians)")
for a, b in [("ours_fanout", "janus_fanout"), ("ours_meet", "janus_meet"), ("ours_big", "janus_big"),
             ("ours_fanout", "raw_sendto"), ("ours_fanout", "raw_mmsg"), ("ours_fanout", "raw_paced"),
             ("two_workers_fanout", "one_worker_fanout"), ("two_workers_meet", "one_worker_meet")]:
    ratio(a, b)
x, y = med("audio_top3", 2), med("audio_all", 2)
if x == x and y == y and y:
    print(f"  audio_top3 / audio_all server cores: {x:.3f} / {y:.3f} = {x / y:.3f} (K/49 = {3/49:.3f})")
PY
for a in one two topk box; do
  v=APP_$a; [ -n "${!v:-}" ] || continue
  echo "server $a after the runs: VmRSS $(awk '/VmRSS/ {printf "%.1f", $2/1024}' /proc/${!v}/status) MB, peak $(awk '/VmHWM/ {printf "%.1f", $2/1024}' /proc/${!v}/status) MB"
done
