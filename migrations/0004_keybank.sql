-- Provider key bank: upstream API keys, encrypted at rest, with their quota and health.
-- Runtime state (leases, cooldowns, error counts) lives in Redis; this table is the durable truth.
CREATE TABLE provider_keys (
    id                bigserial PRIMARY KEY,
    provider          text NOT NULL CHECK (provider IN ('elevenlabs', 'openai', 'anthropic')),
    label             text NOT NULL CHECK (length(label) BETWEEN 1 AND 100),
    -- AES-GCM under master key `key_version`; the row id and provider are bound as associated data,
    -- so a ciphertext copied onto another row does not decrypt.
    ciphertext        bytea NOT NULL,
    nonce             bytea NOT NULL CHECK (length(nonce) = 12),
    key_version       text NOT NULL,
    last4             text NOT NULL,
    status            text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'disabled', 'exhausted')),
    disabled_reason   text,
    max_concurrency   integer NOT NULL CHECK (max_concurrency BETWEEN 1 AND 1000),
    weight            integer NOT NULL DEFAULT 1 CHECK (weight BETWEEN 1 AND 1000),
    tier              text,
    quota_limit       bigint,
    quota_used        bigint,
    quota_reset_at    timestamptz,
    quota_checked_at  timestamptz,
    last_error        text,
    last_error_at     timestamptz,
    created_at        timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz NOT NULL DEFAULT now(),
    UNIQUE (provider, label)
);

CREATE INDEX provider_keys_provider_status ON provider_keys (provider, status);

-- A counter per provider, bumped in the same transaction as any change that decides which keys
-- may take traffic. Workers copy the candidate list to Redis tagged with this revision, and Redis
-- refuses an older copy, so a slow worker can never put a just-disabled key back into rotation.
CREATE TABLE keybank_revisions (
    provider  text PRIMARY KEY,
    revision  bigint NOT NULL
);

CREATE FUNCTION keybank_bump_revision() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    p text;
BEGIN
    IF TG_OP = 'DELETE' THEN
        p := OLD.provider;
    ELSE
        p := NEW.provider;
    END IF;
    INSERT INTO keybank_revisions (provider, revision) VALUES (p, 1)
    ON CONFLICT (provider) DO UPDATE SET revision = keybank_revisions.revision + 1;
    RETURN NULL;
END;
$$;

CREATE TRIGGER provider_keys_revision_on_change
    AFTER INSERT OR DELETE OR UPDATE OF status, max_concurrency, weight, quota_limit ON provider_keys
    FOR EACH ROW EXECUTE FUNCTION keybank_bump_revision();
