#!/usr/bin/env bash
# Builds the UXP plugin (Premiere 25.6+) as a .ccx in dist/: a zip with manifest.json at its root.
# scripts/build_panel.sh --uxp runs this.
#
#   scripts/build_panel_uxp.sh                 build for PANEL_SERVER_URL (default http://127.0.0.1:8080)
#   scripts/build_panel_uxp.sh --server URL    the server this build talks to: its origin becomes the
#                                              manifest's only network domain and the default server
#   scripts/build_panel_uxp.sh --out DIR       write the .ccx to DIR instead of dist/
#   scripts/build_panel_uxp.sh --stage DIR     only lay out the plugin folder in DIR (load it in the UXP
#                                              Developer Tool with Premiere's Developer Mode on)
#
# The plugin folder holds the shared UI (core/, ui/), the UXP adapters (uxp/*.js), icons, and
# uxp/manifest.json and uxp/index.html moved to the root. A .ccx is not signed here: Adobe signs
# plugins distributed through its marketplace; ours is installed by double-click or UPIA.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SRC="$ROOT/cep-panel"
OUT="$ROOT/dist"
STAGE_ONLY=""
SERVER="${PANEL_SERVER_URL:-http://127.0.0.1:8080}"

say() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

while [ $# -gt 0 ]; do
  case "$1" in
    --server) SERVER="$2"; shift 2 ;;
    --out) OUT="$2"; shift 2 ;;
    --stage) STAGE_ONLY="$2"; shift 2 ;;
    *) die "unknown argument: $1 (see the header of $0)" ;;
  esac
done

command -v node >/dev/null || die "node is needed to build the plugin"
ORIGIN="$(node -e '
  const u = new URL(process.argv[1]);
  if (!/^https?:$/.test(u.protocol)) process.exit(2);
  process.stdout.write(u.origin);' "$SERVER")" || die "--server must be an http(s) URL, not: $SERVER"
VERSION="$(node -p 'require(process.argv[1]).version' "$SRC/package.json")"

if [ -n "$STAGE_ONLY" ]; then
  mkdir -p "$STAGE_ONLY"
  STAGE="$(cd "$STAGE_ONLY" && pwd)"
  [ -z "$(ls -A "$STAGE")" ] || die "the stage folder must be empty: $STAGE"
else
  WORK="$(mktemp -d)"
  trap 'rm -rf "$WORK"' EXIT
  STAGE="$WORK/com.sfxstudio.panel.uxp"
  mkdir -p "$STAGE"
fi

bad="$(find "$SRC/core" "$SRC/ui" "$SRC/uxp" "$SRC/icons" \( -type l -o -name .DS_Store -o -name __MACOSX -o -name '._*' \) -print)"
[ -z "$bad" ] || die "refusing to package symlinks or macOS metadata:"$'\n'"$bad"
cp -R "$SRC/core" "$SRC/ui" "$SRC/icons" "$STAGE/"
mkdir -p "$STAGE/uxp"
cp "$SRC"/uxp/*.js "$STAGE/uxp/"
cp "$SRC/uxp/index.html" "$STAGE/index.html"

# The manifest's network permission and the panel's allowed origins name the one server.
node - "$SRC/uxp/manifest.json" "$STAGE" "$ORIGIN" "$VERSION" <<'JS'
const fs = require("fs");
const [src, stage, origin, version] = process.argv.slice(2);
const manifest = JSON.parse(fs.readFileSync(src, "utf8"));
if (manifest.version !== version) {
  console.error(`error: uxp/manifest.json has version ${manifest.version}, package.json ${version}`);
  process.exit(1);
}
manifest.requiredPermissions.network.domains = [origin];
fs.writeFileSync(`${stage}/manifest.json`, JSON.stringify(manifest, null, 2) + "\n");
fs.writeFileSync(`${stage}/uxp/allowed-origins.js`,
  "// Written by scripts/build_panel_uxp.sh: the same list as manifest.json's network permission.\n" +
  `window.__SFX_ALLOWED_ORIGINS__ = ${JSON.stringify([origin])};\n`);
JS

if [ -n "$STAGE_ONLY" ]; then
  say "plugin folder for $ORIGIN laid out in $STAGE"
  echo "$STAGE"
  exit 0
fi

NAME="sfx-studio-panel-$VERSION-uxp.ccx"
mkdir -p "$OUT"
OUT="$(cd "$OUT" && pwd)"
rm -f "$OUT/$NAME"
# Any zip tool does: zip where it is installed, else Python's zipfile.
if command -v zip >/dev/null; then
  (cd "$STAGE" && zip -q -X -r "$OUT/$NAME" .)
else
  (cd "$STAGE" && python3 - "$OUT/$NAME" <<'PY'
import os, sys, zipfile
with zipfile.ZipFile(sys.argv[1], "w", zipfile.ZIP_DEFLATED) as z:
    for folder, dirs, files in os.walk("."):
        dirs.sort()
        for name in sorted(files):
            path = os.path.join(folder, name)
            z.write(path, os.path.relpath(path, "."))
PY
  )
fi
say "built $OUT/$NAME for $ORIGIN"
echo "$OUT/$NAME"
