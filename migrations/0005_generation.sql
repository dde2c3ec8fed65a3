-- Generations: every SFX / voice attempt, successful or not, and the idempotency records of the
-- requests that produced them.

-- One row per (user, Idempotency-Key). A retry with the same key finds this row: same parameters
-- -> the recorded generations are answered again; different parameters -> 409. A failed request
-- charged nothing, so its key may be used again (attempt counts the tries; it is part of the
-- credit-hold key so a new try never collides with the released hold of an old one).
CREATE TABLE generation_requests (
    id               uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id          uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    idempotency_key  text NOT NULL CHECK (length(idempotency_key) BETWEEN 1 AND 255),
    request_hash     text NOT NULL,
    kind             text NOT NULL CHECK (kind IN ('sfx', 'voice')),
    status           text NOT NULL DEFAULT 'in_progress' CHECK (status IN ('in_progress', 'succeeded', 'failed')),
    attempt          integer NOT NULL DEFAULT 1,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    UNIQUE (user_id, idempotency_key)
);

CREATE TABLE generations (
    id                   uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id              uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    request_id           uuid REFERENCES generation_requests (id) ON DELETE SET NULL,
    kind                 text NOT NULL CHECK (kind IN ('sfx', 'voice')),
    status               text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'succeeded', 'failed', 'cancelled')),
    params               jsonb NOT NULL,
    prompt               text,          -- sfx prompt
    text                 text,          -- voice script
    variation            integer NOT NULL DEFAULT 0,
    idempotency_key      text,
    -- sha256 of the normalised parameters that decide the audio (not the variation index):
    -- with the variation it identifies a result that `reuse` may serve from cache.
    request_hash         text NOT NULL,
    cached               boolean NOT NULL DEFAULT false,
    storage_key          text,
    format               text,
    duration_seconds     double precision,
    sample_rate          integer,
    size_bytes           bigint,
    credits_charged      integer NOT NULL DEFAULT 0,
    hold_id              uuid,          -- credit_holds.id
    upstream_key_id      bigint,        -- provider_keys.id; no FK so removing a key keeps history
    upstream_request_id  text,
    upstream_cost        integer,       -- the provider's character-cost header, summed over chunks
    upstream_attempts    integer NOT NULL DEFAULT 0,
    latency_ms           integer,
    failure_reason       text,
    created_at           timestamptz NOT NULL DEFAULT now(),
    completed_at         timestamptz,
    deleted_at           timestamptz
);

-- History: newest first per user, optionally per kind, keyset-paginated on (created_at, id).
CREATE INDEX generations_history ON generations (user_id, created_at DESC, id DESC)
    WHERE deleted_at IS NULL AND status = 'succeeded';
-- Cache lookups for `reuse`.
CREATE INDEX generations_cache ON generations (request_hash, variation)
    WHERE status = 'succeeded' AND deleted_at IS NULL AND storage_key IS NOT NULL;
-- Is a stored file still referenced by any live row?
CREATE INDEX generations_storage_key ON generations (storage_key) WHERE deleted_at IS NULL;
-- Admin usage page and the sweeps (abandoned pending rows, retention).
CREATE INDEX generations_created ON generations (created_at);
CREATE INDEX generations_pending ON generations (created_at) WHERE status = 'pending';
