#!/usr/bin/env bash
# Throughput of our turnserver against coturn under the same coturn load client, in one run.
#
# Both servers get the same secret and the same `turnutils_uclient` load (REST credentials,
# UDP, an echoing `turnutils_peer`), in alternating A/B rounds after one warm-up run each
# (coturn's own practice: compare received messages, alternate, discard the first run).
# Server on CPU 1, client and peer on CPU 0; everything inside a private network namespace,
# on loopback. Prints per round and median: messages echoed per second and Mbit/s each way
# (over the whole uclient run: connect, send, drain), loss, server CPU seconds, and messages
# per server CPU-second (the throughput one core gives: the fairest figure when the offered
# load does not saturate the server), with the ratio ours/coturn; then both servers' memory,
# and again after a flood of unauthenticated Allocates. Ours is the whole appliance process
# (apiserver with SQLite + turnserver). A figure to read, not a test: the box is shared.
#
#   scripts/bench-turn.sh                       # release build (built if missing)
#   ROUNDS=5 CLIENTS=20 MSGS=3000 LEN=1000 INTERVAL=1 TCP=1 scripts/bench-turn.sh
set -euo pipefail
cd "$(dirname "$0")/.."

ROUNDS=${ROUNDS:-3}
CLIENTS=${CLIENTS:-20}
MSGS=${MSGS:-3000}
LEN=${LEN:-1000}
INTERVAL=${INTERVAL:-1}
TCP=${TCP:-0}
SERVER_CPU=${SERVER_CPU:-1}
CLIENT_CPU=${CLIENT_CPU:-0}
BIN=${BIN:-target/release/meeting-appliance}

if [ "${BENCH_IN_NETNS:-}" != 1 ]; then
  for t in turnserver turnutils_uclient turnutils_peer taskset unshare python3; do
    command -v "$t" >/dev/null || { echo "bench-turn: $t missing (scripts/test-deps.sh)" >&2; exit 1; }
  done
  if [ ! -x "$BIN" ]; then
    echo "bench-turn: building $BIN (release)" >&2
    nice -n 10 cargo build --release --bin meeting-appliance >&2
  fi
  export BENCH_IN_NETNS=1 BIN="$(realpath "$BIN")"
  exec unshare -n -- "$0" "$@"
fi

ip link set lo up
WORK=$(mktemp -d /tmp/bench-turn.XXXXXX)
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

SECRET=bench-deployment-secret
# Our TURN key: HKDF-SHA256(salt "meeting-appliance v1", the secret, info "turn-rest"), hex
# (src/tokens.rs); coturn gets it as its static-auth-secret.
KEY=$(python3 - "$SECRET" <<'PY'
import hashlib, hmac, sys
prk = hmac.new(b"meeting-appliance v1", sys.argv[1].encode(), hashlib.sha256).digest()
print(hmac.new(prk, b"turn-rest\x01", hashlib.sha256).hexdigest())
PY
)
OURS_PORT=3478
COTURN_PORT=3479
PEER_PORT=3480

wait_port() { # wait_port PORT (TCP listening), 20 s at most
  for _ in $(seq 200); do
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    sleep 0.1
  done
  echo "bench-turn: nothing listens on $1" >&2
  exit 1
}

mkdir -p "$WORK/ours"
MEETING_ROLES=apiserver,turnserver \
MEETING_TURN__ALLOWED_PEERS=127.0.0.1/32 \
MEETING_TURN__MAX_ALLOCATIONS_PER_USER=100000 \
MEETING_TURN__MAX_BANDWIDTH_KBPS=0 \
MEETING_TURN__UNAUTHENTICATED_PER_SECOND=100000 \
MEETING_LOG__LEVEL=warn \
  taskset -c "$SERVER_CPU" "$BIN" --dataDir "$WORK/ours" --listen 127.0.0.1:18080 \
  --port "$OURS_PORT" --secret "$SECRET" >"$WORK/ours.log" 2>&1 &
OURS=$!; PIDS+=("$OURS")

taskset -c "$SERVER_CPU" turnserver -n --listening-ip=127.0.0.1 --listening-port="$COTURN_PORT" \
  --relay-ip=127.0.0.1 --min-port=49152 --max-port=65535 --use-auth-secret \
  --static-auth-secret="$KEY" --realm=bench --fingerprint --no-tls --no-dtls --no-cli \
  --allow-loopback-peers --pidfile="$WORK/coturn.pid" --log-file=stdout --simple-log \
  --no-stdout-log >"$WORK/coturn.log" 2>&1 &
COTURN=$!; PIDS+=("$COTURN")

taskset -c "$CLIENT_CPU" turnutils_peer -L 127.0.0.1 -p "$PEER_PORT" >/dev/null 2>&1 &
PIDS+=("$!")
wait_port "$OURS_PORT"
wait_port "$COTURN_PORT"

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
rss_mb() { awk '/VmRSS/ {printf "%.1f", $2 / 1024}' "/proc/$1/status"; }
hwm_mb() { awk '/VmHWM/ {printf "%.1f", $2 / 1024}' "/proc/$1/status"; }
HZ=$(getconf CLK_TCK)

