-- Email verification: generation waits until the address is proven to belong to the account holder.

-- Accounts that existed before verification was required keep working: their addresses were
-- the ones they signed in and received reset links with.
ALTER TABLE users ADD COLUMN email_verified_at timestamptz;
UPDATE users SET email_verified_at = created_at WHERE status <> 'deleted';

-- One-time links, stored only as SHA-256 digests. The address is kept with the token so that a
-- link sent before an email change cannot verify the new address.
CREATE TABLE email_verification_tokens (
    id          bigserial PRIMARY KEY,
    user_id     uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    email       citext NOT NULL,
    token_hash  bytea NOT NULL UNIQUE CHECK (length(token_hash) = 32),
    expires_at  timestamptz NOT NULL,
    used_at     timestamptz,
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX email_verification_tokens_user_idx ON email_verification_tokens (user_id, created_at DESC);
