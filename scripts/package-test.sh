#!/usr/bin/env bash
# The package test (tests/it/package.rs runs it): packages BIN (the test build, so no release
# build is needed here; `make package` packages the release binary the same way), lints both
# packages, checks the .rpm with rpm -qlp / rpm -K, and installs the .deb into a clean
# Debian root (mmdebstrap minbase + the package's dependencies, made once and cached as a
# tarball) in a
# private network and mount namespace: install, start the installed binary as the service
# user from the installed config, /healthz on loopback, upgrade keeps the edited conffile
# and the data, remove keeps data and user, purge removes them.
#   scripts/package-test.sh BIN
# Exit 0 and a last line `PACKAGE TEST PASSED`, or 77 with `SKIP: reason` when a tool cannot
# be installed on this machine.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=$1
CACHE=${APPLIANCE_PKG_ROOT_CACHE:-/var/tmp/meeting-appliance-pkgroot}
# The root has what the package Depends on besides libc (apt would pull them in).
ROOT_TAR=$CACHE/bookworm-minbase-adduser-ca.tar
WORK=$(mktemp -d /var/tmp/meeting-appliance-pkgtest.XXXXXX)
trap 'rm -rf "$WORK"' EXIT

ok() { echo "OK: $*"; }
fail() { echo "FAIL: $*"; exit 1; }
skip() { echo "SKIP: $*"; exit 77; }

[ "$(id -u)" -eq 0 ] || skip "needs root (dpkg into a chroot, namespaces)"
unshare -n -m true 2>/dev/null || skip "unshare -n -m is not allowed here"
TOOLS=$(scripts/package-tools.sh) || skip "cannot install cargo-deb/cargo-generate-rpm/lintian/rpm/rpmlint/mmdebstrap"

# --- the clean root, cached (apt downloads from the Debian mirror once) -----------------
if [ ! -s "$ROOT_TAR" ]; then
  mkdir -p "$CACHE"
  echo "making the clean Debian root (once): mmdebstrap --variant=minbase --include=adduser,ca-certificates bookworm"
  mmdebstrap --quiet --variant=minbase --include=adduser,ca-certificates bookworm "$CACHE/partial.tar" \
    || skip "mmdebstrap could not make a Debian root (no access to the Debian mirror?)"
  mv "$CACHE/partial.tar" "$ROOT_TAR"
fi

# --- package the given binary ------------------------------------------------------------
mkdir -p "$WORK/target/release"
cp "$BIN" "$WORK/target/release/meeting-appliance"
OUT=$(PATH="$TOOLS:$PATH" PACKAGE_FAST=1 CARGO_TARGET_DIR="$WORK/target" scripts/package.sh --no-build) \
  || fail "scripts/package.sh (build or lint) failed"
DEB=$(echo "$OUT" | sed -n 's/^deb: //p')
RPM=$(echo "$OUT" | sed -n 's/^rpm: //p')
ok "packaged and linted with no errors: $(basename "$DEB") $(basename "$RPM")"

# --- the .rpm ----------------------------------------------------------------------------
LIST=$(rpm -qlp "$RPM")
for f in /usr/bin/meeting-appliance /etc/meeting-appliance/appliance.toml \
         /usr/lib/systemd/system/meeting-appliance.service /usr/lib/systemd/system/meeting-appliance@.service \
         /usr/lib/sysctl.d/60-meeting-appliance.conf; do
  echo "$LIST" | grep -qx "$f" || fail "rpm lacks $f"
done
rpm -qp --configfiles "$RPM" | grep -qx /etc/meeting-appliance/appliance.toml || fail "rpm: config not %config"
rpm -qp --queryformat '[%{FILEFLAGS:fflags} %{FILENAMES}\n]' "$RPM" | grep -q '^cn /etc/meeting-appliance/appliance.toml' \
  || fail "rpm: config is not %config(noreplace)"
rpm -qp --scripts "$RPM" | grep -q 'useradd -r' || fail "rpm: no user creation"
rpm -K "$RPM" | grep -q 'digests OK' || fail "rpm -K: $(rpm -K "$RPM")"
ok "rpm -qlp lists the files, config is %config(noreplace), rpm -K: digests OK"

# --- the .deb in a clean root --------------------------------------------------------------
ROOT=$WORK/root
mkdir -p "$ROOT"
tar -xf "$ROOT_TAR" -C "$ROOT"
cp "$DEB" "$ROOT/tmp/pkg.deb"
DEPENDS=$(dpkg-deb -f "$DEB" Depends)
for d in adduser ca-certificates libc6; do
  echo "$DEPENDS" | grep -qw "$d" || fail "Depends lacks $d: $DEPENDS"