# run NAME PORT PID N -> prints "msgs_per_s mbit_s loss_pct cpu_s msgs_per_cpu_s"
run() {
  local name=$1 port=$2 pid=$3 n=$4 t0 t1 c0 c1 out
  local flags=(-p "$port" -e 127.0.0.1 -r "$PEER_PORT" -m "$CLIENTS" -n "$n" -l "$LEN" \
    -z "$INTERVAL" -c -W "$KEY" -u bench)
  [ "$TCP" = 1 ] && flags+=(-t)
  c0=$(cpu_ticks "$pid"); t0=$(date +%s.%N)
  out=$(taskset -c "$CLIENT_CPU" timeout 600 turnutils_uclient "${flags[@]}" 127.0.0.1 2>&1) || {
    echo "bench-turn: uclient against $name failed:" >&2; echo "$out" | tail -5 >&2; exit 1; }
  t1=$(date +%s.%N); c1=$(cpu_ticks "$pid")
  local recv lost
  recv=$(echo "$out" | grep -o 'tot_recv_msgs=[0-9]*' | tail -1 | cut -d= -f2)
  lost=$(echo "$out" | grep -o 'Total lost packets [0-9]* ([0-9.]*%)' | tail -1 | sed 's/.*(\(.*\)%)/\1/')
  python3 - "$recv" "$t0" "$t1" "$c0" "$c1" "$HZ" "$LEN" "${lost:-nan}" <<'PY'
import sys
recv, t0, t1, c0, c1, hz, ln, lost = sys.argv[1:]
recv = int(recv); wall = float(t1) - float(t0); cpu = (int(c1) - int(c0)) / int(hz)
print(f"{recv / wall:.0f} {recv * int(ln) * 8 / wall / 1e6:.1f} {lost} {cpu:.2f} {recv / cpu if cpu else 0:.0f}")
PY
}

echo "bench-turn: $ROUNDS rounds of $CLIENTS clients x $MSGS messages x $LEN bytes every ${INTERVAL} ms ($([ "$TCP" = 1 ] && echo TCP || echo UDP)), server on CPU $SERVER_CPU, client on CPU $CLIENT_CPU"
# Warm-up (discarded).
run ours "$OURS_PORT" "$OURS" 200 >/dev/null
run coturn "$COTURN_PORT" "$COTURN" 200 >/dev/null

printf '%-6s %-7s %10s %9s %7s %8s %12s\n' round server "msgs/s" "Mbit/s" "loss%" "cpu s" "msgs/cpu-s"
OURS_RES=(); COTURN_RES=()
for r in $(seq "$ROUNDS"); do
  # A/B, then B/A: neither server always runs on the warmer box.
  if [ $((r % 2)) = 1 ]; then order="ours coturn"; else order="coturn ours"; fi
  for s in $order; do
    if [ "$s" = ours ]; then res=$(run ours "$OURS_PORT" "$OURS" "$MSGS"); OURS_RES+=("$res")
    else res=$(run coturn "$COTURN_PORT" "$COTURN" "$MSGS"); COTURN_RES+=("$res"); fi
    read -r mps mbit loss cpu mpc <<<"$res"
    printf '%-6s %-7s %10s %9s %7s %8s %12s\n' "$r" "$s" "$mps" "$mbit" "$loss" "$cpu" "$mpc"
  done
done

python3 - "$(printf '%s\n' "${OURS_RES[@]}")" "$(printf '%s\n' "${COTURN_RES[@]}")" <<'PY'
import statistics, sys
def col(block, i):
    return [float(l.split()[i]) for l in block.strip().splitlines()]
ours, cot = sys.argv[1], sys.argv[2]
for i, name in [(0, "messages/s"), (1, "Mbit/s each way"), (4, "messages per server CPU-second")]:
    a, b = statistics.median(col(ours, i)), statistics.median(col(cot, i))
    print(f"median {name}: ours {a:.1f}, coturn {b:.1f}, ratio ours/coturn {a / b if b else float('nan'):.2f}")
PY
echo "memory after the rounds: ours VmRSS $(rss_mb "$OURS") MB (peak $(hwm_mb "$OURS") MB; the whole process: apiserver with SQLite + turnserver), coturn VmRSS $(rss_mb "$COTURN") MB (peak $(hwm_mb "$COTURN") MB)"

# Memory under a flood of unauthenticated Allocates (each one makes the turn crate store a
# nonce forever, unless something in front of it answers them: TURN-NOTES.md).
FLOOD=${FLOOD:-200000}
if [ "$FLOOD" -gt 0 ]; then
  flood() { # flood PORT
    taskset -c "$CLIENT_CPU" python3 - "$1" "$FLOOD" <<'PY'
import os, socket, sys
port, n = int(sys.argv[1]), int(sys.argv[2])
socks = []
for _ in range(64):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    s.setblocking(False)
    socks.append(s)
for i in range(n):
    m = b"\x00\x03\x00\x08\x21\x12\xa4\x42" + os.urandom(12) + b"\x00\x19\x00\x04\x11\x00\x00\x00"
    try:
        socks[i % 64].sendto(m, ("127.0.0.1", port))
    except BlockingIOError:
        pass
    if i % 64 == 63:
        for s in socks:  # read answers so the sockets keep sending
            try:
                while s.recv(2048):
                    pass
            except BlockingIOError:
                pass
PY
  }
  ob=$(rss_mb "$OURS"); cb=$(rss_mb "$COTURN")
  flood "$OURS_PORT"
  flood "$COTURN_PORT"
  sleep 2
  echo "after $FLOOD unauthenticated Allocates from 64 ports: ours VmRSS $ob -> $(rss_mb "$OURS") MB, coturn $cb -> $(rss_mb "$COTURN") MB"
fi
