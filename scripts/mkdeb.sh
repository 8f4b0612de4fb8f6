#!/bin/sh
# `make deb`: scripts/mkdeb.sh BIN OUTDIR [--check]. Installs BIN into a
# staging tree with the project's own `make install PREFIX=/usr`, strips
# it, adds the Debian files (dist/deb/: control, conffiles, maintainer
# scripts, copyright; a changelog made from the version and the last
# commit's date) and builds OUTDIR/sluice_VERSION_ARCH.deb with dpkg-deb,
# files owned by root. Depends is computed from the binary: dpkg-shlibdeps
# when dpkg-dev is installed, else the packages owning the libraries ldd
# shows. Prints the .deb's path last. --check then runs
# scripts/check-package.sh on it (lintian, systemd-analyze verify).
set -eu
cd "$(dirname "$0")/.."

[ $# -ge 2 ] || { echo "usage: $0 BIN OUTDIR [--check]" >&2; exit 2; }
bin=$1
out=$2
check=${3:-}

for tool in dpkg-deb dpkg; do
	command -v "$tool" >/dev/null 2>&1 || { echo "mkdeb: $tool is required (a Debian system)" >&2; exit 1; }
done
version=$(sed -n 's/^project(sluice VERSION \([0-9.]*\).*/\1/p' CMakeLists.txt)
arch=$(dpkg --print-architecture)
maintainer=${DEB_MAINTAINER:-"sluice authors <sluice@example.org>"}
[ -n "$version" ] || { echo "mkdeb: no version in CMakeLists.txt" >&2; exit 1; }

mkdir -p "$out"
out=$(cd "$out" && pwd)
work=$(mktemp -d "${TMPDIR:-/tmp}/sluice-deb.XXXXXX")
trap 'rm -rf "$work"' EXIT
root=$work/src/debian/sluice # where dpkg-shlibdeps expects a package tree

make --no-print-directory install INSTALL_DEPS= BIN="$bin" DESTDIR="$root" PREFIX=/usr \
	UNITDIR=/lib/systemd/system >/dev/null
strip --strip-unneeded --remove-section=.comment --remove-section=.note \
	"$root/usr/bin/sluice" "$root/usr/lib/sluice/sluice_redis.so"

doc=$root/usr/share/doc/sluice
install -m 0644 dist/deb/copyright "$doc/copyright"
# a native package: changelog.gz, dated by the last commit (reproducible)
date=$(git log -1 --format=%cD 2>/dev/null || date -R)
{
	printf 'sluice (%s) unstable; urgency=medium\n\n' "$version"
	printf '  * Release %s; the changes are the git history.\n\n' "$version"
	printf ' -- %s  %s\n' "$maintainer" "$date"
} | gzip -9n > "$doc/changelog.gz"
chmod 0644 "$doc/changelog.gz"

# Depends, from the libraries the binary links (dpkg-shlibdeps finds the
# package root by its DEBIAN directory)
mkdir -p "$root/DEBIAN"
if command -v dpkg-shlibdeps >/dev/null 2>&1; then
	printf 'Source: sluice\n\nPackage: sluice\nArchitecture: any\n' > "$work/src/debian/control"
	depends=$(cd "$work/src" && dpkg-shlibdeps -O --warnings=0 -edebian/sluice/usr/bin/sluice |
		sed -n 's/^shlibs:Depends=//p')
else
	echo "mkdeb: dpkg-shlibdeps not found (dpkg-dev); Depends from ldd + dpkg -S, unversioned" >&2
	depends=$(ldd "$root/usr/bin/sluice" | awk '$2 == "=>" && $3 ~ /^\// { print $3 }' |
		while read -r lib; do
			dpkg -S "$(readlink -f "$lib")" 2>/dev/null || dpkg -S "$lib" 2>/dev/null || true
		done | sed 's/:.*//; s/,.*//' | sort -u | paste -sd, - | sed 's/,/, /g')
fi
[ -n "$depends" ] || { echo "mkdeb: could not compute Depends" >&2; exit 1; }

size=$(du -sk --exclude=DEBIAN "$root" | cut -f1)
sed -e "s|@VERSION@|$version|" -e "s|@ARCH@|$arch|" -e "s|@MAINTAINER@|$maintainer|" \
	-e "s|@INSTALLED_SIZE@|$size|" -e "s|@DEPENDS@|$depends|" \
	dist/deb/control.in > "$root/DEBIAN/control"
install -m 0644 dist/deb/conffiles "$root/DEBIAN/conffiles"
for s in postinst prerm postrm; do
	install -m 0755 "dist/deb/$s" "$root/DEBIAN/$s"
done
(cd "$root" && find . -type f ! -path './DEBIAN/*' -printf '%P\0' | sort -z |
	xargs -0 md5sum) > "$root/DEBIAN/md5sums"
chmod 0644 "$root/DEBIAN/md5sums"
find "$root" -type d -exec chmod 0755 {} +

deb=$out/sluice_${version}_${arch}.deb
SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct 2>/dev/null || date +%s)} \
	dpkg-deb --root-owner-group -Zxz --build "$root" "$deb" >/dev/null
echo "$deb"
if [ "$check" = --check ]; then
	./scripts/check-package.sh "$deb"
fi
