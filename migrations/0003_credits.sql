-- Plans, pricing rules and the credit ledger.
--
-- Money-like rules live here as data so the panel, the portal and the reservation all read
-- the same numbers. The ledger is append-only; every balance change on credit_accounts is
-- written in the same statement or transaction as the ledger entry that explains it, so
-- sum(credit_ledger.amount) per user always equals the account's spendable balance
-- (the view credit_consistency lists any account where it does not).

CREATE TABLE plans (
    code                text PRIMARY KEY CHECK (code ~ '^[a-z][a-z0-9_]*$'),
    name                text NOT NULL,
    price_cents         integer NOT NULL CHECK (price_cents >= 0),
    currency            text NOT NULL DEFAULT 'usd',
    monthly_credits     integer CHECK (monthly_credits >= 0),          -- NULL: unlimited
    -- Free periods follow the calendar month and renew lazily on first use; paid periods
    -- follow billing, which grants them through grant_period.
    calendar_periods    boolean NOT NULL DEFAULT false,
    requests_per_minute integer NOT NULL CHECK (requests_per_minute > 0),
    requests_per_hour   integer NOT NULL CHECK (requests_per_hour >= requests_per_minute),
    voice               boolean NOT NULL,
    max_sfx_seconds     integer NOT NULL CHECK (max_sfx_seconds BETWEEN 1 AND 30),
    max_variations      integer NOT NULL CHECK (max_variations BETWEEN 1 AND 4),
    max_voice_chars     integer NOT NULL CHECK (max_voice_chars > 0),
    retention_days      integer NOT NULL CHECK (retention_days > 0),
    formats             text[] NOT NULL CHECK (cardinality(formats) > 0),
    sort_order          integer NOT NULL
);

INSERT INTO plans (code, name, price_cents, monthly_credits, calendar_periods, requests_per_minute, requests_per_hour,
                   voice, max_sfx_seconds, max_variations, max_voice_chars, retention_days, formats, sort_order)
VALUES
    ('free',       'Free',        0,   20, true,   10,  100, true, 10, 1,   500,   7, ARRAY['wav', 'mp3'], 1),
    ('basic',      'Basic',     999,  500, false,  30,  600, true, 30, 2,  2500,  30, ARRAY['wav', 'mp3'], 2),
    ('pro',        'Pro',      1999, 2000, false,  60, 1500, true, 30, 4,  5000,  90, ARRAY['wav', 'mp3'], 3),
    ('enterprise', 'Enterprise', 4999, NULL, false, 120, 5000, true, 30, 4, 10000, 365, ARRAY['wav', 'mp3'], 4);

-- Credits for a request = max(minimum_credits, ceil(units / unit_size) * credits_per_block),
-- times the number of variations when per_variation. When the length is left to the model
-- (automatic SFX duration) the reservation counts reserve_units and the capture counts the
-- real length.
CREATE TABLE pricing_rules (
    code              text PRIMARY KEY,
    description       text NOT NULL,
    unit              text NOT NULL CHECK (unit IN ('second', 'character', 'request')),
    unit_size         integer NOT NULL CHECK (unit_size > 0),
    credits_per_block integer NOT NULL CHECK (credits_per_block >= 0),
    per_variation     boolean NOT NULL DEFAULT false,
    minimum_credits   integer NOT NULL DEFAULT 0 CHECK (minimum_credits >= 0),
    reserve_units     integer CHECK (reserve_units > 0)
);

INSERT INTO pricing_rules (code, description, unit, unit_size, credits_per_block, per_variation, minimum_credits, reserve_units)
VALUES
    ('sfx', 'Sound effect: 1 credit per started 10 seconds of audio, per variation. An automatic duration reserves '
            '30 seconds and is charged by the real length.', 'second', 10, 1, true, 1, 30),
    ('voice', 'Voice-over: 1 credit per started 250 characters of text.', 'character', 250, 1, false, 1, NULL),
    ('reuse', 'Reusing a cached identical result costs nothing.', 'request', 1, 0, false, 0, NULL);

CREATE TABLE credit_accounts (
    user_id         uuid PRIMARY KEY REFERENCES users(id),
    plan_code       text NOT NULL DEFAULT 'free' REFERENCES plans(code),
    -- Numbers each period so the expiry of its remainder has a stable ledger key.
    period_seq      integer NOT NULL DEFAULT 0,
    period_start    timestamptz NOT NULL DEFAULT now(),
    period_end      timestamptz NOT NULL DEFAULT now(),
    allowance       integer NOT NULL DEFAULT 0 CHECK (allowance >= 0),
    used            integer NOT NULL DEFAULT 0 CHECK (used >= 0),
    reserved        integer NOT NULL DEFAULT 0 CHECK (reserved >= 0),
    -- Spendable credits in two parts: the period's allowance (expires at period end) and
    -- credits that carry over (top-up packs, admin adjustments). Neither may go negative.
    period_balance  integer NOT NULL DEFAULT 0 CHECK (period_balance >= 0),
    topup_balance   integer NOT NULL DEFAULT 0 CHECK (topup_balance >= 0),
    past_due_since  timestamptz,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    CHECK (period_end >= period_start)
);

