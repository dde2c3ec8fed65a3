-- A generation opens with one statement and closes with one (issue 14).
--
-- It used to take two explicit transactions of two statements each: BEGIN, the idempotency
-- record with its pending rows, the credit hold, COMMIT; then BEGIN, the row's success, the
-- capture, COMMIT. That is eight round trips, and eight statements for Postgres to parse, bind and
-- run, per generation. The functions below make the same writes, under the same locks, taken in the
-- same order, as one statement each. A statement is its own transaction, so each is still all or
-- nothing. plpgsql keeps the plans of the statements inside it for the life of the session, so
-- the money rules are planned once per connection, not once per call.
--
-- The credits domain's two hot statements (reserve, settle) become functions here too. Its own
-- data access (server/credits/repo.py) and the generation functions call the same copy of the
-- money rules.
--
-- Lock order stays what it was everywhere: generation rows, then the credit account, then holds.
-- The opening takes the account before it writes generation rows, but those rows are new and no
-- one else can be waiting on them.


-- Set credits aside under one key per amount, all or none: the account row is locked, a hold
-- and its ledger entry are written per key and the balance moves once. Nothing is written and
-- no row is returned when the fast path does not apply: no account yet, a calendar period to
-- roll over, payment past due, a live hold for one of the keys already, or not enough credits.
-- The caller then works out which, under the same lock (server/credits/service.py).
-- The allowance of the period is spent before credits that carry over.
CREATE FUNCTION credit_reserve(
    p_user uuid, p_keys text[], p_amounts integer[], p_ttl double precision, p_grace_days integer
) RETURNS TABLE (id uuid, user_id uuid, key text, amount integer, status text, expires_at timestamptz)
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    acct record;
    period_left integer;
    topup_left integer;
    take_period integer;
    take_topup integer;
    total integer := 0;
    one_key text;
    hold credit_holds;
BEGIN
    IF cardinality(p_keys) IS DISTINCT FROM cardinality(p_amounts) THEN
        RAISE EXCEPTION 'credit_reserve: % keys for % amounts', cardinality(p_keys), cardinality(p_amounts);
    END IF;
    SELECT a.period_seq, a.period_balance, a.topup_balance, a.reserved, p.monthly_credits IS NULL AS unlimited
      INTO acct
      FROM credit_accounts a
      JOIN plans p ON p.code = a.plan_code
     WHERE a.user_id = p_user
       AND (a.period_end > now() OR NOT p.calendar_periods)
       AND (a.past_due_since IS NULL OR a.past_due_since > now() - make_interval(days => p_grace_days))
       FOR UPDATE OF a;
    IF NOT FOUND THEN
        RETURN;
    END IF;
    SELECT coalesce(sum(x), 0) INTO total FROM unnest(p_amounts) AS x;
    IF NOT acct.unlimited AND acct.period_balance + acct.topup_balance < total THEN
        RETURN;
    END IF;
    -- Under the account lock: holds are only written under it, so none for these keys can appear
    -- before this statement commits. One equality lookup per key: with `key = ANY (p_keys)` the
    -- planner scans every live hold of the account (its whole history of captures).
    FOREACH one_key IN ARRAY p_keys LOOP
        IF EXISTS (SELECT 1 FROM credit_holds h
                    WHERE h.user_id = p_user AND h.key = one_key AND h.status IN ('held', 'captured')) THEN
            RETURN;
        END IF;
    END LOOP;
    period_left := acct.period_balance;
    topup_left := acct.topup_balance;
    FOR i IN 1 .. coalesce(cardinality(p_keys), 0) LOOP
        take_period := CASE WHEN acct.unlimited THEN 0 ELSE least(p_amounts[i], period_left) END;
        take_topup := CASE WHEN acct.unlimited THEN 0 ELSE p_amounts[i] - take_period END;
        INSERT INTO credit_holds (user_id, key, amount, from_period, from_topup, period_seq, expires_at)
        VALUES (p_user, p_keys[i], p_amounts[i], take_period, take_topup, acct.period_seq,
                now() + make_interval(secs => p_ttl))
        RETURNING * INTO hold;
        period_left := period_left - take_period;
        topup_left := topup_left - take_topup;
        INSERT INTO credit_ledger (user_id, kind, amount, topup_amount, reserved_change, credits, balance_after,
                                   hold_id, idempotency_key)
        VALUES (p_user, 'reserve', -(take_period + take_topup), -take_topup, hold.amount, hold.amount,
                period_left + topup_left, hold.id, 'reserve:' || hold.id);
        id := hold.id;
        user_id := hold.user_id;
        key := hold.key;
        amount := hold.amount;
        status := hold.status;
        expires_at := hold.expires_at;
        RETURN NEXT;
    END LOOP;
    UPDATE credit_accounts
       SET period_balance = period_left, topup_balance = topup_left, reserved = acct.reserved + total,
           updated_at = now()
     WHERE user_id = p_user;
