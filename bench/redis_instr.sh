#!/bin/sh
# Redis' work per decision in instructions (callgrind: deterministic, where
# the wall-clock ratios of bench_redis move by a fifth between runs on a
# shared machine). One redis-server under callgrind per run, active expiry
# off and hz 1 (so that the server's own timers do not grow with the
# slower run), fed N1 and then N2 decisions: sluice's exact mode with 1
# and 3 limits (build/bench_redis, the store's own calls) and the 9-line
# GCRA script through redis-benchmark (EVALSHA, 50 clients, pipeline 16,
# as in bench_redis). The marginal cost (Ir(N2) - Ir(N1)) / (N2 - N1)
# leaves out start-up and shutdown. Exact mode runs on the Lua library and,
# when MODULE (default build/sluice_redis.so) is there, on sluice's module
# (a server started with --loadmodule). Prints
#   redis_instr_per_decision_{exact1,exact3,exact1_module,exact3_module,gcra_evalsha}
#   redis_instr_exact{1,3}[_module]_over_gcra_ratio (gcra / exact: > 1 is cheaper)
# Environment: BENCH (default build/bench_redis), MODULE, N1 (3000), N2 (9000).
set -eu
cd "$(dirname "$0")/.."
BENCH=${BENCH:-build/bench_redis}
N1=${N1:-3000}
N2=${N2:-9000}
MODULE=${MODULE:-build/sluice_redis.so}
DIR=$(mktemp -d /tmp/sluice-redis-instr-XXXXXX)
VPID=""
cleanup() {
	[ -n "$VPID" ] && kill "$VPID" 2>/dev/null || true
	rm -rf "$DIR"
}
trap cleanup EXIT INT TERM

GCRA='local t = redis.call("TIME")
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local T, B = tonumber(ARGV[1]), tonumber(ARGV[2])
local tat = tonumber(redis.call("GET", KEYS[1]) or now)
if tat < now then tat = now end
local n = tat + T
if n - now > B * T then return 0 end
redis.call("SET", KEYS[1], n, "PX", math.floor((n - now) / 1000) + 1)
return 1'

# run MODE N: the total instructions of one server serving N decisions
run() {
	port=$(/usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
	case "$1" in
	*_module) set -- "${1%_module}" "$2" --loadmodule "$(realpath "$MODULE")" ;;
	esac
	mode=$1
	n=$2
	shift 2
	valgrind --tool=callgrind --callgrind-out-file="$DIR/cg.out" redis-server --port "$port" \
		--bind 127.0.0.1 --save '' --appendonly no --hz 1 --enable-debug-command yes "$@" \
		>"$DIR/valgrind.log" 2>&1 &
	VPID=$!
	i=0
	until redis-cli -p "$port" ping >/dev/null 2>&1; do
		i=$((i + 1))
		[ "$i" -gt 120 ] && { echo "redis_instr: redis-server did not start" >&2; exit 1; }
		sleep 0.5
	done
	redis-cli -p "$port" DEBUG SET-ACTIVE-EXPIRE 0 >/dev/null
	case "$mode" in
	exact1 | exact3)
		BENCH_REDIS_PORT=$port BENCH_DECISIONS=$n BENCH_ONLY_EXACT=${mode#exact} "$BENCH" \
			>"$DIR/bench.out"
		grep -q "redis_count_errors 0" "$DIR/bench.out" ||
			{ echo "redis_instr: $mode had errors" >&2; cat "$DIR/bench.out" >&2; exit 1; }
		;;
	gcra)
		sha=$(redis-cli -p "$port" SCRIPT LOAD "$GCRA")
		redis-benchmark -p "$port" -c 50 -P 16 -n "$n" -r 10000 -q \
			EVALSHA "$sha" 1 bk:__rand_int__ 1000 1000000 >/dev/null 2>&1
		;;
	esac
	redis-cli -p "$port" SHUTDOWN NOSAVE >/dev/null 2>&1 || true
	wait "$VPID" || true
	VPID=""
	callgrind_annotate "$DIR/cg.out" 2>/dev/null | awk '/PROGRAM TOTALS/ { gsub(",", "", $1); print $1 }'
	rm -f "$DIR/cg.out"
}

per() {
	a=$(run "$1" "$N1")
	b=$(run "$1" "$N2")
	echo $(((b - a) / (N2 - N1)))
}

e1=$(per exact1)
e3=$(per exact3)
g=$(per gcra)
echo "redis_instr_per_decision_exact1 $e1"
echo "redis_instr_per_decision_exact3 $e3"
echo "redis_instr_per_decision_gcra_evalsha $g"
awk -v g="$g" -v a="$e1" -v b="$e3" 'BEGIN {
	printf "redis_instr_exact1_over_gcra_ratio %.2f\n", g / a
	printf "redis_instr_exact3_over_gcra_ratio %.2f\n", g / b
}'
if [ -r "$MODULE" ]; then
	m1=$(per exact1_module)
	m3=$(per exact3_module)
	echo "redis_instr_per_decision_exact1_module $m1"
	echo "redis_instr_per_decision_exact3_module $m3"
	awk -v g="$g" -v a="$m1" -v b="$m3" 'BEGIN {
		printf "redis_instr_exact1_module_over_gcra_ratio %.2f\n", g / a
		printf "redis_instr_exact3_module_over_gcra_ratio %.2f\n", g / b
	}'
fi
