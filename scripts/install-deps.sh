#!/bin/sh
# Installs every Debian package that building, testing, benchmarking,
# packaging (lintian checks the .deb; dpkg-dev comes with build-essential)
# and running sluice needs (prometheus: for its promtool, which checks
# /metrics in the e2e tests; its service is not started). Idempotent:
# packages already present are skipped, and apt is not touched at all when
# nothing is missing. Works as root or, when not root, through sudo.
set -eu

PKGS="build-essential cmake pkg-config clang libclang-rt-dev
libuv1-dev node-llhttp libyaml-dev libcjson-dev libhiredis-dev
libsqlite3-dev libssl-dev libxxhash-dev libcmocka-dev
python3 python3-pytest python3-requests python3-redis python3-yaml
redis-server redis-tools nginx caddy wrk curl procps openssl ca-certificates
chromium chromium-driver python3-selenium
prometheus
lintian valgrind"

missing=""
for p in $PKGS; do
	if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed"; then
		missing="$missing $p"
	fi
done

[ -z "$missing" ] && exit 0

if [ "$(id -u)" -eq 0 ]; then
	SUDO=""
else
	SUDO="sudo"
fi

echo "install-deps: installing:$missing"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -q
# shellcheck disable=SC2086
$SUDO apt-get install -y -q --no-install-recommends $missing
