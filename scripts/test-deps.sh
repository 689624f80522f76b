#!/usr/bin/env bash
# Installs what the test suite needs, only what is missing. Idempotent; fast when all is present.
#   apt:  mariadb-server mariadb-client postgresql chromium fonts-liberation coturn janus pebble iproute2 python3-venv
#         fonts-noto-cjk (zh-CN screens are checked with real Chinese glyphs)
#         lintian rpm rpmlint mmdebstrap (the package test; it installs cargo-deb and
#         cargo-generate-rpm itself, cached: scripts/package-tools.sh)
#         slapd ldap-utils (OpenLDAP: the LDAP sign-in tests start their own slapd in a temp dir)
#         xvfb pulseaudio (the tab-audio test runs its sharing browser headed, on its own X and
#         PulseAudio servers)
#   venv: /var/tmp/meeting-appliance-venv with aiosmtpd (SMTP sink)
#   npm:  playwright-core in /var/tmp/meeting-appliance-node (browser tests), and beside it
#         oidc-provider (the OpenID Provider of the sign-in tests)
#   web:  the browser client built into web/dist (scripts/build-web.sh)
set -euo pipefail

VENV=${APPLIANCE_VENV:-/var/tmp/meeting-appliance-venv}
NODE_PREFIX=${APPLIANCE_NODE_PREFIX:-/var/tmp/meeting-appliance-node}
APT_PACKAGES=(mariadb-server mariadb-client postgresql chromium fonts-liberation coturn janus pebble iproute2 python3-venv
  lintian rpm rpmlint mmdebstrap fonts-noto-cjk slapd ldap-utils wrk xvfb pulseaudio)

die() { echo "test-deps: FAILED: $*" >&2; exit 1; }
step() { echo "test-deps: $*"; }
# Runs a command with its output in a log; shows the log's tail only when it fails.
quiet() {
  local log rc=0
  log=$(mktemp)
  "$@" >"$log" 2>&1 || rc=$?
  [ "$rc" -eq 0 ] || tail -n 40 "$log" >&2
  rm -f "$log"
  return "$rc"
}

# --- apt ---------------------------------------------------------------------------------
missing=()
for p in "${APT_PACKAGES[@]}"; do
  if [ "$(dpkg-query -W -f='${db:Status-Abbrev}' "$p" 2>/dev/null)" != "ii " ]; then
    missing+=("$p")
  fi
done
command -v npm >/dev/null 2>&1 || missing+=(nodejs npm)
if [ ${#missing[@]} -eq 0 ]; then
  step "apt packages present (${APT_PACKAGES[*]})"
else
  step "apt installing: ${missing[*]}"
  [ "$(id -u)" -eq 0 ] || die "need root to apt-get install ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  # Wait for another apt/dpkg run (up to 10 minutes) instead of failing on the lock.
  APT_OPTS=(-o DPkg::Lock::Timeout=600)
  quiet apt-get "${APT_OPTS[@]}" update || die "apt-get update"
  quiet apt-get "${APT_OPTS[@]}" install -y --no-install-recommends "${missing[@]}" \
    || die "apt-get install ${missing[*]}"
  step "apt installed: ${missing[*]}"
fi

# --- python venv with aiosmtpd -----------------------------------------------------------
if [ -x "$VENV/bin/python" ] && "$VENV/bin/python" -c 'import aiosmtpd' >/dev/null 2>&1; then
  step "python venv with aiosmtpd present ($VENV)"
else
  step "creating python venv with aiosmtpd ($VENV)"
  PY=python3
  if ! python3 -c 'import venv, ensurepip' >/dev/null 2>&1; then PY=/usr/bin/python3; fi
  quiet "$PY" -m venv --clear "$VENV" || die "$PY -m venv $VENV"
  quiet "$VENV/bin/python" -m pip install --disable-pip-version-check aiosmtpd \
    || die "pip install aiosmtpd into $VENV"
  "$VENV/bin/python" -c 'import aiosmtpd' || die "aiosmtpd not importable after install"
  step "python venv ready ($("$VENV/bin/python" -c 'import aiosmtpd; print("aiosmtpd", aiosmtpd.__version__)'))"
fi

# --- npm playwright-core -----------------------------------------------------------------
if [ -f "$NODE_PREFIX/node_modules/playwright-core/package.json" ]; then
  step "playwright-core present ($NODE_PREFIX)"
else
  step "installing playwright-core into $NODE_PREFIX"
  mkdir -p "$NODE_PREFIX"
  # playwright-core downloads no browser; tests use Debian's /usr/bin/chromium.
  quiet npm install --prefix "$NODE_PREFIX" --no-audit --no-fund playwright-core \
    || die "npm install playwright-core"
  [ -f "$NODE_PREFIX/node_modules/playwright-core/package.json" ] || die "playwright-core missing after npm install"
  step "playwright-core ready"
fi

# --- npm oidc-provider (the certified OpenID Provider the sign-in tests run) ----------------
if [ -f "$NODE_PREFIX/node_modules/oidc-provider/package.json" ]; then
  step "oidc-provider present ($NODE_PREFIX)"
else
  step "installing oidc-provider into $NODE_PREFIX"
  mkdir -p "$NODE_PREFIX"
  quiet npm install --prefix "$NODE_PREFIX" --no-audit --no-fund oidc-provider@9 \
    || die "npm install oidc-provider"
  [ -f "$NODE_PREFIX/node_modules/oidc-provider/package.json" ] || die "oidc-provider missing after npm install"
  step "oidc-provider ready"
fi

# --- the web client (web/dist, embedded by build.rs; the web_client tests drive it) ------
quiet "$(dirname "$0")/build-web.sh" || die "building the web client (scripts/build-web.sh)"
step "web client built (web/dist)"

step "all test dependencies present"
