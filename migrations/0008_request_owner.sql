-- The worker process running an in-progress request: the application_name of that process's
-- owner connection (server/generation/owner.py). While no session by that name is connected,
-- the owner is gone and a retry with the same Idempotency-Key may take the request over at
-- once. NULL on rows written before this migration: those fall back to the age rule.
ALTER TABLE generation_requests ADD COLUMN owner text;

-- The orphan sweep (every CREDIT_HOLD_TTL/10 seconds, in every worker) looks only at requests in
-- progress, a handful among millions.
CREATE INDEX generation_requests_in_progress ON generation_requests (updated_at) WHERE status = 'in_progress';