CREATE TABLE credit_holds (
    id            uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id       uuid NOT NULL REFERENCES credit_accounts(user_id),
    key           text NOT NULL CHECK (length(key) BETWEEN 1 AND 255),
    amount        integer NOT NULL CHECK (amount >= 0),
    -- What the hold took from each part of the balance (both 0 on unlimited plans), so a
    -- release gives back exactly that.
    from_period   integer NOT NULL CHECK (from_period >= 0),
    from_topup    integer NOT NULL CHECK (from_topup >= 0),
    period_seq    integer NOT NULL,
    status        text NOT NULL DEFAULT 'held' CHECK (status IN ('held', 'captured', 'released', 'expired')),
    captured      integer CHECK (captured >= 0 AND captured <= amount),
    created_at    timestamptz NOT NULL DEFAULT now(),
    expires_at    timestamptz NOT NULL,
    settled_at    timestamptz,
    CHECK (from_period + from_topup <= amount),
    CHECK ((status = 'held') = (settled_at IS NULL)),
    CHECK ((status = 'captured') = (captured IS NOT NULL))
);
-- One live hold per idempotency key: a held or captured key is never charged again, while a
-- key whose hold was released (nothing charged) may be reserved again by a retry. It is also
-- the index the service looks keys up by; every index here is paid for on each reserve.
CREATE UNIQUE INDEX credit_holds_live_key ON credit_holds (user_id, key) WHERE status IN ('held', 'captured');
CREATE INDEX credit_holds_due ON credit_holds (expires_at) WHERE status = 'held';

CREATE TABLE credit_ledger (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id         uuid NOT NULL REFERENCES users(id),
    kind            text NOT NULL CHECK (kind IN ('grant', 'reserve', 'capture', 'release', 'adjust', 'topup', 'expire')),
    amount          integer NOT NULL,              -- change of the spendable balance
    topup_amount    integer NOT NULL DEFAULT 0,    -- the part of amount that changed topup_balance
    reserved_change integer NOT NULL DEFAULT 0,    -- change of credits held
    credits         integer NOT NULL CHECK (credits >= 0),   -- size of the operation (hold, charge, grant)
    balance_after   integer NOT NULL CHECK (balance_after >= 0),
    hold_id         uuid REFERENCES credit_holds(id),
    idempotency_key text NOT NULL UNIQUE CHECK (length(idempotency_key) BETWEEN 1 AND 400),
    reason          text,
    actor           text,
    created_at      timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT credit_ledger_signs CHECK (CASE kind
        WHEN 'grant'   THEN amount >= 0 AND topup_amount = 0 AND reserved_change = 0
        WHEN 'topup'   THEN amount > 0 AND topup_amount = amount AND reserved_change = 0
        WHEN 'expire'  THEN amount <= 0 AND topup_amount = 0 AND reserved_change = 0
        WHEN 'adjust'  THEN reserved_change = 0
        WHEN 'reserve' THEN amount <= 0 AND topup_amount <= 0 AND reserved_change = credits
        WHEN 'capture' THEN amount = 0 AND topup_amount = 0 AND reserved_change = -credits
        WHEN 'release' THEN amount >= 0 AND topup_amount >= 0 AND reserved_change = -credits
    END)
);
CREATE INDEX credit_ledger_user ON credit_ledger (user_id, id);

-- Append-only: corrections are new entries (kind adjust), never edits.
CREATE FUNCTION credit_ledger_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'credit_ledger is append-only: % is not allowed', TG_OP
        USING ERRCODE = 'insufficient_privilege', HINT = 'Write a compensating adjust entry instead.';
END;
$$;

CREATE TRIGGER credit_ledger_append_only
    BEFORE UPDATE OR DELETE ON credit_ledger
    FOR EACH ROW EXECUTE FUNCTION credit_ledger_append_only();

-- Accounts whose stored balances disagree with their ledger or open holds (should be none).
CREATE VIEW credit_consistency AS
SELECT a.user_id,
       a.period_balance + a.topup_balance AS balance,
       coalesce(l.amount, 0)              AS ledger_balance,
       a.topup_balance,
       coalesce(l.topup_amount, 0)        AS ledger_topup,
       a.reserved,
       coalesce(l.reserved_change, 0)     AS ledger_reserved,
       coalesce(h.held, 0)                AS open_holds,
       (a.period_balance + a.topup_balance = coalesce(l.amount, 0)
        AND a.topup_balance = coalesce(l.topup_amount, 0)
        AND a.reserved = coalesce(l.reserved_change, 0)
        AND a.reserved = coalesce(h.held, 0)) AS consistent
  FROM credit_accounts a
  LEFT JOIN (SELECT user_id, sum(amount) AS amount, sum(topup_amount) AS topup_amount,
                    sum(reserved_change) AS reserved_change
               FROM credit_ledger GROUP BY user_id) l USING (user_id)
  LEFT JOIN (SELECT user_id, sum(amount) AS held
               FROM credit_holds WHERE status = 'held' GROUP BY user_id) h USING (user_id);
