#!/bin/sh
# build-deb.sh [OUT_DIR]: the Debian packages tokend, libtokend-client0,
# libtokend-client-dev (and their -dbgsym), built by `dpkg-buildpackage -b`
# from a copy of this tree (its tracked files plus untracked ones git does
# not ignore, so an edit not yet committed is packaged too, and the work
# tree gets no build debris), then checked by lintian: any error or
# warning not overridden in debian/*.lintian-overrides fails.
# Output: OUT_DIR (default build-deb/) holds the .deb files, the
# .changes, .buildinfo and lintian.txt. `make deb` runs this.
set -eu
cd "$(dirname "$0")/.."
OUT=${1:-build-deb}
./scripts/install-deps.sh deb
VERSION=$(dpkg-parsechangelog -S Version)
rm -rf "$OUT"
SRC=$OUT/src/tokend-$VERSION
mkdir -p "$SRC"
# (a file deleted but not yet committed is simply not there to copy)
git ls-files -z --cached --others --exclude-standard |
  tar --null -T - --ignore-failed-read -cf - 2>/dev/null | tar -C "$SRC" -xf -
(cd "$SRC" && dpkg-buildpackage -b -us -uc -j"$(nproc)") >"$OUT/build.log" 2>&1 ||
  { tail -40 "$OUT/build.log" >&2; echo "build-deb: dpkg-buildpackage failed (log: $OUT/build.log)" >&2; exit 1; }
mv "$OUT"/src/*.deb "$OUT"/src/*.changes "$OUT"/src/*.buildinfo "$OUT"/
rm -rf "$OUT/src"
CHANGES=$(ls "$OUT"/*.changes)
lintian --fail-on error,warning --info --display-info "$CHANGES" >"$OUT/lintian.txt" 2>&1 ||
  { cat "$OUT/lintian.txt" >&2; echo "build-deb: lintian failed" >&2; exit 1; }
cat "$OUT/lintian.txt"
ls -1 "$OUT"/*.deb
