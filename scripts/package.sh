#!/usr/bin/env bash
# `make package`: the .deb (cargo-deb) and .rpm (cargo-generate-rpm) of the release binary
# with the web client embedded, checked by lintian and rpmlint (any error fails).
#   scripts/package.sh              build web client + release binary, package, lint
#   scripts/package.sh --no-build   package the binary already at $CARGO_TARGET_DIR/release
# Prints `deb: PATH` and `rpm: PATH` last. Metadata: the end of Cargo.toml; files: packaging/.
set -euo pipefail
cd "$(dirname "$0")/.."
CARGO=${CARGO:-cargo}
TARGET=${CARGO_TARGET_DIR:-target}
BUILD=1
[ "${1:-}" = "--no-build" ] && BUILD=0

PATH="$(scripts/package-tools.sh):$PATH"
export PATH

if [ "$BUILD" = 1 ]; then
  scripts/build-web.sh
  "$CARGO" build --release --locked
fi
BIN="$TARGET/release/meeting-appliance"
[ -x "$BIN" ] || { echo "package: no binary at $BIN" >&2; exit 1; }

# The packaged config is the commented sample (config/appliance.toml, checked against the
# defaults by a test) with the packages' data dir.
mkdir -p "$TARGET/release/pkg"
sed 's|^data_dir = "./meeting-data"$|data_dir = "/var/lib/meeting-appliance"|' config/appliance.toml \
  > "$TARGET/release/pkg/appliance.toml"
grep -qx 'data_dir = "/var/lib/meeting-appliance"' "$TARGET/release/pkg/appliance.toml" \
  || { echo "package: config/appliance.toml has no data_dir line to set" >&2; exit 1; }

# PACKAGE_FAST=1 (the package test): lighter compression, same contents.
FAST=()
[ "${PACKAGE_FAST:-0}" = 1 ] && FAST=(--fast)
rm -rf "$TARGET/debian" "$TARGET/generate-rpm"
# --strip: the release profile keeps line tables for backtraces; the package does not.
cargo-deb --no-build --locked --strip "${FAST[@]}" --output "$TARGET/debian/" >&2
DEB=$(ls "$TARGET"/debian/meeting-appliance_*.deb)

# cargo-generate-rpm packages what it finds: strip a copy first.
mkdir -p "$TARGET/release/rpm"
strip --strip-unneeded -o "$TARGET/release/rpm/meeting-appliance" "$BIN"
mkdir -p "$TARGET/generate-rpm"
cargo-generate-rpm generate-rpm --target-dir "$TARGET" -o "$TARGET/generate-rpm/" >&2
RPM=$(ls "$TARGET"/generate-rpm/meeting-appliance-*.rpm)

echo "== lintian $DEB" >&2
lintian --fail-on error --info "$DEB" >&2
echo "== rpmlint $RPM" >&2
rpmlint -r packaging/rpm/rpmlintrc "$RPM" >&2

echo "deb: $DEB"
echo "rpm: $RPM"
