#!/bin/sh
# Upgrade benchmark: wrk keeps CONNS keep-alive connections busy against
# sluice's proxy listener (upstream: static) for DURATION seconds, and one
# second in, the daemon is replaced, either by `sluice serve --takeover`
# (docs/daemon.md "Upgrades and restarts") or, as the peer in the same run,
# by a plain restart (SIGTERM, wait, start again). Runs are interleaved,
# ROUNDS rounds; printed figures are medians, one "NAME VALUE" per line:
#   takeover_errors restart_errors   (wrk socket errors + non-2xx responses)
#   takeover_rps restart_rps         (requests/s over the whole run)
#   takeover_pause_ms                (the old one's pause, from its log)
#   takeover_rps_ratio               (takeover_rps / restart_rps)
# Environment: SLUICE_BIN (default build/sluice), ROUNDS (5), DURATION (4 s),
# CONNS (32). Loopback only; every process is stopped by PID.
set -eu
cd "$(dirname "$0")/.."
ROOT=$(pwd)
SLUICE_BIN=${SLUICE_BIN:-$ROOT/build/sluice}
WRK=${WRK:-/usr/bin/wrk}
ROUNDS=${ROUNDS:-5}
DURATION=${DURATION:-4}
CONNS=${CONNS:-32}

for x in "$SLUICE_BIN" "$WRK"; do
	if [ ! -x "$x" ]; then
		echo "takeover_bench: $x not found; skipped" >&2
		exit 0
	fi
done

DIR=$(mktemp -d /tmp/sluice-takeoverbench-XXXXXX)
PIDS=""
cleanup() {
	for p in $PIDS; do
		kill "$p" 2>/dev/null || true
	done
	rm -rf "$DIR"
}
trap cleanup EXIT INT TERM

PORT=$(/usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
cat >"$DIR/sluice.yaml" <<YAML
server: { workers: 2 }
listeners:
  - { name: gateway, listen: "127.0.0.1:$PORT", mode: proxy, upstream: static }
admin: { listen: "off" }
store: { type: memory, snapshot: state.snap }
limits:
  - { name: daily, key: ip, quota: 100000000/day }
YAML

wait_port() {
	i=0
	while ! /usr/bin/python3 -c "import socket; socket.create_connection(('127.0.0.1', $PORT), 0.2)" 2>/dev/null; do
		i=$((i + 1))
		[ $i -lt 100 ] || { echo "takeover_bench: sluice did not listen:" >&2; cat "$DIR/sluice.log" >&2; exit 1; }
		sleep 0.05
	done
}

start() { # start [--takeover]: sets PID
	"$SLUICE_BIN" serve -c "$DIR/sluice.yaml" "$@" >/dev/null 2>>"$DIR/sluice.log" &
	PID=$!
	PIDS="$PIDS $PID"
}

wait_gone() {
	i=0
	while kill -0 "$1" 2>/dev/null; do
		i=$((i + 1))
		[ $i -lt 200 ] || { echo "takeover_bench: pid $1 did not exit" >&2; exit 1; }
		sleep 0.05
	done
}

# run MODE: prints "errors rps"
run() {
	: >"$DIR/sluice.log"
	start
	OLD=$PID
	wait_port
	sleep 0.3
	"$WRK" -t2 -c"$CONNS" -d"${DURATION}s" "http://127.0.0.1:$PORT/" >"$DIR/wrk.out" 2>&1 &
	W=$!
	sleep 1
	if [ "$1" = takeover ]; then
		start --takeover
		wait_gone "$OLD"
	else
		kill -TERM "$OLD"
		wait_gone "$OLD"
		start
	fi
	wait "$W"
	kill -TERM "$PID"
	wait_gone "$PID"
	errs=$(awk '/Socket errors/ { gsub(",", ""); s = $4 + $6 + $8 + $10 }
	            /Non-2xx/ { n = $5 } END { print s + n + 0 }' "$DIR/wrk.out")
	rps=$(awk '/Requests\/sec/ { print int($2) }' "$DIR/wrk.out")
	pause=$(sed -n 's/.*after a pause of \([0-9.]*\) ms.*/\1/p' "$DIR/sluice.log" | head -1)
	echo "$errs $rps ${pause:-0}"
}

median() { sort -n | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }'; }

: >"$DIR/t"
: >"$DIR/r"
r=0
while [ $r -lt "$ROUNDS" ]; do
	run takeover >>"$DIR/t"
	run restart >>"$DIR/r"
	r=$((r + 1))
done
te=$(cut -d' ' -f1 "$DIR/t" | median)
tr=$(cut -d' ' -f2 "$DIR/t" | median)
tp=$(cut -d' ' -f3 "$DIR/t" | median)
re=$(cut -d' ' -f1 "$DIR/r" | median)
rr=$(cut -d' ' -f2 "$DIR/r" | median)
echo "takeover_errors $te"
echo "restart_errors $re"
echo "takeover_rps $tr"
echo "restart_rps $rr"
echo "takeover_pause_ms $tp"
awk -v a="$tr" -v b="$rr" 'BEGIN { printf "takeover_rps_ratio %.2f\n", b ? a / b : 0 }'
echo "# rounds (errors rps pause_ms): takeover: $(tr '\n' ';' <"$DIR/t") restart: $(tr '\n' ';' <"$DIR/r")"
