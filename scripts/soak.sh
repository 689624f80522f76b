#!/usr/bin/env bash
# Soak: meetings come and go for a while against one running appliance (release build), with
# the load generator's participants (str0m peers: ICE, DTLS, SRTP, RTCP like browsers). Every
# 10 s the appliance's RSS and open file descriptors are sampled; at the end the script prints
# their first and last 5 minutes and checks that every participation was recorded (entered and
# left). A benchmark, not a CI test: `scripts/soak.sh [minutes, default 30]`.
# Loopback only. Results: BENCHMARKS.md ("Soak").
set -euo pipefail
cd "$(dirname "$0")/.."
MINUTES=${1:-30}
BIN=${BIN:-target/release/meeting-appliance}
[ -x "$BIN" ] || { echo "soak: build first: cargo build --release" >&2; exit 1; }
WORK=$(mktemp -d /tmp/soak.XXXXXX)
trap 'kill "$APP" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$WORK"' EXIT
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')

"$BIN" --dataDir "$WORK/data" --listen "127.0.0.1:$PORT" --udpPort 0 >"$WORK/app.log" 2>&1 &
APP=$!
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$PORT/healthz" >/dev/null && break; sleep 0.2; done

# Sign in from the dev-mode log (no mail server: the code is written there).
curl -sf -X POST -H 'Content-Type: application/json' -d '{"email":"soak@corp.test"}' \
  "http://127.0.0.1:$PORT/api/v1/auth/code"
sleep 0.5
CODE=$(grep -ao 'Your sign-in code is [0-9]\{6\}' "$WORK/app.log" | tail -1 | awk '{print $5}')
TOKEN=$(curl -sf -X POST -H 'Content-Type: application/json' \
  -d "{\"email\":\"soak@corp.test\",\"code\":\"$CODE\"}" \
  "http://127.0.0.1:$PORT/api/v1/auth/verify" | python3 -c 'import json,sys; print(json.load(sys.stdin)["token"])')

sample() {
  local rss fds
  rss=$(awk '/VmRSS/ {print $2}' "/proc/$APP/status")
  fds=$(ls "/proc/$APP/fd" | wc -l)
  echo "$(date +%s) $rss $fds" >>"$WORK/samples"
}

END=$(( $(date +%s) + MINUTES * 60 ))
ROUND=0
while [ "$(date +%s)" -lt "$END" ]; do
  ROUND=$((ROUND + 1))
  # Meetings of 5 and 10 people, each a fresh meeting, one minute of media each, then all leave.
  "$BIN" loadtest --url "http://127.0.0.1:$PORT" --token "$TOKEN" --scenario meeting \
    --steps 5,10 --duration 60s --warmup 5s --local-ip 127.0.0.1 --keep-going \
    >"$WORK/round-$ROUND.txt" 2>&1 &
  LT=$!
  while kill -0 "$LT" 2>/dev/null; do sample; sleep 10; done
  wait "$LT" || echo "soak: round $ROUND: loadtest reported a step that did not hold (see below)"
  tail -n 3 "$WORK/round-$ROUND.txt" | sed "s/^/  round $ROUND: /"
done
sleep 15   # the sfuserver reports the last leaves
sample

python3 - "$WORK/samples" "$WORK/data/meeting.db" "$ROUND" <<'EOF'
import sqlite3, sys
rows = [tuple(map(int, l.split())) for l in open(sys.argv[1])]
t0 = rows[0][0]
first = [r for r in rows if r[0] - t0 < 300]
last = [r for r in rows if rows[-1][0] - r[0] < 300]
avg = lambda xs, i: sum(x[i] for x in xs) / len(xs)
print(f"soak: {len(rows)} samples over {(rows[-1][0]-t0)/60:.1f} min, {sys.argv[3]} rounds")
print(f"RSS  MiB: first 5 min {avg(first,1)/1024:.1f}, last 5 min {avg(last,1)/1024:.1f}, max {max(r[1] for r in rows)/1024:.1f}")
print(f"fds     : first 5 min {avg(first,2):.0f}, last 5 min {avg(last,2):.0f}, max {max(r[2] for r in rows)}")
db = sqlite3.connect(sys.argv[2])
total, entered, left = db.execute(
    "select count(*), count(entered_at), count(left_at) from participations").fetchone()
print(f"participations: {total} join answers, {entered} entered, {left} left")
open_rows = db.execute("select count(*) from participations where entered_at is not null and left_at is null").fetchone()[0]
print(f"still open after everyone left: {open_rows}")
sys.exit(1 if open_rows else 0)
EOF
