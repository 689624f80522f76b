#!/usr/bin/env bash
# Builds the browser client (web/: TypeScript + Vite) into web/dist, which build.rs embeds in
# the binary. Installs web/node_modules from package-lock.json when missing or out of date.
set -euo pipefail
cd "$(dirname "$0")/../web"
command -v npm >/dev/null 2>&1 || { echo "build-web: npm is missing (apt-get install nodejs npm)" >&2; exit 1; }
if [ ! -f node_modules/.package-lock.json ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  npm ci --no-audit --no-fund
fi
npm run build
