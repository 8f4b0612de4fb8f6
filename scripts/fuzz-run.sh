#!/bin/sh
# Runs every libFuzzer target for a short time over its committed corpus.
# usage: fuzz-run.sh BUILD_DIR SECONDS
set -eu
dir=$1
secs=$2
cd "$(dirname "$0")/.."
n=0
for f in "$dir"/fuzz_*; do
	[ -x "$f" ] || continue
	name=$(basename "$f")
	corpus=tests/fuzz/corpus/${name#fuzz_}
	mkdir -p "$corpus"
	work=$(mktemp -d)
	echo "fuzz: $name for ${secs}s"
	"$f" -max_total_time="$secs" -max_len=8192 -print_final_stats=0 \
		"$work" "$corpus" >"$work.log" 2>&1 || { tail -50 "$work.log"; exit 1; }
	rm -rf "$work" "$work.log"
	n=$((n + 1))
done
echo "fuzz: $n targets ran clean"
