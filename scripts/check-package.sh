#!/bin/sh
# scripts/check-package.sh DEB: the checks Debian's own tools make of a
# package, each run only when its tool is installed (a missing tool is a
# note, never a failure):
#   lintian                  the package as a whole (errors and warnings fail)
#   systemd-analyze verify   the unit, with its ExecStart binary and its man
#                            page taken from the package's own tree
# Exit 0 when every check that ran passed.
set -eu
[ $# -eq 1 ] || { echo "usage: $0 DEB" >&2; exit 2; }
deb=$1
status=0

if command -v lintian >/dev/null 2>&1; then
	# --fail-on error,warning: info and pedantic tags are printed, not fatal
	if lintian --fail-on error,warning --tag-display-limit 0 "$deb"; then
		echo "check-package: lintian: ok"
	else
		echo "check-package: lintian: FAILED" >&2
		status=1
	fi
else
	echo "check-package: lintian not installed: skipped (apt-get install lintian)"
fi

if command -v systemd-analyze >/dev/null 2>&1; then
	work=$(mktemp -d "${TMPDIR:-/tmp}/sluice-check.XXXXXX")
	trap 'rm -rf "$work"' EXIT
	dpkg-deb -x "$deb" "$work/root"
	unit=$(find "$work/root" -name sluice.service -path '*/systemd/system/*' | head -n1)
	# verify checks that ExecStart's binary exists and that Documentation's
	# man page opens: point both at the unpacked tree
	sed -e "s|/usr/bin/sluice|$work/root/usr/bin/sluice|g" "$unit" > "$work/sluice.service"
	if out=$(MANPATH="$work/root/usr/share/man" systemd-analyze verify "$work/sluice.service" 2>&1) &&
		[ -z "$out" ]; then
		echo "check-package: systemd-analyze verify: ok"
	else
		printf '%s\n' "$out" >&2
		echo "check-package: systemd-analyze verify: FAILED" >&2
		status=1
	fi
else
	echo "check-package: systemd-analyze not installed: skipped"
fi
exit $status
