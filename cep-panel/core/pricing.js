/*
 * Credit quotes shown before generating, from GET /v1/pricing (the same rules the server reserves with)
 * and the plan's limits from GET /v1/me. Mirrors server/credits/pricing.py: credits for a request =
 * max(minimum_credits, ceil(units / unit_size) * credits_per_block), times variations when per_variation;
 * an automatic SFX duration is quoted at the rule's reserve_units.
 */
(function (factory) {
  var api = factory();
  if (typeof window !== "undefined" && window.document) {
    (window.SFX = window.SFX || {}).Pricing = api;
  } else {
    module.exports = api;
  }
})(function () {
  "use strict";

  // Used until /v1/pricing answers, so a cost is never shown blank; the server's rules replace them.
  var FALLBACK_RULES = {
    sfx: { code: "sfx", unit: "second", unit_size: 10, credits_per_block: 1, per_variation: true, minimum_credits: 1, reserve_units: 30 },
    voice: { code: "voice", unit: "character", unit_size: 250, credits_per_block: 1, per_variation: false, minimum_credits: 1, reserve_units: null },
  };
  var FALLBACK_LIMITS = { voice: true, max_sfx_seconds: 30, max_variations: 1, max_voice_chars: 500 };

  /** Rules by code, whether the server sends a list or a map. */
  function rulesFrom(pricing) {
    var out = {};
    var source = (pricing && (pricing.rules || pricing.pricing_rules)) || null;
    var list = [];
    if (source instanceof Array) list = source;
    else if (source) {
      for (var key in source) {
        var r = source[key];
        list.push(r && r.code ? r : Object.assign({ code: key }, r));
      }
    }
    for (var i = 0; i < list.length; i++) if (list[i] && list[i].code) out[list[i].code] = list[i];
    return out;
  }

  function creditsFor(rule, units) {
    var rounded = Math.round(units * 10) / 10;
    var blocks = Math.ceil(rounded / rule.unit_size);
    return Math.max(rule.minimum_credits || 0, blocks * rule.credits_per_block);
  }

  function ruleFor(pricing, code) {
    return rulesFrom(pricing)[code] || FALLBACK_RULES[code];
  }

  /** @param {{duration: number|null, variations: number}} request duration null = automatic */
  function quoteSfx(pricing, request) {
    var rule = ruleFor(pricing, "sfx");
    var variations = Math.max(1, request.variations || 1);
    var each;
    if (rule.unit === "request") each = creditsFor(rule, 1);
    else each = creditsFor(rule, request.duration === null || request.duration === undefined ? rule.reserve_units || 30 : request.duration);
    return rule.per_variation ? each * variations : each;
  }

  function quoteVoice(pricing, characters) {
    var rule = ruleFor(pricing, "voice");
    if (characters <= 0) return 0;
    return creditsFor(rule, rule.unit === "request" ? 1 : characters);
  }

  /** The plan's limits from /v1/me's plan (flat or under "features"). */
  function limits(plan) {
    var source = (plan && (plan.features || plan)) || {};
    var out = {};
    for (var key in FALLBACK_LIMITS) {
      var value = source[key] !== undefined ? source[key] : plan && plan[key];
      out[key] = value === undefined || value === null ? FALLBACK_LIMITS[key] : value;
    }
    return out;
  }

  /** "Automatic duration reserves 3 credits; you pay for the real length." style hint, or "". */
  function autoHint(pricing) {
    var rule = ruleFor(pricing, "sfx");
    if (rule.unit !== "second" || !rule.reserve_units) return "";
    return "Auto holds " + creditsFor(rule, rule.reserve_units) + " per variation; you pay for the real length.";
  }

  return { quoteSfx: quoteSfx, quoteVoice: quoteVoice, limits: limits, autoHint: autoHint, rulesFrom: rulesFrom };
});
