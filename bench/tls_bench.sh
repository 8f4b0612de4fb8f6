#!/bin/sh
# TLS benchmark: wrk over HTTPS (keep-alive) against sluice's check listener
# with `tls:` and, in the same run, Debian nginx doing the same work over TLS
# (limit_req + return 200, bench/nginx-tls.conf) with the same certificate
# and key (RSA 2048, made here with the openssl CLI). The plain check
# listener of the same daemon is measured too, for the cost of TLS itself.
# One worker each; sluice evaluates three limits (ip, key, account), nginx
# one. Interleaved rounds, medians, one "NAME VALUE" per line:
#   tls_check_rps nginx_tls_check_rps tls_check_ratio plain_check_rps
#   tls_check_p99_ms nginx_tls_check_p99_ms
#   tls_cpu_us_per_req nginx_tls_cpu_us_per_req tls_cpu_ratio plain_cpu_us_per_req
#   tls_handshakes_per_sec nginx_tls_handshakes_per_sec tls_handshake_ratio
# (full handshakes, no resumption: `openssl s_time -new`, one request per
# connection, HANDSHAKE_TIME seconds per run, default 3)
# The CPU figures (the serving process's user+system time from /proc over the
# requests wrk completed) move far less with other load on the machine than
# requests/second do.
# Environment: SLUICE_BIN (default build/sluice), ROUNDS (3), DURATION (5 s),
# CONNS (32). Loopback only; every process is stopped by PID.
set -eu
cd "$(dirname "$0")/.."
ROOT=$(pwd)
SLUICE_BIN=${SLUICE_BIN:-$ROOT/build/sluice}
NGINX=${NGINX:-/usr/sbin/nginx}
WRK=${WRK:-/usr/bin/wrk}
ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-5}
CONNS=${CONNS:-32}
HANDSHAKE_TIME=${HANDSHAKE_TIME:-3}

for x in "$SLUICE_BIN" "$NGINX" "$WRK"; do
	if [ ! -x "$x" ]; then
		echo "tls_bench: $x not found; skipped" >&2
		exit 0
	fi
done

DIR=$(mktemp -d /tmp/sluice-tlsbench-XXXXXX)
PIDS=""
cleanup() {
	for p in $PIDS; do
		kill "$p" 2>/dev/null || true
	done
	for p in $PIDS; do
		i=0 # bounded wait: up to 5 s per process
		while kill -0 "$p" 2>/dev/null && [ $i -lt 50 ]; do
			sleep 0.1
			i=$((i + 1))
		done
		kill -9 "$p" 2>/dev/null || true
	done
	rm -rf "$DIR"
}
trap cleanup EXIT INT TERM

openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=localhost" \
	-addext "subjectAltName=DNS:localhost,IP:127.0.0.1" \
	-keyout "$DIR/srv.key" -out "$DIR/srv.pem" 2>/dev/null

ports=$(/usr/bin/python3 -c '
import socket
ss = [socket.socket() for _ in range(4)]
for s in ss: s.bind(("127.0.0.1", 0))
print(" ".join(str(s.getsockname()[1]) for s in ss))
for s in ss: s.close()')
set -- $ports
P_TLS=$1 P_PLAIN=$2 P_ADMIN=$3 P_NGINX=$4

wait_port() { # port: wait up to 10 s for a listener
	i=0
	while [ $i -lt 100 ]; do
		if /usr/bin/python3 -c "import socket,sys; socket.create_connection(('127.0.0.1', $1), 0.2)" 2>/dev/null; then
			return 0
		fi
		sleep 0.1
		i=$((i + 1))
	done
	echo "tls_bench: nothing listens on $1" >&2
	return 1
}

sed -e "s|@DIR@|$DIR|g" -e "s|@CHECK@|$P_NGINX|g" bench/nginx-tls.conf >"$DIR/nginx.conf"
mkdir -p "$DIR/ng"
"$NGINX" -p "$DIR/ng" -e "$DIR/nginx-error.log" -c "$DIR/nginx.conf" \
	-g "daemon off; pid $DIR/nginx.pid;" &
NGINX_PID=$!
PIDS="$PIDS $NGINX_PID"

cat >"$DIR/sluice.yaml" <<EOF2
server:
  workers: 1
  access_log: false
listeners:
  - name: auth
    listen: "127.0.0.1:$P_TLS"
    mode: check
    tls:
      cert: srv.pem
      key: srv.key
  - name: plain
    listen: "127.0.0.1:$P_PLAIN"
    mode: check
admin:
  listen: "127.0.0.1:$P_ADMIN"
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
EOF2
"$SLUICE_BIN" serve -c "$DIR/sluice.yaml" 2>"$DIR/sluice.log" &
SLUICE_PID=$!
PIDS="$PIDS $SLUICE_PID"
for p in $P_TLS $P_PLAIN $P_NGINX; do
	wait_port "$p"
done
# nginx serves from its one worker, the master's only child
NGINX_WORKER=$(ps -o pid= --ppid "$NGINX_PID" | head -n 1 | tr -d ' ')
TCK=$(getconf CLK_TCK)
cpu() { awk '{ print $14 + $15 }' "/proc/$1/stat"; } # PID: user+system clock ticks

run() { # NAME URL PID: one wrk run, appends "rps p99_ms non2xx cpu_us_per_req" to $DIR/NAME
	a=$(cpu "$3")
	"$WRK" -t1 -c"$CONNS" -d"${DURATION}s" --timeout 5s --latency \
		-H "X-Api-Key: sk_bench_key" "$2" >"$DIR/out" 2>&1 || true
	b=$(cpu "$3")
	awk -v a="$a" -v b="$b" -v t="$TCK" '
		/requests in/ { n = $1 }
		/Requests\/sec:/ { rps = $2 }
		/^ +99%/ { v = $2; u = v; sub(/[a-z]+$/, "", v); sub(/^[0-9.]+/, "", u);
			   p99 = (u == "us") ? v / 1000 : (u == "s") ? v * 1000 : v }
		/Non-2xx or 3xx responses:/ { bad = $5 }
		END { printf "%s %s %d %.3f\n", rps + 0, p99 + 0, bad + 0,
			(n > 0 ? (b - a) / t * 1e6 / n : 0) }' "$DIR/out" >>"$DIR/$1"
}

TLS_URL="https://127.0.0.1:$P_TLS/v1/items"
PLAIN_URL="http://127.0.0.1:$P_PLAIN/v1/items"
NGINX_URL="https://127.0.0.1:$P_NGINX/v1/items"
for u in "$TLS_URL" "$PLAIN_URL" "$NGINX_URL"; do
	code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 5 --cacert "$DIR/srv.pem" \
		-H "X-Api-Key: sk_bench_key" "$u" || true)
	if [ "$code" != 200 ]; then
		echo "tls_bench: $u answered $code" >&2
		cat "$DIR/sluice.log" "$DIR/nginx-error.log" >&2
		exit 1
	fi
