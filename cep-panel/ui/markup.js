/*
 * The panel's markup, one copy for both builds: the CEP page and the UXP entry each have an empty
 * body and call SFX.Markup.render(). Only elements both renderers support (no <template>, <details>
 * or SVG <use>): items are built from the small HTML strings below.
 */
(function (factory) {
  var api = factory();
  if (typeof window !== "undefined" && window.document) {
    (window.SFX = window.SFX || {}).Markup = api;
  } else {
    module.exports = api;
  }
})(function () {
  "use strict";

  function icon(name, cls) {
    return window.SFX.Icons.svg(name, cls);
  }

  function signin() {
    return (
      '<main id="view-signin" class="view signin" hidden>' +
      '<div class="brand">' + icon("wave", "brand-mark") + '<div><h1>SFX Studio</h1><p class="dim">Sound effects and voice-over for your timeline</p></div></div>' +
      '<form id="signin-form" class="stack" novalidate>' +
      '<label class="field"><span>Email</span><input id="signin-email" type="email" autocomplete="username" required /></label>' +
      '<label class="field"><span>Password</span><input id="signin-password" type="password" autocomplete="current-password" required /></label>' +
      '<div class="server"><button type="button" class="link-btn disclosure" id="signin-server-toggle" aria-expanded="false">Server <span class="dim" id="signin-server-label"></span></button>' +
      '<div id="signin-server-box" hidden><input id="signin-server" type="url" spellcheck="false" aria-label="Server address" /></div></div>' +
      '<p class="form-error" id="signin-error" role="alert" hidden></p>' +
      '<button type="submit" class="btn primary wide" id="signin-submit">Sign in</button>' +
      '<p class="dim small center">Signing in as device <strong id="signin-device"></strong></p>' +
      '<p class="small center"><a href="#" id="signin-signup">Create an account</a></p>' +
      "</form></main>"
    );
  }

  function progress(kind) {
    return (
      '<div class="progress" id="' + kind + '-progress" hidden>' +
      '<div class="progress-track"><div class="progress-bar" id="' + kind + '-progress-bar"></div></div>' +
      '<span class="progress-text" id="' + kind + '-progress-text">Generating…</span>' +
      '<button type="button" class="btn small" id="' + kind + '-cancel" title="Esc">Cancel</button></div>'
    );
  }

  function range(id, label, min, max, step, value) {
    return (
      '<div class="field"><div class="field-head"><label for="' + id + '">' + label + '</label><span class="value" data-out="' + id + '"></span></div>' +
      '<input type="range" id="' + id + '" min="' + min + '" max="' + max + '" step="' + step + '" value="' + value + '" /></div>'
    );
  }

  /** Spotting: cues proposed for the sequence's markers, to untick or edit, then generated and placed. */
  function spot() {
    return (
      '<section class="spot stack" id="spot" hidden><div class="row"><strong>Cues from markers</strong><span class="spacer"></span>' +
      '<button type="button" class="icon-btn small" id="spot-close" aria-label="Close spotting">' + icon("close") + "</button></div>" +
      '<p class="dim small" id="spot-status" aria-live="polite"></p><ul class="spot-list" id="spot-list"></ul>' +
      '<div class="generate"><div class="cost" id="spot-cost" aria-live="polite"></div><button type="button" class="btn primary" id="spot-generate" disabled>Generate cues</button></div>' +
      progress("spot") + "</section>"
    );
  }

  function spotCue() {
    return (
      '<li class="spot-cue"><label class="check"><input type="checkbox" class="cue-on" checked /><span class="cue-time"></span></label>' +
      '<textarea class="cue-prompt" rows="2" maxlength="450" aria-label="Cue prompt"></textarea>' +
      '<div class="row small"><label class="inline">Length <input type="number" class="cue-duration" min="0.5" max="30" step="0.5" /> s</label>' +
      '<label class="check"><input type="checkbox" class="cue-loop" /> Loop</label><span class="spacer"></span><span class="cue-cost dim"></span></div>' +
      '<p class="cue-note dim small"></p><p class="cue-status small" aria-live="polite"></p></li>'
    );
  }

  function sfxTab() {
    return (
      '<section class="tab" id="tab-sfx" role="tabpanel"><form id="sfx-form" class="stack gen-form" novalidate>' +
      '<div class="field"><div class="field-head"><label for="sfx-prompt">Describe the sound</label>' +
      '<select id="sfx-marker" class="mini-select" title="Use a sequence marker\'s text and time"><option value="">From marker…</option></select>' +
      '<button type="button" class="link-btn" id="sfx-enhance" title="Three richer prompts from your idea">Enhance</button></div>' +
      '<textarea id="sfx-prompt" rows="3" maxlength="1000" placeholder="Heavy wooden door slams shut in a stone hallway" spellcheck="true"></textarea>' +
      '<div class="enhance" id="sfx-enhance-box" hidden><p class="dim small" id="sfx-enhance-status" aria-live="polite"></p><ul class="enhance-list" id="sfx-enhance-list"></ul></div>' +
      '<div class="marker-chip" id="sfx-marker-chip" hidden><span id="sfx-marker-text"></span>' +
      '<button type="button" class="icon-btn small" id="sfx-marker-clear" aria-label="Place at the playhead instead">' + icon("close") + "</button></div></div>" +
      '<div class="field"><div class="field-head"><label for="sfx-duration">Duration</label><span class="value" id="sfx-duration-out">5.0 s</span>' +
      '<label class="check"><input type="checkbox" id="sfx-auto" /> Auto</label></div>' +
      '<input type="range" id="sfx-duration" min="0.5" max="30" step="0.5" value="5" /></div>' +
      '<div class="field"><div class="field-head"><label for="sfx-influence" title="How literally the prompt is followed">Prompt influence</label><span class="value" id="sfx-influence-out">30%</span></div>' +
      '<input type="range" id="sfx-influence" min="0" max="1" step="0.05" value="0.3" /></div>' +
      '<div class="row"><label class="check"><input type="checkbox" id="sfx-loop" /> Seamless loop</label><span class="spacer"></span>' +
      '<label class="inline" for="sfx-variations">Variations</label><select id="sfx-variations"><option value="1">1</option><option value="2">2</option><option value="3">3</option><option value="4">4</option></select></div>' +
      '<div class="generate"><div class="cost" id="sfx-cost" aria-live="polite"></div><button type="submit" class="btn primary" id="sfx-generate" title="Enter">Generate</button></div>' +
      progress("sfx") +
      '<button type="button" class="btn wide" id="spot-open" title="Proposed sound cues for the sequence\'s markers">Spot from markers</button>' +
      '</form>' + spot() + '<div class="results" id="sfx-results"></div></section>'
    );
  }

  function voiceTab() {
    return (
      '<section class="tab" id="tab-voice" role="tabpanel" hidden><form id="voice-form" class="stack gen-form" novalidate>' +
      '<div class="field"><div class="field-head"><label for="voice-voice">Voice</label></div><div class="row">' +
      '<select id="voice-voice" class="grow"><option value="">Loading voices…</option></select>' +
      '<button type="button" class="icon-btn" id="voice-preview" title="Preview this voice" aria-label="Preview this voice">' + icon("play") + "</button></div></div>" +
      '<div class="field"><div class="field-head"><label for="voice-text">Script</label><span class="value" id="voice-count">0 / 500</span>' +
      '<button type="button" class="link-btn" id="voice-tidy" title="Tidy the script for reading aloud and estimate its length">Tidy</button></div>' +
      '<textarea id="voice-text" rows="5" placeholder="Every great film begins with a single sound." spellcheck="true"></textarea>' +
      '<p class="dim small" id="voice-tidy-notes" aria-live="polite" hidden></p></div>' +
      '<div class="more"><button type="button" class="link-btn disclosure" id="voice-more-toggle" aria-expanded="false">Model and voice settings</button>' +
      '<div class="stack" id="voice-more" hidden><label class="field"><span>Model</span><select id="voice-model">' +
      '<option value="eleven_multilingual_v2">Multilingual v2 (best quality)</option><option value="eleven_turbo_v2_5">Turbo v2.5 (fast)</option><option value="eleven_flash_v2_5">Flash v2.5 (fastest)</option></select></label>' +
      range("voice-stability", "Stability", 0, 1, 0.05, 0.5) + range("voice-similarity", "Similarity", 0, 1, 0.05, 0.75) +
      range("voice-style", "Style", 0, 1, 0.05, 0) + range("voice-speed", "Speed", 0.7, 1.2, 0.05, 1) +
      '<label class="check"><input type="checkbox" id="voice-boost" checked /> Speaker boost</label></div></div>' +
      '<div class="generate"><div class="cost" id="voice-cost" aria-live="polite"></div><button type="submit" class="btn primary" id="voice-generate" title="Ctrl/Cmd+Enter">Generate</button></div>' +
      progress("voice") +
      '</form><div class="results" id="voice-results"></div></section>'
    );
  }

  function historyTab() {
    return (
      '<section class="tab" id="tab-history" role="tabpanel" hidden><div class="row history-bar">' +
      '<div class="segmented" role="group" aria-label="Show"><button type="button" data-kind="" aria-pressed="true">All</button>' +
      '<button type="button" data-kind="sfx" aria-pressed="false">SFX</button><button type="button" data-kind="voice" aria-pressed="false">Voice</button></div>' +
      '<span class="spacer"></span><button type="button" class="icon-btn" id="history-refresh" title="Refresh" aria-label="Refresh">' + icon("again") + "</button></div>" +
      '<ul class="history" id="history-list"></ul><p class="empty dim" id="history-empty" hidden>Nothing generated yet.</p>' +
      '<button type="button" class="btn wide" id="history-more" hidden>Load more</button></section>'
    );
  }

  function main() {
    return (
      '<div id="view-main" class="view main" hidden>' +
      '<header class="account" id="account"><span class="plan" id="acct-plan">—</span>' +
      '<span class="credits"><strong id="acct-credits">—</strong> <span class="dim" id="acct-period"></span></span><span class="spacer"></span>' +
      '<button type="button" class="link-btn" id="acct-upgrade" hidden>Upgrade</button>' +
      '<button type="button" class="icon-btn" id="btn-settings" title="Settings" aria-label="Settings">' + icon("gear") + "</button></header>" +
      '<div class="update-offer" id="update-offer" role="alert" hidden><div class="update-head"><strong id="update-title"></strong><span class="dim" id="update-size"></span></div>' +
      '<div class="update-notes" id="update-notes"></div><p class="update-message" id="update-message"></p>' +
      '<div class="row"><span class="spacer"></span><button type="button" class="btn small" id="update-later">Later</button>' +
      '<button type="button" class="btn small primary" id="update-install">Install</button></div></div>' +
      '<div class="banner" id="banner" role="alert" hidden><span class="banner-text" id="banner-text"></span>' +
      '<button type="button" class="btn small" id="banner-action" hidden></button>' +
      '<button type="button" class="icon-btn small" id="banner-close" aria-label="Dismiss">' + icon("close") + "</button></div>" +
      '<nav class="tabs" role="tablist"><button type="button" role="tab" id="tab-btn-sfx" data-tab="sfx" aria-selected="true">Sound FX</button>' +
      '<button type="button" role="tab" id="tab-btn-voice" data-tab="voice" aria-selected="false">Voice</button>' +
      '<button type="button" role="tab" id="tab-btn-history" data-tab="history" aria-selected="false">History</button></nav>' +
      sfxTab() + voiceTab() + historyTab() +
      '<div class="toast" id="toast" role="status" aria-live="polite" hidden><span id="toast-text"></span>' +
      '<button type="button" class="link-btn" id="toast-action" hidden></button>' +
      '<button type="button" class="icon-btn small" id="toast-close" aria-label="Dismiss">' + icon("close") + "</button></div></div>"
    );
  }

  function settings() {
    return (
      '<div id="view-settings" class="view settings" hidden><header class="settings-head"><h2>Settings</h2><span class="spacer"></span>' +
      '<button type="button" class="icon-btn" id="settings-close" aria-label="Close settings">' + icon("close") + "</button></header>" +
      '<form id="settings-form" class="stack" novalidate>' +
      '<label class="field"><span>Output folder</span><input id="set-folder" type="text" spellcheck="false" /><small class="dim" id="set-folder-hint"></small></label>' +
      '<label class="field"><span>Project bin</span><input id="set-bin" type="text" spellcheck="false" /></label>' +
      '<label class="field"><span>Place on track</span><select id="set-track"><option value="auto">First free audio track</option></select><small class="dim" id="set-track-hint"></small></label>' +
      '<label class="field"><span>WAV bit depth</span><select id="set-bits"><option value="16">16-bit</option><option value="24">24-bit</option></select></label>' +
      '<label class="field"><span>Server</span><input id="set-server" type="url" spellcheck="false" /><small class="dim" id="set-server-hint"></small></label>' +
      '<div class="row"><button type="submit" class="btn primary">Save</button><span class="spacer"></span><button type="button" class="btn" id="settings-manage">Manage account</button></div>' +
      '<hr /><div class="row"><span class="dim small" id="settings-user"></span><span class="spacer"></span><button type="button" class="btn danger" id="settings-signout">Sign out</button></div>' +
      '<div class="row"><p class="dim small grow" id="settings-version"></p><button type="button" class="btn small" id="settings-check-updates">Check for updates</button></div>' +
      '<p class="dim small" id="settings-update-status" hidden></p></form></div>'
    );
  }

  function result() {
    return (
      '<article class="result" draggable="true"><div class="result-head">' +
      '<button type="button" class="play icon-btn round" aria-label="Play">' + icon("play") + "</button>" +
      '<div class="result-meta"><div class="result-name"></div><div class="result-sub dim"></div></div>' + icon("grip", "grip") + "</div>" +
      '<canvas class="wave" height="40"></canvas><div class="result-actions">' +
      '<button type="button" class="btn primary small" data-act="insert">' + icon("insert") + '<span class="label">Insert at playhead</span></button>' +
      '<button type="button" class="btn small" data-act="bin" title="Import to the project bin">' + icon("bin") + "Bin</button><span class=\"spacer\"></span>" +
      '<button type="button" class="icon-btn" data-act="reveal" title="Reveal file" aria-label="Reveal file">' + icon("folder") + "</button>" +
      '<button type="button" class="icon-btn" data-act="again" title="New variation" aria-label="New variation">' + icon("again") + "</button></div></article>"
    );
  }

  function historyItem() {
    return (
      '<li class="history-item"><span class="kind">' + icon("wave") + '</span><div class="history-meta"><div class="history-title"></div><div class="history-sub dim"></div></div>' +
      '<div class="history-actions"><button type="button" class="icon-btn" data-act="play" title="Play" aria-label="Play">' + icon("play") + "</button>" +
      '<button type="button" class="icon-btn" data-act="insert" title="Insert at playhead" aria-label="Insert at playhead">' + icon("insert") + "</button>" +
      '<button type="button" class="icon-btn" data-act="bin" title="Import to bin" aria-label="Import to bin">' + icon("bin") + "</button>" +
      '<button type="button" class="icon-btn" data-act="delete" title="Delete" aria-label="Delete">' + icon("trash") + "</button></div></li>"
    );
  }

  function element(html) {
    var box = document.createElement("div");
    box.innerHTML = html;
    return box.firstChild;
  }

  function render(root) {
    var target = root || document.body;
    var box = document.createElement("div");
    box.innerHTML = signin() + main() + settings();
    while (box.lastChild) target.insertBefore(box.lastChild, target.firstChild);
  }

  return {
    render: render,
    result: function () {
      return element(result());
    },
    historyItem: function () {
      return element(historyItem());
    },
    spotCue: function () {
      return element(spotCue());
    },
  };
});
