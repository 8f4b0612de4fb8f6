#!/bin/sh
# Bans the C library calls that have no length bound (STYLE.md, Build).
set -eu
cd "$(dirname "$0")/.."
bad=$(git ls-files 'src/*.c' 'src/*.h' 'include/*.h' 'tests/*.c' 'bench/*.c' 2>/dev/null |
	xargs -r grep -nE '\b(sprintf|strcpy|strcat|atoi)\s*\(' || true)
if [ -n "$bad" ]; then
	echo "lint: banned calls (use snprintf, memcpy with lengths, strtol):"
	echo "$bad"
	exit 1
fi
