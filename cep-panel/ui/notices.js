/*
 * What the editor is told: the banner (states that last: offline, waiting, out of credits, errors),
 * the toast (one-off outcomes; it sits in the layout's last row, so it never covers a result or the
 * Generate button), and handleError, the one place that turns any failure into one of those.
 */
(function () {
  "use strict";
  var SFX = window.SFX;
  var D = SFX.Dom;
  var $ = D.$;

  SFX.Views.Notices = {
    mount: function (ctx) {
      var state = ctx.state;
      var bannerAction = null;
      var toastAction = null;
      var toastTimer = 0;
      var countdown = 0;

      function banner(kind, text, actionLabel, action) {
        var el = $("banner");
        el.setAttribute("data-kind", kind);
        $("banner-text").textContent = text;
        $("banner-action").textContent = actionLabel || "";
        D.show($("banner-action"), !!actionLabel);
        bannerAction = action || null;
        D.show(el, true);
      }
      function hideBanner(kind) {
        var el = $("banner");
        if (!kind || el.getAttribute("data-kind") === kind) {
          D.show(el, false);
          el.removeAttribute("data-kind");
        }
      }
      function toast(text, kind, actionLabel, action) {
        var el = $("toast");
        $("toast-text").textContent = text;
        el.setAttribute("data-kind", kind || "info");
        $("toast-action").textContent = actionLabel || "";
        D.show($("toast-action"), !!actionLabel);
        toastAction = action || null;
        D.show(el, true);
        clearTimeout(toastTimer);
        toastTimer = setTimeout(function () {
          D.show(el, false);
        }, actionLabel ? 9000 : 4500);
      }

      /** Counts down a Retry-After; Generate stays disabled until it reaches zero. */
      function startCountdown(secs, reason) {
        clearInterval(countdown);
        state.set({ waitUntil: Date.now() + secs * 1000 });
        function tick() {
          var left = Math.ceil((state.get("waitUntil") - Date.now()) / 1000);
          if (left <= 0) {
            clearInterval(countdown);
            state.set({ waitUntil: 0 });
            hideBanner("wait");
            return;
          }
          banner("wait", reason + " Try again in " + left + " s.");
          $("banner").setAttribute("data-seconds", String(left));
        }
        tick();
        countdown = setInterval(tick, 1000);
      }

      function online() {
        if (state.get("offline")) {
          state.set({ offline: false });
          hideBanner("offline");
        }
      }

      /** retry re-runs the failed action (for a generation: the same body, so the same Idempotency-Key). */
      function handleError(error, retry) {
        var code = error && error.code;
        var details = (error && error.details) || {};
        if (code === "signed_out") return ctx.showSignIn(error.message);
        if (code === "network") {
          state.set({ offline: true });
          return banner("offline", "You're offline or the server can't be reached.", "Retry", function () {
            hideBanner("offline");
            if (retry) retry();
          });
        }
        if (error && error.status === 426) {
          // This build is too old for the server: the update offer takes over and Generate stays off.
          var offer = Object.assign({ version: details.min_supported_version || details.latest_version || "", url: details.download_url || "", notes_html: "", size: 0 }, state.get("update") || {}, { mandatory: true, outdated: true });
          if (details.download_url) offer.url = details.download_url;
          return state.set({ update: offer });
        }
        if (code === "email_not_verified") {
          var email = details.email || (state.get("me") && state.get("me").user && state.get("me").user.email) || "your email address";
          return banner("verify", "Verify your email: we sent a link to " + email + ". Open it, then try again.", retry ? "Try again" : "", retry);
        }
        if (error && error.status === 402) {
          if (details.upgrade_url) state.set({ upgradeUrl: details.upgrade_url });
          var needed = details.needed;
          var text = code === "payment_past_due" ? "Your last payment failed. Update your billing to keep generating." : "Not enough credits" + (needed ? " (this needs " + SFX.Format.plural(needed, "credit") + ")" : "") + ".";
          state.set({ emptyPrompt: false });
          banner("upgrade", text, "Upgrade", ctx.openUpgrade);
          return ctx.refreshAccount();
        }
        if (code === "no_active_key") {
          // Nothing to wait for on our side: the service has no working key; no automatic retry.
          return banner("error", "The sound service is unavailable right now. Nothing was charged. Please try again later.", retry ? "Try again" : "", retry);
        }
        if (error && (error.status === 429 || (error.status === 503 && error.retryAfter))) {
          return startCountdown(error.retryAfter || 30, error.status === 429 ? "Too many requests." : "The service is busy.");
        }
        if (error && error.status === 503) return startCountdown(30, "The service is busy.");
        if (code === "upstream_unavailable") {
          return banner("error", "The sound service didn't answer. Nothing was charged.", retry ? "Try again" : "", retry);
        }
        if (error && error.name === "HostError") return toast(error.message, "error");
        banner("error", (error && error.message) || "Something went wrong.");
      }

      D.on($("banner-action"), "click", function () {
        if (bannerAction) bannerAction();
      });
      D.on($("banner-close"), "click", function () {
        hideBanner();
      });
      D.on($("toast-action"), "click", function () {
        D.show($("toast"), false);
        if (toastAction) toastAction();
      });
      D.on($("toast-close"), "click", function () {
        D.show($("toast"), false);
      });
      state.subscribe(["offline"], function (v) {
        if (v.offline) document.body.setAttribute("data-offline", "true");
        else document.body.removeAttribute("data-offline");
      });

      ctx.banner = banner;
      ctx.hideBanner = hideBanner;
      ctx.toast = toast;
      ctx.handleError = handleError;
      ctx.online = online;
    },
  };
})();
