-- Prompt assistance: LLM keys in the key bank, token pricing, plan flags, and a row per assist request.

-- The provider registry (server/providers) is the list of providers; a fixed list here would make
-- adding one a migration too. The shape check keeps junk out.
ALTER TABLE provider_keys DROP CONSTRAINT provider_keys_provider_check;
ALTER TABLE provider_keys ADD CONSTRAINT provider_keys_provider_check CHECK (provider ~ '^[a-z][a-z0-9_]{1,30}$');

-- LLM calls are priced by the tokens the provider reports (prompt + reply).
ALTER TABLE pricing_rules DROP CONSTRAINT pricing_rules_unit_check;
ALTER TABLE pricing_rules ADD CONSTRAINT pricing_rules_unit_check CHECK (unit IN ('second', 'character', 'request', 'token'));

INSERT INTO pricing_rules (code, description, unit, unit_size, credits_per_block, per_variation, minimum_credits, reserve_units)
VALUES ('assist', 'Prompt assistance: 1 credit per started 2,000 tokens (prompt and reply). The request''s token '
                  'ceiling is reserved and the tokens the provider reports are charged; failed or unusable '
                  'replies cost nothing.', 'token', 2000, 1, false, 1, NULL);

-- Which assist features a plan offers (sfx_prompt, spot, voice_script).
ALTER TABLE plans ADD COLUMN assist_features text[] NOT NULL DEFAULT '{}'
    CHECK (assist_features <@ ARRAY['sfx_prompt', 'spot', 'voice_script']);
UPDATE plans SET assist_features = ARRAY['sfx_prompt'] WHERE code = 'free';
UPDATE plans SET assist_features = ARRAY['sfx_prompt', 'spot', 'voice_script'] WHERE code IN ('basic', 'pro', 'enterprise');

-- One row per (user, Idempotency-Key): a retry of a succeeded request is answered from `result`
-- without a new charge; a failed one (nothing charged) may run again as a new attempt, whose
-- number is part of its credit-hold key.
CREATE TABLE assist_requests (
    id                uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id           uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    idempotency_key   text NOT NULL CHECK (length(idempotency_key) BETWEEN 1 AND 255),
    request_hash      text NOT NULL,
    feature           text NOT NULL CHECK (feature IN ('sfx_prompt', 'spot', 'voice_script')),
    status            text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'succeeded', 'failed', 'cancelled')),
    attempt           integer NOT NULL DEFAULT 1,
    prompt_version    text NOT NULL,
    provider          text,
    model             text,
    upstream_key_id   bigint,          -- provider_keys.id; no FK so removing a key keeps history
    upstream_attempts integer NOT NULL DEFAULT 0,
    input_tokens      integer,
    output_tokens     integer,
    credits_reserved  integer NOT NULL DEFAULT 0,
    credits_charged   integer NOT NULL DEFAULT 0,
    hold_id           uuid,            -- credit_holds.id
    result            jsonb,
    failure_reason    text,
    latency_ms        integer,
    created_at        timestamptz NOT NULL DEFAULT now(),
    completed_at      timestamptz,
    UNIQUE (user_id, idempotency_key)
);
CREATE INDEX assist_requests_user ON assist_requests (user_id, created_at DESC);
