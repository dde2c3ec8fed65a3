-- Alerts: customers' usage mails (80% and 100% of a period's allowance) and operators'
-- key-bank incidents. Business figures need no tables of their own: they are read from the
-- billing mirror, the plans and the generations.

-- A customer's choice about usage mails; no row means the default (mails on).
CREATE TABLE usage_alert_settings (
    user_id        uuid PRIMARY KEY REFERENCES users (id) ON DELETE CASCADE,
    mails_enabled  boolean NOT NULL,
    updated_at     timestamptz NOT NULL DEFAULT now()
);

-- One row per user, period and threshold: the primary key is what makes a mail go out once,
-- however many noticed the crossing at the same moment (every listening worker hears the
-- capture's announcement, and the sweep looks too). `claimed_at` is when a worker took the row
-- to deliver; a row left 'sending' by a crashed worker, or 'failed', is taken again by the sweep.
CREATE TABLE usage_alerts (
    user_id     uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    period_seq  integer NOT NULL,
    threshold   integer NOT NULL CHECK (threshold IN (80, 100)),
    used        integer NOT NULL,
    allowance   integer NOT NULL,
    status      text NOT NULL DEFAULT 'sending' CHECK (status IN ('sending', 'mailed', 'opted_out', 'failed', 'skipped')),
    attempts    integer NOT NULL DEFAULT 1,
    claimed_at  timestamptz NOT NULL DEFAULT now(),
    created_at  timestamptz NOT NULL DEFAULT now(),
    done_at     timestamptz,
    PRIMARY KEY (user_id, period_seq, threshold)
);
CREATE INDEX usage_alerts_retry ON usage_alerts (claimed_at) WHERE status IN ('sending', 'failed');

-- Operators' incidents (a key disabled as invalid, a key exhausted, the pool running dry, every
-- key cooling down). At most one open incident per kind and subject: opening is an insert that
-- only one worker wins, clearing an update that only one worker wins, so each is told once.
CREATE TABLE ops_incidents (
    id          bigserial PRIMARY KEY,
    kind        text NOT NULL CHECK (kind IN ('key_invalid', 'key_exhausted', 'pool_low', 'all_cooling')),
    subject     text NOT NULL,
    summary     text NOT NULL,
    details     jsonb NOT NULL DEFAULT '{}'::jsonb,
    opened_at   timestamptz NOT NULL DEFAULT now(),
    cleared_at  timestamptz
);
CREATE UNIQUE INDEX ops_incidents_open ON ops_incidents (kind, subject) WHERE cleared_at IS NULL;
CREATE INDEX ops_incidents_opened ON ops_incidents (opened_at DESC);
