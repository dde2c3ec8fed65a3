#!/usr/bin/env bash
# Installs the unsigned panel for development on macOS: links cep-panel/ into the per-user CEP
# extensions folder (or copies it with --copy) and turns on PlayerDebugMode for CSXS 11 and 12, so
# Premiere Pro loads it without a signature. Restart Premiere, then Window > Extensions > SFX Studio.
#
#   scripts/install_panel_dev.sh [--copy] [--uninstall]
#
# CEP_EXTENSIONS_DIR overrides the extensions folder. Windows: scripts/install_panel_dev.ps1.
# The UXP plugin (Premiere 25.6+) is not installed this way: scripts/build_panel.sh --uxp --stage DIR,
# then load DIR in Adobe's UXP Developer Tool.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SRC="$ROOT/cep-panel"
ID="com.sfxstudio.panel"
CONTENTS=(CSXS index.html core ui cep icons .debug)
MODE=link

die() { printf 'error: %s\n' "$*" >&2; exit 1; }

for arg in "$@"; do
  case "$arg" in
    --copy) MODE=copy ;;
    --uninstall) MODE=uninstall ;;
    *) die "unknown argument: $arg (use --copy or --uninstall)" ;;
  esac
done

SYSTEM="$(uname -s)"
if [ -n "${CEP_EXTENSIONS_DIR:-}" ]; then
  EXT_DIR="$CEP_EXTENSIONS_DIR"
elif [ "$SYSTEM" = Darwin ]; then
  EXT_DIR="$HOME/Library/Application Support/Adobe/CEP/extensions"
else
  cat >&2 <<MSG
Premiere Pro runs on macOS and Windows only, so there is nothing to install on $SYSTEM.
  macOS:   scripts/install_panel_dev.sh
  Windows: powershell -ExecutionPolicy Bypass -File scripts\\install_panel_dev.ps1
To test the panel here, run ./scripts/test (headless Chromium with a CEP harness).
Nothing was installed.
MSG
  exit 1
fi
DEST="$EXT_DIR/$ID"
case "$DEST$SRC" in *"#"*) die "CEP cannot load an extension from a path containing '#': $DEST" ;; esac

# Only ever remove what this script put there: our link, or a folder holding our manifest.
remove_existing() {
  if [ -L "$DEST" ]; then
    rm "$DEST"
  elif [ -d "$DEST" ]; then
    grep -q "ExtensionBundleId=\"$ID\"" "$DEST/CSXS/manifest.xml" 2>/dev/null || die "$DEST exists and is not this panel; remove it yourself"
    rm -rf "$DEST"
  fi
}

remove_existing
if [ "$MODE" = uninstall ]; then
  echo "Removed $DEST"
  exit 0
fi

mkdir -p "$EXT_DIR"
if [ "$MODE" = link ]; then
  ln -s "$SRC" "$DEST"
else
  mkdir "$DEST"
  for item in "${CONTENTS[@]}"; do cp -R "$SRC/$item" "$DEST/"; done
fi
echo "Installed the panel ($MODE) at $DEST"

if [ "$SYSTEM" = Darwin ]; then
  for version in 11 12; do defaults write "com.adobe.CSXS.$version" PlayerDebugMode 1; done
  echo "PlayerDebugMode is on for CSXS 11 and 12. Quit and reopen Premiere Pro, then open Window > Extensions > SFX Studio."
  echo "DevTools: http://localhost:8088 while the panel is open (cep-panel/.debug)."
else
  echo "Not macOS: turn on PlayerDebugMode for CSXS.11 and CSXS.12 yourself (see README, Premiere panel)."
fi
