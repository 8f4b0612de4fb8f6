#!/bin/sh
# What usage counting costs per check request, in instructions (callgrind:
# deterministic, unlike wall-clock figures on a loaded machine). The check
# listener of a one-worker sluice, usage on and off, each run twice, with
# N1 and N2 keep-alive requests from one Python client; the marginal cost
# (Ir(N2) - Ir(N1)) / (N2 - N1) leaves out start-up and shutdown. Prints
#   instr_per_request_usage_on instr_per_request_usage_off usage_instr_pct
# Environment: SLUICE_BIN (default build/sluice), N1 (2000), N2 (6000).
set -eu
cd "$(dirname "$0")/.."
SLUICE_BIN=${SLUICE_BIN:-build/sluice}
N1=${N1:-2000}
N2=${N2:-6000}
DIR=$(mktemp -d /tmp/sluice-usage-instr-XXXXXX)
PID=""
cleanup() {
	[ -n "$PID" ] && kill "$PID" 2>/dev/null || true
	rm -rf "$DIR"
}
trap cleanup EXIT INT TERM

port=$(/usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
aport=$(/usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')

# run ON|OFF N: prints the total instructions of one daemon serving N requests
run() {
	cat >"$DIR/sluice.yaml" <<EOF2
server: { workers: 1, access_log: false }
listeners:
  - { name: auth, listen: "127.0.0.1:$port", mode: check }
admin: { listen: "127.0.0.1:$aport" }
identify:
  key: { from: ["header:X-Api-Key"] }
  accounts: [ { account: bench, plan: pro, keys: ["sk_bench_key"] } ]
plans: { pro: { title: Pro } }
limits:
  - { name: ip, key: ip, rate: 600000000/min }
  - { name: key, key: key, rate: 600000000/min }
  - { name: account, key: account, rate: { pro: 600000000/min } }
usage: { enabled: $1 }
EOF2
	rm -f "$DIR"/callgrind.out* "$DIR"/usage.db*
	valgrind --tool=callgrind --callgrind-out-file="$DIR/callgrind.out" \
		"$SLUICE_BIN" serve -c "$DIR/sluice.yaml" 2>"$DIR/log" &
	PID=$!
	/usr/bin/python3 - "$port" "$2" <<'EOF2'
import http.client, socket, sys, time
port, n = int(sys.argv[1]), int(sys.argv[2])
deadline = time.monotonic() + 60
while True:
    try:
        socket.create_connection(("127.0.0.1", port), 0.5).close()
        break
    except OSError:
        if time.monotonic() > deadline:
            sys.exit("sluice did not listen")
        time.sleep(0.2)
c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
for _ in range(n):
    c.request("GET", "/v1/items", headers={"X-Api-Key": "sk_bench_key"})
    r = c.getresponse()
    r.read()
    assert r.status == 200, r.status
EOF2
	kill -TERM "$PID"
	wait "$PID" || true
	PID=""
	awk '/^summary:/ { s += $2 } END { print s }' "$DIR"/callgrind.out*
}

on1=$(run true "$N1")
on2=$(run true "$N2")
off1=$(run false "$N1")
off2=$(run false "$N2")
awk -v a="$on1" -v b="$on2" -v c="$off1" -v d="$off2" -v n1="$N1" -v n2="$N2" 'BEGIN {
	on = (b - a) / (n2 - n1); off = (d - c) / (n2 - n1)
	printf "instr_per_request_usage_on %.0f\n", on
	printf "instr_per_request_usage_off %.0f\n", off
	printf "usage_instr_pct %.1f\n", 100 * (on - off) / off
}'
