#!/bin/sh
# Bans the C library calls that have no length bound (STYLE.md, Build).
# Comments are stripped first, so prose may name them.
set -eu
cd "$(dirname "$0")/.."
bad=""
for f in $(git ls-files 'src/*.c' 'src/*.h' 'include/*.h' 'tests/*.c' 'bench/*.c'); do
	[ -f "$f" ] || continue
	hits=$(sed -e 's:/\*.*\*/::g' -e 's://.*$::' -e 's:^[[:space:]]*\*.*$::' -e 's:/\*.*$::' "$f" |
		grep -nE '\b(sprintf|strcpy|strcat|atoi)[[:space:]]*\(' || true)
	[ -n "$hits" ] && bad="$bad$(echo "$hits" | sed "s|^|$f:|")
"
done
if [ -n "$bad" ]; then
	echo "lint: banned calls (use snprintf, memcpy with lengths, strtol):"
	printf '%s' "$bad"
	exit 1
fi
