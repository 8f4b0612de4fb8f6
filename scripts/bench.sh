#!/bin/sh
# Runs every benchmark; each prints "NAME VALUE" lines.
set -eu
cd "$(dirname "$0")/.."
for b in build/bench_*; do
	[ -x "$b" ] && "$b"
done
bench/http_bench.sh # HTTP: wrk vs nginx (see BENCHMARKS.md)
bench/tls_bench.sh # HTTPS: wrk vs nginx with TLS (see BENCHMARKS.md)