done

DURATION_SAVE=$DURATION
DURATION=1
run warmup "$TLS_URL" "$SLUICE_PID"
run warmup "$NGINX_URL" "$NGINX_WORKER"
run warmup "$PLAIN_URL" "$SLUICE_PID"
DURATION=$DURATION_SAVE
r=0
while [ $r -lt "$ROUNDS" ]; do
	run tls "$TLS_URL" "$SLUICE_PID"
	run nginx "$NGINX_URL" "$NGINX_WORKER"
	run plain "$PLAIN_URL" "$SLUICE_PID"
	r=$((r + 1))
done

median() { # file column
	awk -v c="$2" '{ print $c }' "$1" | sort -g | awk '{ v[NR] = $1 }
		END { if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

hs() { # NAME PORT: one s_time run, appends connections per real second to $DIR/NAME
	openssl s_time -connect "127.0.0.1:$2" -new -time "$HANDSHAKE_TIME" -www /v1/items \
		2>/dev/null </dev/null | awk '/connections in [0-9.]+ real seconds/ {
			printf "%.1f\n", $1 / $4 }' >>"$DIR/$1"
}
r=0
while [ $r -lt "$ROUNDS" ]; do
	hs hs_tls "$P_TLS"
	hs hs_nginx "$P_NGINX"
	r=$((r + 1))
done
hs_tls=$(median "$DIR/hs_tls" 1)
hs_nginx=$(median "$DIR/hs_nginx" 1)

for n in tls nginx plain; do
	eval "${n}_rps=\$(median \"\$DIR/$n\" 1)"
	eval "${n}_p99=\$(median \"\$DIR/$n\" 2)"
	eval "${n}_cpu=\$(median \"\$DIR/$n\" 4)"
	bad=$(awk '{ s += $3 } END { print s + 0 }' "$DIR/$n")
	if [ "$bad" != 0 ]; then
		echo "tls_bench: $n had $bad non-2xx responses" >&2
	fi
done
# shellcheck disable=SC2154
awk -v t="$tls_rps" -v n="$nginx_rps" -v p="$plain_rps" -v t99="$tls_p99" -v n99="$nginx_p99" \
	-v tc="$tls_cpu" -v nc="$nginx_cpu" -v pc="$plain_cpu" -v ht="$hs_tls" -v hn="$hs_nginx" '
BEGIN {
	printf "tls_check_rps %.0f\n", t
	printf "nginx_tls_check_rps %.0f\n", n
	printf "tls_check_ratio %.2f\n", (n > 0 ? t / n : 0)
	printf "plain_check_rps %.0f\n", p
	printf "tls_check_p99_ms %.2f\n", t99
	printf "nginx_tls_check_p99_ms %.2f\n", n99
	printf "tls_cpu_us_per_req %.3f\n", tc
	printf "nginx_tls_cpu_us_per_req %.3f\n", nc
	printf "tls_cpu_ratio %.2f\n", (tc > 0 ? nc / tc : 0)
	printf "plain_cpu_us_per_req %.3f\n", pc
	printf "tls_handshakes_per_sec %.0f\n", ht
	printf "nginx_tls_handshakes_per_sec %.0f\n", hn
	printf "tls_handshake_ratio %.2f\n", (hn > 0 ? ht / hn : 0)
}'
