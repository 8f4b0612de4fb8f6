#!/bin/sh
# CPU cost per request of sluice's plain check listener: wrk (keep-alive)
# for DURATION seconds, the daemon's user+system CPU time from
# /proc/PID/stat divided by the requests wrk completed. Less sensitive to
# other load on a shared machine than requests/second, so it compares two
# builds: run it for each, interleaved. Prints "cpu_us_per_req VALUE" and
# "rps VALUE" per round, then the medians.
# Usage: SLUICE_BIN=... [ROUNDS=5] [DURATION=4] [CONNS=32] bench/cpu_per_request.sh
set -eu
cd "$(dirname "$0")/.."
SLUICE_BIN=${SLUICE_BIN:-build/sluice}
WRK=${WRK:-/usr/bin/wrk}
ROUNDS=${ROUNDS:-5}
DURATION=${DURATION:-4}
CONNS=${CONNS:-32}
DIR=$(mktemp -d /tmp/sluice-cpureq-XXXXXX)
PID=""
cleanup() {
	[ -n "$PID" ] && kill "$PID" 2>/dev/null || true
	rm -rf "$DIR"
}
trap cleanup EXIT INT TERM
PORT=$(/usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
ADMIN=$(/usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
cat >"$DIR/sluice.yaml" <<EOF2
server: { workers: 1, access_log: false }
listeners:
  - { name: auth, listen: "127.0.0.1:$PORT", mode: check }
admin: { listen: "127.0.0.1:$ADMIN" }
identify:
  key: { from: ["header:X-Api-Key"] }
  accounts:
    - { account: bench, plan: pro, keys: ["sk_bench_key"] }
plans: { pro: { title: Pro } }
limits:
  - { name: ip, key: ip, rate: 600000000/min }
  - { name: key, key: key, rate: 600000000/min }
  - { name: account, key: account, rate: { pro: 600000000/min } }
EOF2
"$SLUICE_BIN" serve -c "$DIR/sluice.yaml" 2>"$DIR/log" &
PID=$!
i=0
until curl -s -o /dev/null --max-time 1 "http://127.0.0.1:$PORT/" || [ $i -ge 50 ]; do
	sleep 0.1
	i=$((i + 1))
done
cpu() { awk '{ print $14 + $15 }' "/proc/$PID/stat"; } # clock ticks
TCK=$(getconf CLK_TCK)
"$WRK" -t1 -c"$CONNS" -d1s -H "X-Api-Key: sk_bench_key" "http://127.0.0.1:$PORT/v1/items" >/dev/null
r=0
while [ $r -lt "$ROUNDS" ]; do
	a=$(cpu)
	"$WRK" -t1 -c"$CONNS" -d"${DURATION}s" -H "X-Api-Key: sk_bench_key" \
		"http://127.0.0.1:$PORT/v1/items" >"$DIR/out"
	b=$(cpu)
	n=$(awk '/requests in/ { print $1 }' "$DIR/out")
	rps=$(awk '/Requests\/sec:/ { print $2 }' "$DIR/out")
	awk -v a="$a" -v b="$b" -v n="$n" -v t="$TCK" -v rps="$rps" \
		'BEGIN { printf "%.3f %.0f\n", (b - a) / t * 1e6 / n, rps }' | tee -a "$DIR/res"
	r=$((r + 1))
done
sort -g "$DIR/res" | awk '{ v[NR] = $1 } END { printf "median cpu_us_per_req %.3f\n", v[int((NR + 1) / 2)] }'
sort -k2 -g "$DIR/res" | awk '{ v[NR] = $2 } END { printf "median rps %.0f\n", v[int((NR + 1) / 2)] }'
