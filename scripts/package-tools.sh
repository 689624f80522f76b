#!/usr/bin/env bash
# Installs cargo-deb and cargo-generate-rpm into a cache when missing (first time ~15 min of
# compiling; then instant), and the apt tools that check and install packages. Prints the
# bin folder to put on PATH. Used by `make package` and tests/it/package.rs, not by `make deps`:
# only the package test pays for it.
set -euo pipefail
TOOLS=${APPLIANCE_PKG_TOOLS:-/var/tmp/meeting-appliance-tools}
CARGO=${CARGO:-cargo}
APT_PACKAGES=(lintian rpm rpmlint mmdebstrap)

log() { echo "package-tools: $*" >&2; }
quiet() {
  local out rc=0
  out=$(mktemp)
  "$@" >"$out" 2>&1 || rc=$?
  [ "$rc" -eq 0 ] || tail -n 30 "$out" >&2
  rm -f "$out"
  return "$rc"
}

missing=()
for p in "${APT_PACKAGES[@]}"; do
  [ "$(dpkg-query -W -f='${db:Status-Abbrev}' "$p" 2>/dev/null)" = "ii " ] || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  [ "$(id -u)" -eq 0 ] || { log "need root to apt-get install ${missing[*]}"; exit 1; }
  log "apt installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  quiet apt-get -o DPkg::Lock::Timeout=600 update
  quiet apt-get -o DPkg::Lock::Timeout=600 install -y --no-install-recommends "${missing[@]}"
fi

for tool in cargo-deb cargo-generate-rpm; do
  if [ ! -x "$TOOLS/bin/$tool" ]; then
    log "cargo install --locked $tool into $TOOLS (once; several minutes)"
    # Its own build folder, so that a CARGO_TARGET_DIR of the project is not mixed in.
    quiet env -u CARGO_TARGET_DIR "$CARGO" install --locked --root "$TOOLS" "$tool"
  fi
done
echo "$TOOLS/bin"
