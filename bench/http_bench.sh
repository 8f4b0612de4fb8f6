#!/bin/sh
# HTTP benchmark: wrk against sluice's check and proxy listeners and, in the
# same run, against Debian nginx doing the same work (limit_req + return 200,
# limit_req + proxy_pass). One worker each; sluice evaluates three limits per
# request (ip, key, account), nginx one. Both proxies forward to one shared
# upstream (a tiny nginx answering 200). Runs are interleaved, ROUNDS rounds
# of DURATION seconds each; printed figures are medians, one "NAME VALUE" per
# line:
#   check_rps proxy_rps nginx_check_rps nginx_proxy_rps check_ratio proxy_ratio
#   check_p99_ms proxy_p99_ms nginx_check_p99_ms nginx_proxy_p99_ms
#   check_nousage_rps usage_cost_pct (the same check listener on a second
#   sluice with `usage: {enabled: false}`: what usage counting costs;
#   USAGE_CONTROL=1 turns usage off in the first one too, to see the
#   difference the two daemons show with nothing between them)
# Environment: SLUICE_BIN (default build/sluice), ROUNDS (3), DURATION (5 s),
# CONNS (32 wrk connections), ACCOUNTS_DB (an account store file written by
# `BENCH_ACCOUNTS_KEEP=FILE build/bench_accounts`: sluice then loads its 1M
# accounts / 2M keys and the key wrk sends is one of them, not a YAML one).
# Loopback only; every process is stopped by PID.
set -eu
cd "$(dirname "$0")/.."
ROOT=$(pwd)
SLUICE_BIN=${SLUICE_BIN:-$ROOT/build/sluice}
NGINX=${NGINX:-/usr/sbin/nginx}
WRK=${WRK:-/usr/bin/wrk}
ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-5}
CONNS=${CONNS:-32}

for x in "$SLUICE_BIN" "$NGINX" "$WRK"; do
	if [ ! -x "$x" ]; then
		echo "http_bench: $x not found; skipped" >&2
		exit 0
	fi
done

DIR=$(mktemp -d /tmp/sluice-httpbench-XXXXXX)
PIDS=""
cleanup() {
	for p in $PIDS; do
		kill "$p" 2>/dev/null || true
	done
	for p in $PIDS; do
		# bounded wait: up to 5 s per process
		i=0
		while kill -0 "$p" 2>/dev/null && [ $i -lt 50 ]; do
			sleep 0.1
			i=$((i + 1))
		done
		kill -9 "$p" 2>/dev/null || true
	done
	rm -rf "$DIR"
}
trap cleanup EXIT INT TERM

# Free loopback ports, picked by the kernel.
ports=$(/usr/bin/python3 -c '
import socket
ss = [socket.socket() for _ in range(8)]
for s in ss: s.bind(("127.0.0.1", 0))
print(" ".join(str(s.getsockname()[1]) for s in ss))
for s in ss: s.close()')
set -- $ports
P_UP=$1 P_CHECK=$2 P_PROXY=$3 P_ADMIN=$4 P_NCHECK=$5 P_NPROXY=$6 P_CHECK2=$7 P_ADMIN2=$8

wait_port() { # port: wait up to 10 s for a listener
	i=0
	while [ $i -lt 100 ]; do
		if /usr/bin/python3 -c "import socket,sys; socket.create_connection(('127.0.0.1', $1), 0.2)" 2>/dev/null; then
			return 0
		fi
		sleep 0.1
		i=$((i + 1))
	done
	echo "http_bench: nothing listens on $1" >&2
	return 1
}

fill() { # template out
	sed -e "s|@DIR@|$DIR|g" -e "s|@PORT@|$P_UP|g" -e "s|@UPSTREAM@|$P_UP|g" \
		-e "s|@CHECK@|$P_NCHECK|g" -e "s|@PROXY@|$P_NPROXY|g" "$1" >"$2"
}

fill bench/nginx-upstream.conf "$DIR/upstream.conf"
fill bench/nginx-limit.conf "$DIR/limit.conf"
mkdir -p "$DIR/up" "$DIR/ng"
"$NGINX" -p "$DIR/up" -e "$DIR/upstream-error.log" -c "$DIR/upstream.conf" \
	-g "daemon off; pid $DIR/upstream.pid;" &
PIDS="$PIDS $!"
"$NGINX" -p "$DIR/ng" -e "$DIR/nginx-error.log" -c "$DIR/limit.conf" \
	-g "daemon off; pid $DIR/nginx.pid;" &
PIDS="$PIDS $!"

cat >"$DIR/sluice.yaml" <<EOF
server:
  workers: 1
  access_log: false
listeners:
  - name: gateway
    listen: "127.0.0.1:$P_PROXY"
    mode: proxy
    upstream: "http://127.0.0.1:$P_UP"
  - name: auth
    listen: "127.0.0.1:$P_CHECK"
    mode: check
admin:
  listen: "127.0.0.1:$P_ADMIN"
store:
  type: memory
identify:
  key:
    from: ["header:X-Api-Key"]
  accounts:
    - account: bench
      plan: pro
      keys: ["sk_bench_key"]
plans:
  pro:
    title: Pro
limits:
  - name: ip
    key: ip
    rate: 600000000/min
  - name: key
    key: key
    rate: 600000000/min
  - name: account
    key: account
    rate:
      pro: 600000000/min
EOF
if [ "${USAGE_CONTROL:-0}" = 1 ]; then
	printf 'usage:\n  enabled: false\n' >>"$DIR/sluice.yaml"
fi
KEY=sk_bench_key
if [ -n "${ACCOUNTS_DB:-}" ]; then
	KEY=sk_bench_00000000_0123456789abcdefghij # customer-0000000, plan pro
	sed -i 's/^plans:$/plans:\n  basic:\n    title: Basic/' "$DIR/sluice.yaml"
	printf 'accounts:\n  store: sqlite\n  path: "%s"\n' "$ACCOUNTS_DB" >>"$DIR/sluice.yaml"
fi
"$SLUICE_BIN" serve -c "$DIR/sluice.yaml" 2>"$DIR/sluice.log" &
PIDS="$PIDS $!"
# The same daemon without the usage history, on its own ports and files.
mkdir -p "$DIR/nousage"
sed -e "s|127.0.0.1:$P_CHECK\"|127.0.0.1:$P_CHECK2\"|" -e "s|127.0.0.1:$P_ADMIN\"|127.0.0.1:$P_ADMIN2\"|" \
	-e "/name: gateway/,/upstream:/d" "$DIR/sluice.yaml" >"$DIR/nousage/sluice.yaml"
grep -q '^usage:' "$DIR/nousage/sluice.yaml" ||
	printf 'usage:\n  enabled: false\n' >>"$DIR/nousage/sluice.yaml"
"$SLUICE_BIN" serve -c "$DIR/nousage/sluice.yaml" 2>"$DIR/nousage/sluice.log" &
PIDS="$PIDS $!"

for p in $P_UP $P_NCHECK $P_NPROXY $P_CHECK $P_PROXY $P_CHECK2; do
	wait_port "$p"
done

# run NAME URL: one wrk run, appends "rps p99_ms non2xx" to $DIR/NAME
run() {
	"$WRK" -t1 -c"$CONNS" -d"${DURATION}s" --timeout 5s --latency \
		-H "X-Api-Key: $KEY" "$2" >"$DIR/out" 2>&1 || true
	awk '
		/Requests\/sec:/ { rps = $2 }
		/^ +99%/ { v = $2; u = v; sub(/[a-z]+$/, "", v); sub(/^[0-9.]+/, "", u);
			   p99 = (u == "us") ? v / 1000 : (u == "s") ? v * 1000 : v }
		/Non-2xx or 3xx responses:/ { bad = $5 }
		/Socket errors:/ { err = 1 }
		END { printf "%s %s %d\n", rps + 0, p99 + 0, bad + 0 }' "$DIR/out" >>"$DIR/$1"
}

CHECK_URL="http://127.0.0.1:$P_CHECK/v1/items"
PROXY_URL="http://127.0.0.1:$P_PROXY/v1/items"
NCHECK_URL="http://127.0.0.1:$P_NCHECK/v1/items"
NPROXY_URL="http://127.0.0.1:$P_NPROXY/v1/items"
CHECK2_URL="http://127.0.0.1:$P_CHECK2/v1/items"

# Sanity: each target answers 200 before measuring.
for u in "$CHECK_URL" "$PROXY_URL" "$NCHECK_URL" "$NPROXY_URL" "$CHECK2_URL"; do
	code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 5 -H "X-Api-Key: sk_bench_key" "$u" || true)
	if [ "$code" != 200 ]; then
		echo "http_bench: $u answered $code" >&2
		cat "$DIR/sluice.log" >&2
		exit 1
	fi