done
cat > "$ROOT/tmp/inside.sh" <<'INSIDE'
#!/bin/bash
# Runs on the host side of the private namespace; $ROOT is the clean Debian root.
set -euo pipefail
ok() { echo "OK: $*"; }
fail() { echo "FAIL: $*"; exit 1; }
in_root() { chroot "$ROOT" "$@"; }
healthz() {
  local i
  for i in $(seq 1 150); do
    local r
    r=$( (exec 3<>/dev/tcp/127.0.0.1/8080 && printf 'GET /healthz HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n' >&3 && cat <&3) 2>/dev/null || true)
    case "$r" in "HTTP/1."?" 200"*'"ok"'*) return 0;; esac
    sleep 0.2
  done
  return 1
}
start() {
  # The unit's command line, as the unit's user (no systemd in a chroot).
  chroot --userspec=meeting-appliance:meeting-appliance "$ROOT" \
    /usr/bin/meeting-appliance --config /etc/meeting-appliance/appliance.toml >"$ROOT/tmp/run.log" 2>&1 &
  PID=$!
  healthz || { tail -n 15 "$ROOT/tmp/run.log"; fail "no /healthz from the installed appliance"; }
}
stop() { kill -TERM "$PID"; wait "$PID" || true; }

ip link set lo up
mount -t proc proc "$ROOT/proc"
in_root dpkg -i /tmp/pkg.deb >/dev/null || fail "dpkg -i"
in_root getent passwd meeting-appliance >/dev/null || fail "no service user"
[ "$(in_root stat -c '%U:%G %a' /var/lib/meeting-appliance)" = "meeting-appliance:meeting-appliance 750" ] \
  || fail "data dir: $(in_root stat -c '%U:%G %a' /var/lib/meeting-appliance)"
[ "$(in_root stat -c '%U:%G %a' /etc/meeting-appliance/appliance.toml)" = "root:meeting-appliance 640" ] \
  || fail "config: $(in_root stat -c '%U:%G %a' /etc/meeting-appliance/appliance.toml)"
[ "$(in_root readlink /usr/bin/meeting)" = "meeting-appliance" ] || fail "no meeting alias"
in_root dpkg-query -W -f='${Conffiles}\n' meeting-appliance | grep -q /etc/meeting-appliance/appliance.toml \
  || fail "appliance.toml is not a conffile"
[ "$(diff "$ROOT/etc/meeting-appliance/appliance.toml" "$SAMPLE" | grep -c '^[<>]')" = 2 ] \
  && grep -qx 'data_dir = "/var/lib/meeting-appliance"' "$ROOT/etc/meeting-appliance/appliance.toml" \
  || fail "the installed config is not the sample with the packaged data_dir"
in_root test -f /usr/lib/systemd/system/meeting-appliance.service || fail "no unit"
in_root test -f /usr/lib/systemd/system/meeting-appliance@.service || fail "no template unit"
in_root /usr/bin/meeting --version | grep -q meeting-appliance || fail "meeting --version"
ok "installed: user, /var/lib/meeting-appliance 750, config 640 root:meeting-appliance conffile, units, meeting alias"

start
[ "$(in_root stat -c '%U %a' /var/lib/meeting-appliance/secret)" = "meeting-appliance 600" ] || fail "secret"
in_root test -f /var/lib/meeting-appliance/meeting.db || fail "no database in the data dir"
grep -q 'listening on http://127.0.0.1:8080' "$ROOT/tmp/run.log" || fail "listening line: $(cat "$ROOT/tmp/run.log")"
ok "the installed binary runs as meeting-appliance from the installed config and answers /healthz"
stop

# Upgrade (the same version again goes through prerm upgrade / postinst configure): the
# edited conffile and the data stay.
echo '# edited by the operator' >> "$ROOT/etc/meeting-appliance/appliance.toml"
SECRET=$(cat "$ROOT/var/lib/meeting-appliance/secret")
in_root dpkg -i /tmp/pkg.deb >/dev/null || fail "dpkg -i (upgrade)"
grep -q 'edited by the operator' "$ROOT/etc/meeting-appliance/appliance.toml" || fail "upgrade replaced the edited config"
[ "$(cat "$ROOT/var/lib/meeting-appliance/secret")" = "$SECRET" ] || fail "upgrade lost the secret"
start
stop
ok "upgrade keeps the edited config and the data, and the appliance starts again"

in_root dpkg -r meeting-appliance >/dev/null || fail "dpkg -r"
in_root test ! -e /usr/bin/meeting-appliance || fail "binary left after remove"
in_root test -f /var/lib/meeting-appliance/secret || fail "remove deleted the data"
in_root getent passwd meeting-appliance >/dev/null || fail "remove deleted the user"
ok "remove keeps the data dir and the user"

in_root dpkg -P meeting-appliance >/dev/null || fail "dpkg -P"
in_root test ! -e /var/lib/meeting-appliance || fail "purge left the data dir"
in_root test ! -e /etc/meeting-appliance || fail "purge left /etc/meeting-appliance"
! in_root getent passwd meeting-appliance >/dev/null || fail "purge left the user"
! in_root getent group meeting-appliance >/dev/null || fail "purge left the group"
ok "purge removes the data dir, the config, the user and the group"
INSIDE
chmod +x "$ROOT/tmp/inside.sh"
ROOT=$ROOT SAMPLE=$PWD/config/appliance.toml unshare -n -m "$ROOT/tmp/inside.sh"
echo "PACKAGE TEST PASSED"
