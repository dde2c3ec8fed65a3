/*
 * The account strip (plan, credits, renewal), plan limits on the forms, the cost line under each
 * form and whether Generate may be pressed (it may not at 0 credits, during a Retry-After wait,
 * while busy, or when a mandatory update is pending).
 */
(function () {
  "use strict";
  var SFX = window.SFX;
  var D = SFX.Dom;
  var $ = D.$;
  var F = SFX.Format;

  SFX.Views.Account = {
    mount: function (ctx) {
      var state = ctx.state;
      var api = ctx.api;

      function credits() {
        return (state.get("me") && state.get("me").credits) || {};
      }

      function upgradeUrl() {
        var me = state.get("me");
        var pricing = state.get("pricing");
        return state.get("upgradeUrl") || (me && me.upgrade_url) || (pricing && pricing.upgrade_url) || ctx.settings.serverUrl.replace(/\/+$/, "") + "/pricing";
      }
      function openUpgrade() {
        ctx.host.openURL(upgradeUrl());
      }

      function refreshAccount() {
        return api.me().then(
          function (me) {
            ctx.online();
            state.set({ me: me, limits: SFX.Pricing.limits(me.plan) });
          },
          function (error) {
            ctx.handleError(error, refreshAccount);
          }
        );
      }

      function loadPricing() {
        return api.pricing().then(
          function (pricing) {
            state.set({ pricing: pricing });
          },
          function () {
            /* the built-in rules stand in until the next successful load */
          }
        );
      }

      function renderAccount() {
        var me = state.get("me");
        if (!me) return;
        var c = credits();
        $("acct-plan").textContent = (me.plan && (me.plan.name || me.plan.code)) || "Plan";
        $("acct-plan").setAttribute("data-plan", (me.plan && me.plan.code) || "");
        $("acct-credits").textContent = c.unlimited ? "Unlimited" : F.plural(c.remaining || 0, "credit");
        $("acct-period").textContent = c.period_end ? "· renews " + F.shortDate(c.period_end) : "";
        var empty = !c.unlimited && (c.remaining || 0) <= 0;
        document.body.setAttribute("data-credits", empty ? "empty" : "ok");
        D.show($("acct-upgrade"), empty || (me.plan && me.plan.code === "free"));
        if (empty) {
          state.set({ emptyPrompt: true });
          ctx.banner("upgrade", "You're out of credits for this period.", "Upgrade", openUpgrade);
        } else if (state.get("emptyPrompt")) {
          // Only the zero-balance prompt goes away with new credits; a 402's own prompt stays.
          state.set({ emptyPrompt: false });
          ctx.hideBanner("upgrade");
        }
        if (!empty) lowCredits(c);
        verifyEmail(me);
        $("settings-user").textContent = me.user ? me.user.email : "";
      }

      /** Below 20% of the period's credits: a banner with the way to more (a credit pack, else a larger plan). */
      function lowCredits(c) {
        var kind = $("banner").getAttribute("data-kind");
        if (!c.low) return hideBanner("low");
        if (kind && kind !== "low") return; // an error or a wait says more right now
        var text = "Only " + F.plural(c.remaining || 0, "credit") + " left this period" + (c.used_percent !== null && c.used_percent !== undefined ? " (" + Math.round(c.used_percent) + "% used)." : ".");
        ctx.banner("low", text, c.topup_url ? "Top up" : "Upgrade", function () {
          ctx.host.openURL(c.topup_url || upgradeUrl());
        });
      }

      /** Generation waits for a confirmed address: say where the link went and check again on request. */
      function verifyEmail(me) {
        if (!me.user || me.user.email_verified !== false) return hideBanner("verify");
        ctx.banner("verify", "Verify your email: we sent a link to " + me.user.email + ". Open it, then come back here.", "I've verified", refreshAccount);
      }
      function hideBanner(kind) {
        if ($("banner").getAttribute("data-kind") === kind) ctx.hideBanner(kind);
      }

      function setCredits(remaining) {
        var me = state.get("me");
        if (!me || remaining === undefined || remaining === null) return;
        // Spending moves credits from remaining to used; "low" is judged as the server judges it.
        var c = me.credits || {};
        var total = (c.remaining || 0) + (c.used || 0) + (c.reserved || 0);
        var used = (c.used || 0) + Math.max(0, (c.remaining || 0) - remaining);
        var patch = { remaining: remaining, used: used, low: !c.unlimited && total > 0 && remaining * 5 < total };
        if (c.allowance && !c.unlimited) patch.used_percent = Math.round((1000 * used) / c.allowance) / 10;
        // Only a confirmed address is charged, so a charge also settles the email question.
        var user = Object.assign({}, me.user, { email_verified: true });
        state.set({ me: Object.assign({}, me, { user: user, credits: Object.assign({}, c, patch) }) });
      }

      function costText(cost) {
        var c = credits();
        var text = "Costs " + F.plural(cost, "credit");
        if (!state.get("me") || c.unlimited) return { text: text, short: false };
        var left = c.remaining || 0;
        return cost > left ? { text: "Needs " + F.plural(cost, "credit") + " · " + left + " left", short: true } : { text: text + " · " + left + " left", short: false };
      }

      function updateCosts() {
        var pricing = state.get("pricing");
        var sfx = ctx.sfxRequest();
        var sfxCost = costText(SFX.Pricing.quoteSfx(pricing, { duration: sfx.duration_seconds, variations: sfx.variations }));
        $("sfx-cost").textContent = sfxCost.text;
        $("sfx-cost").title = sfx.duration_seconds === null ? SFX.Pricing.autoHint(pricing) : "";
        $("sfx-cost").classList.toggle("short", sfxCost.short);
        var chars = $("voice-text").value.trim().length;
        var voiceCost = costText(SFX.Pricing.quoteVoice(pricing, chars));
        $("voice-cost").textContent = chars ? voiceCost.text : "Type a script to see its cost";
        $("voice-cost").classList.toggle("short", chars > 0 && voiceCost.short);
        var limits = state.get("limits");
        $("voice-count").textContent = chars + " / " + limits.max_voice_chars;
        $("voice-count").classList.toggle("short", chars > limits.max_voice_chars);
        updateButtons();
      }

      var BLOCKED = {
        update: "Install the update to keep generating",
        credits: "You're out of credits",
        wait: "Wait for the countdown",
        busy: "",
      };
      function updateButtons() {
        var block = SFX.State.generateBlock(state.values);
        var sfxReady = !!$("sfx-prompt").value.trim();
        var voiceReady = !!$("voice-text").value.trim() && !!$("voice-voice").value && state.get("limits").voice !== false;
        $("sfx-generate").disabled = !!block || !sfxReady;
        $("voice-generate").disabled = !!block || !voiceReady;
        $("sfx-generate").title = BLOCKED[block] || "Enter";
        $("voice-generate").title = BLOCKED[block] || "Ctrl/Cmd+Enter";
        document.body.setAttribute("data-generate", block || "ready");
      }

      state.set({ limits: SFX.Pricing.limits(null) });
      state.subscribe(["me"], function () {
        renderAccount();
        ctx.applyLimits();
        updateCosts();
      });
      state.subscribe(["pricing"], updateCosts);
      state.subscribe(["busy", "spotting", "waitUntil", "update"], updateButtons);
      D.on($("acct-upgrade"), "click", openUpgrade);

      ctx.refreshAccount = refreshAccount;
      ctx.loadPricing = loadPricing;
      ctx.setCredits = setCredits;
      ctx.updateCosts = updateCosts;
      ctx.updateButtons = updateButtons;
      ctx.openUpgrade = openUpgrade;
    },
  };
})();