END;
$$;


-- Settle a held hold: p_status 'captured' charges p_captured of it (at most the hold), any other
-- status charges nothing; the rest goes back to the part of the balance it came from. Allowance
-- held across a period change is not given back (that period's allowance has expired). No row
-- when the hold is missing or already settled.
--
-- The new balances are computed from the row as the `account` CTE locked it (the latest
-- version), never from `a.*` of the UPDATE: under READ COMMITTED an UPDATE first builds the new
-- row from the version its snapshot saw and checks the CHECK constraints on it before it notices
-- the newer version, so mixing the two would fail "balance >= 0" spuriously under concurrency.
CREATE FUNCTION credit_settle(p_hold uuid, p_captured integer, p_status text, p_reason text)
RETURNS TABLE (user_id uuid, amount integer, captured integer, returned integer, balance integer, used integer,
               allowance integer)
LANGUAGE plpgsql AS $$
#variable_conflict use_column
BEGIN
    RETURN QUERY
    WITH account AS (
        SELECT a.user_id, a.period_seq, a.period_balance, a.topup_balance, a.reserved, a.used
          FROM credit_accounts a
         WHERE a.user_id = (SELECT h.user_id FROM credit_holds h WHERE h.id = p_hold)
           FOR UPDATE
    ), hold AS (
        UPDATE credit_holds h
           SET status = p_status,
               captured = CASE WHEN p_status = 'captured' THEN least(p_captured, h.amount) END,
               settled_at = now()
          FROM account
         WHERE h.id = p_hold AND h.status = 'held' AND h.user_id = account.user_id
     RETURNING h.id, h.user_id, h.amount, coalesce(h.captured, 0) AS captured,
               h.from_topup, h.from_period, (h.period_seq = account.period_seq) AS same_period
    ), split AS (
        SELECT hold.*, least(hold.captured, hold.from_period) AS charged_period
          FROM hold
    ), back AS (
        SELECT split.*,
               CASE WHEN split.same_period THEN split.from_period - split.charged_period ELSE 0 END AS back_period,
               split.from_topup - least(split.captured - split.charged_period, split.from_topup) AS back_topup
          FROM split
    ), credit AS (
        UPDATE credit_accounts a
           SET period_balance = account.period_balance + back.back_period,
               topup_balance = account.topup_balance + back.back_topup,
               reserved = account.reserved - back.amount,
               used = account.used + back.captured,
               updated_at = now()
          FROM back, account
         WHERE a.user_id = back.user_id
     RETURNING a.period_balance + a.topup_balance AS balance, a.used, a.allowance
    ), entries AS (
        INSERT INTO credit_ledger (user_id, kind, amount, topup_amount, reserved_change, credits, balance_after,
                                   hold_id, idempotency_key, reason)
        SELECT back.user_id, 'capture', 0, 0, -back.captured, back.captured,
               credit.balance - back.back_period - back.back_topup, back.id, 'capture:' || back.id, NULL
          FROM back, credit
         WHERE p_status = 'captured'
        UNION ALL
        SELECT back.user_id, 'release', back.back_period + back.back_topup, back.back_topup,
               -(back.amount - back.captured), back.amount - back.captured,
               credit.balance, back.id, 'release:' || back.id, p_reason
          FROM back, credit
         WHERE p_status <> 'captured' OR back.amount > back.captured
    )
    SELECT back.user_id, back.amount, back.captured, back.back_period + back.back_topup, credit.balance,
           credit.used, credit.allowance
      FROM back, credit;
END;
$$;


-- Open a generation: the idempotency record, a credit hold per paid take (all or none) and a
-- pending generations row per take. The commit does not wait for the disk: losing it in a crash
-- of Postgres loses only a request that was never answered nor charged, and the closing
-- statement's (synchronous) commit flushes it with everything before it anyway.
--
-- One row back. fresh: this call opened the request (generation_ids and hold_ids, the latter in
-- the order of p_hold_keys, say what it wrote). Not fresh: the record that was already there
-- under this Idempotency-Key, untouched (a retry, a double click, a takeover to decide).
-- No row: the credits' fast path did not apply; nothing was written, and the caller opens the
-- request in an explicit transaction that finds out why (server/generation/service.py).
CREATE FUNCTION generation_open(
    p_user uuid, p_idempotency_key text, p_request_hash text, p_kind text, p_owner text,
    p_params jsonb, p_prompt text, p_text text, p_variations integer[], p_audio_hash text,
    p_hold_keys text[], p_hold_amounts integer[], p_hold_ttl double precision, p_grace_days integer
) RETURNS TABLE (id uuid, status text, request_hash text, attempt integer, updated_at timestamptz, fresh boolean,
                 generation_ids uuid[], hold_ids uuid[], hold_expires_at timestamptz[])
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    claim record;
    gen_ids uuid[];
    holds uuid[];
    hold_expiry timestamptz[];
BEGIN
    PERFORM set_config('synchronous_commit', 'off', true);
    INSERT INTO generation_requests AS r (user_id, idempotency_key, request_hash, kind, owner)
    VALUES (p_user, p_idempotency_key, p_request_hash, p_kind, p_owner)
    ON CONFLICT ON CONSTRAINT generation_requests_user_id_idempotency_key_key DO NOTHING
    RETURNING r.id, r.status, r.request_hash, r.attempt, r.updated_at INTO claim;
    IF NOT FOUND THEN
        -- The conflicting insert has committed (ON CONFLICT waited for it), and this statement
        -- takes a new snapshot, so the record is there to read.
        RETURN QUERY
        SELECT r.id, r.status, r.request_hash, r.attempt, r.updated_at, false, NULL::uuid[], NULL::uuid[],
               NULL::timestamptz[]
          FROM generation_requests r
         WHERE r.user_id = p_user AND r.idempotency_key = p_idempotency_key;
        RETURN;
    END IF;
    IF coalesce(cardinality(p_hold_keys), 0) > 0 THEN
        SELECT array_agg(h.id ORDER BY h.n), array_agg(h.expires_at ORDER BY h.n)
          INTO holds, hold_expiry
          FROM credit_reserve(p_user, p_hold_keys, p_hold_amounts, p_hold_ttl, p_grace_days)
               WITH ORDINALITY AS h (id, user_id, key, amount, status, expires_at, n);
        IF holds IS NULL THEN
            -- Take the record back: a retry waiting on it then inserts its own, and the slow
            -- path opens this one again with the reason it cannot be served.
            DELETE FROM generation_requests r WHERE r.id = claim.id;
            RETURN;
        END IF;
    END IF;
    WITH g AS (
        INSERT INTO generations (user_id, request_id, kind, params, prompt, text, variation, idempotency_key,
                                 request_hash)
        SELECT p_user, claim.id, p_kind, p_params, p_prompt, p_text, v, p_idempotency_key, p_audio_hash
          FROM unnest(p_variations) AS v
        RETURNING generations.id AS gid, generations.variation AS var
    )
    SELECT array_agg(g.gid ORDER BY g.var) INTO gen_ids FROM g;
    RETURN QUERY SELECT claim.id, claim.status, claim.request_hash, claim.attempt, claim.updated_at, true, gen_ids,
                        holds, hold_expiry;
END;
$$;


-- Close a take that produced stored audio: its row succeeds (only while still pending: a retry
-- that took the request over closed it, and its settlement is the retry's), with p_finish_request
-- the request does too (only while try p_attempt still owns it), and its hold is captured. The
-- commit waits for the WAL flush (the session default): once the audio is answered, its charge
-- and history row survive a crash of Postgres.
--
-- No row: the generations row was no longer pending; nothing was written. A hold captured before
-- (a retried request) keeps its figure, and charged_now is then NULL: this call moved nothing.
-- A hold released meanwhile (the sweep, at its expiry) rolls everything back with SQLSTATE
-- CR409, a missing one with CR404.
CREATE FUNCTION generation_succeed(
    p_generation uuid, p_hold uuid, p_charge integer, p_finish_request uuid, p_attempt integer,
    p_storage_key text, p_format text, p_duration_seconds double precision, p_sample_rate integer,
    p_size_bytes bigint, p_cached boolean, p_upstream_key_id bigint, p_upstream_request_id text,
    p_upstream_cost integer, p_upstream_attempts integer, p_latency_ms integer
) RETURNS TABLE (id uuid, user_id uuid, request_id uuid, kind text, status text, params jsonb, prompt text,
                 text text, variation integer, request_hash text, cached boolean, storage_key text, format text,
                 duration_seconds double precision, sample_rate integer, size_bytes bigint, credits_charged integer,
                 hold_id uuid, failure_reason text, created_at timestamptz, completed_at timestamptz, takes integer,
                 charged_now integer, balance integer, used integer, allowance integer)
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    g generations;
    settled record;
    held credit_holds;
BEGIN
    UPDATE generations
       SET status = 'succeeded', storage_key = p_storage_key, format = p_format,
           duration_seconds = p_duration_seconds, sample_rate = p_sample_rate, size_bytes = p_size_bytes,
           credits_charged = p_charge, hold_id = p_hold, cached = p_cached, upstream_key_id = p_upstream_key_id,
           upstream_request_id = p_upstream_request_id, upstream_cost = p_upstream_cost,
           upstream_attempts = p_upstream_attempts, latency_ms = p_latency_ms, completed_at = now()
     WHERE generations.id = p_generation AND generations.status = 'pending'
    RETURNING * INTO g;
    IF NOT FOUND THEN
        RETURN;
    END IF;
    IF p_finish_request IS NOT NULL THEN
        UPDATE generation_requests r SET status = 'succeeded', updated_at = now()
         WHERE r.id = p_finish_request AND (p_attempt IS NULL OR r.attempt = p_attempt);
    END IF;
    IF p_hold IS NOT NULL THEN
        SELECT * INTO settled FROM credit_settle(p_hold, p_charge, 'captured', NULL);
        IF FOUND THEN
            charged_now := settled.captured;
            balance := settled.balance;
            used := settled.used;
            allowance := settled.allowance;
        ELSE
            SELECT * INTO held FROM credit_holds h WHERE h.id = p_hold;
            IF NOT FOUND THEN
                RAISE EXCEPTION 'credit hold % does not exist', p_hold USING ERRCODE = 'CR404';
            ELSIF held.status <> 'captured' THEN
                RAISE EXCEPTION 'credit hold % was %', p_hold, held.status USING ERRCODE = 'CR409';
            ELSIF held.captured <> g.credits_charged THEN
                UPDATE generations SET credits_charged = held.captured
                 WHERE generations.id = p_generation
                RETURNING * INTO g;
            END IF;
        END IF;
    END IF;
    id := g.id; user_id := g.user_id; request_id := g.request_id; kind := g.kind; status := g.status;
    params := g.params; prompt := g.prompt; text := g.text; variation := g.variation;
    request_hash := g.request_hash; cached := g.cached; storage_key := g.storage_key; format := g.format;
    duration_seconds := g.duration_seconds; sample_rate := g.sample_rate; size_bytes := g.size_bytes;
    credits_charged := g.credits_charged; hold_id := g.hold_id; failure_reason := g.failure_reason;
    created_at := g.created_at; completed_at := g.completed_at;
    takes := coalesce((g.params->>'takes')::integer, 1);
    RETURN NEXT;
END;
$$;


-- Close takes that produced nothing: their rows fail (only those still pending) and, if this
-- call closed any, their holds are released. A row no longer pending was taken over with its
-- hold by a retry, or closed by the sweep: its hold is not this call's to release. Returns how
-- many rows this call closed.
CREATE FUNCTION generation_fail(
    p_generations uuid[], p_holds uuid[], p_status text, p_reason text, p_release_reason text,
    p_hold_id uuid, p_upstream_key_id bigint, p_upstream_request_id text, p_upstream_cost integer,
    p_upstream_attempts integer, p_latency_ms integer
) RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    closed integer;
    hold uuid;
BEGIN
    UPDATE generations g
       SET status = p_status, failure_reason = p_reason, hold_id = p_hold_id, upstream_key_id = p_upstream_key_id,
           upstream_request_id = p_upstream_request_id, upstream_cost = p_upstream_cost,
           upstream_attempts = p_upstream_attempts, latency_ms = p_latency_ms, credits_charged = 0,
           completed_at = now()
     WHERE g.id = ANY (p_generations) AND g.status = 'pending';
    GET DIAGNOSTICS closed = ROW_COUNT;
    IF closed > 0 AND p_holds IS NOT NULL THEN
        FOREACH hold IN ARRAY p_holds LOOP
            PERFORM credit_settle(hold, NULL, 'released', p_release_reason);
        END LOOP;
    END IF;
    RETURN closed;
END;
$$;
