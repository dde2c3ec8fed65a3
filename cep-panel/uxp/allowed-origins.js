// The server origins this plugin may reach: the same list as manifest.json's network permission.
// scripts/build_panel.sh --uxp rewrites both from PANEL_SERVER_URL / --server; this is the dev default.
window.__SFX_ALLOWED_ORIGINS__ = ["http://127.0.0.1:8080"];