done

# Warm up every target once (not recorded), then interleave the rounds.
DURATION_SAVE=$DURATION
DURATION=1
for u in "$CHECK_URL" "$NCHECK_URL" "$PROXY_URL" "$NPROXY_URL" "$CHECK2_URL"; do
	run warmup "$u"
done
DURATION=$DURATION_SAVE
r=0
while [ $r -lt "$ROUNDS" ]; do
	if [ $((r % 2)) -eq 0 ]; then # alternate which of the pair goes first
		run check "$CHECK_URL"
		run check_nousage "$CHECK2_URL"
	else
		run check_nousage "$CHECK2_URL"
		run check "$CHECK_URL"
	fi
	run nginx_check "$NCHECK_URL"
	run proxy "$PROXY_URL"
	run nginx_proxy "$NPROXY_URL"
	r=$((r + 1))
done

median() { # file column
	awk -v c="$2" '{ print $c }' "$1" | sort -g | awk '{ v[NR] = $1 }
		END { if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

for n in check proxy nginx_check nginx_proxy check_nousage; do
	eval "${n}_rps=\$(median \"\$DIR/$n\" 1)"
	eval "${n}_p99=\$(median \"\$DIR/$n\" 2)"
	bad=$(awk '{ s += $3 } END { print s + 0 }' "$DIR/$n")
	if [ "$bad" != 0 ]; then
		echo "http_bench: $n had $bad non-2xx responses" >&2
	fi
done
# shellcheck disable=SC2154
awk -v c="$check_rps" -v p="$proxy_rps" -v nc="$nginx_check_rps" -v np="$nginx_proxy_rps" \
	-v c99="$check_p99" -v p99="$proxy_p99" -v nc99="$nginx_check_p99" -v np99="$nginx_proxy_p99" \
	-v cn="$check_nousage_rps" '
BEGIN {
	printf "check_rps %.0f\n", c
	printf "proxy_rps %.0f\n", p
	printf "nginx_check_rps %.0f\n", nc
	printf "nginx_proxy_rps %.0f\n", np
	printf "check_ratio %.2f\n", (nc > 0 ? c / nc : 0)
	printf "proxy_ratio %.2f\n", (np > 0 ? p / np : 0)
	printf "check_p99_ms %.2f\n", c99
	printf "proxy_p99_ms %.2f\n", p99
	printf "nginx_check_p99_ms %.2f\n", nc99
	printf "nginx_proxy_p99_ms %.2f\n", np99
	printf "check_nousage_rps %.0f\n", cn
	printf "usage_cost_pct %.1f\n", (cn > 0 ? 100 * (cn - c) / cn : 0)
}'
