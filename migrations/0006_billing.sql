-- Billing: our mirror of Stripe customers, subscriptions and invoices, the webhook events already
-- applied, and credit top-up purchases. Stripe stays the source of truth; these rows are what the
-- portal reads and what webhook handlers lock to apply events one customer at a time.

-- One row per Stripe customer. The row exists before any event about the customer is applied
-- (webhooks insert it when missing), so `SELECT ... FOR UPDATE` on it serialises that customer's
-- events even when the link to a user is not known yet.
CREATE TABLE billing_customers (
    stripe_customer_id  text PRIMARY KEY,
    user_id             uuid REFERENCES users (id) ON DELETE SET NULL,
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX billing_customers_user_idx ON billing_customers (user_id, created_at DESC);

CREATE TABLE billing_subscriptions (
    stripe_subscription_id  text PRIMARY KEY,
    stripe_customer_id      text NOT NULL REFERENCES billing_customers (stripe_customer_id),
    user_id                 uuid REFERENCES users (id) ON DELETE SET NULL,
    price_id                text NOT NULL,
    plan_code               text,             -- NULL when the price is not one of our plans
    status                  text NOT NULL,    -- Stripe's: active, past_due, canceled, ...
    cancel_at_period_end    boolean NOT NULL DEFAULT false,
    current_period_start    timestamptz,
    current_period_end      timestamptz,
    canceled_at             timestamptz,
    ended_at                timestamptz,
    -- Set by a failed renewal, cleared by a paid invoice; credits enforces the grace period from it.
    past_due_since          timestamptz,
    stripe_created          timestamptz NOT NULL,
    synced_at               timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX billing_subscriptions_user_idx ON billing_subscriptions (user_id, stripe_created DESC);
CREATE INDEX billing_subscriptions_customer_idx ON billing_subscriptions (stripe_customer_id);

-- Every webhook event applied, written in the same transaction as its effects: a redelivery
-- finds its id here and changes nothing.
CREATE TABLE stripe_events (
    id                  text PRIMARY KEY,
    type                text NOT NULL,
    stripe_created      timestamptz NOT NULL,
    stripe_customer_id  text,
    outcome             text NOT NULL,
    processed_at        timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX stripe_events_processed_idx ON stripe_events (processed_at DESC);

-- Where a status sits in an invoice's life; breaks ties between events from the same second.
CREATE FUNCTION billing_invoice_status_rank(status text) RETURNS integer
    LANGUAGE sql IMMUTABLE AS $$ SELECT CASE status WHEN 'draft' THEN 0 WHEN 'open' THEN 1 ELSE 2 END $$;

CREATE TABLE billing_invoices (
    stripe_invoice_id       text PRIMARY KEY,
    stripe_customer_id      text NOT NULL,
    stripe_subscription_id  text,
    user_id                 uuid REFERENCES users (id) ON DELETE SET NULL,
    number                  text,
    status                  text NOT NULL,
    billing_reason          text,
    amount_cents            bigint NOT NULL,
    currency                text NOT NULL,
    hosted_invoice_url      text,
    invoice_pdf             text,
    stripe_created          timestamptz NOT NULL,
    -- Created time of the newest event written into this row: an older event never overwrites it.
    event_created           timestamptz NOT NULL,
    -- When this invoice's allowance went through the ledger (paid subscription invoices only).
    granted_at              timestamptz,
    updated_at              timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX billing_invoices_user_idx ON billing_invoices (user_id, stripe_created DESC);

-- Credit packs bought through Checkout in payment mode. Refunds claw credits back through the
-- ledger; what the balance could no longer cover is recorded as unrecovered, never forced below zero.
CREATE TABLE billing_top_ups (
    checkout_session_id  text PRIMARY KEY,
    user_id              uuid REFERENCES users (id) ON DELETE SET NULL,
    stripe_customer_id   text,
    payment_intent_id    text UNIQUE,
    pack_code            text NOT NULL,
    credits              integer NOT NULL CHECK (credits > 0),
    amount_cents         bigint NOT NULL,
    currency             text NOT NULL,
    refunded_cents       bigint NOT NULL DEFAULT 0,
    clawed_back          integer NOT NULL DEFAULT 0 CHECK (clawed_back >= 0),
    unrecovered          integer NOT NULL DEFAULT 0 CHECK (unrecovered >= 0),
    created_at           timestamptz NOT NULL DEFAULT now(),
    updated_at           timestamptz NOT NULL DEFAULT now(),
    CHECK (clawed_back + unrecovered <= credits)
);
CREATE INDEX billing_top_ups_user_idx ON billing_top_ups (user_id, created_at DESC);
