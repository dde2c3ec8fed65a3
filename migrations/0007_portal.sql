-- Portal: audit trail of admin actions, dev mail outbox, password reset tokens.

-- Who did what to which object, when. Rows are never updated; the actor is kept as a
-- plain id (no foreign key) so the trail survives an account's anonymisation intact.
CREATE TABLE audit_log (
    id           bigserial PRIMARY KEY,
    actor_id     uuid,
    action       text NOT NULL,
    object_type  text NOT NULL,
    object_id    text,
    details      jsonb NOT NULL DEFAULT '{}'::jsonb,
    created_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX audit_log_created_idx ON audit_log (created_at DESC, id DESC);
CREATE INDEX audit_log_actor_idx ON audit_log (actor_id, created_at DESC);
CREATE INDEX audit_log_object_idx ON audit_log (object_type, object_id, created_at DESC);
CREATE INDEX audit_log_action_idx ON audit_log (action, created_at DESC);

-- Mail sent without SMTP configured (dev, test): the row is the delivery, read by admins
-- in the outbox viewer. With SMTP nothing is stored here, so reset links never sit in the
-- database of a production deployment.
CREATE TABLE mail_outbox (
    id          bigserial PRIMARY KEY,
    to_address  citext NOT NULL,
    subject     text NOT NULL,
    body        text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX mail_outbox_created_idx ON mail_outbox (created_at DESC, id DESC);
CREATE INDEX mail_outbox_to_idx ON mail_outbox (to_address);

-- One-time password reset tokens: only a SHA-256 of the token is stored, so a leaked
-- table cannot reset anyone's password.
CREATE TABLE password_reset_tokens (
    id          bigserial PRIMARY KEY,
    user_id     uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    token_hash  bytea NOT NULL UNIQUE,
    expires_at  timestamptz NOT NULL,
    used_at     timestamptz,
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX password_reset_tokens_user_idx ON password_reset_tokens (user_id);
