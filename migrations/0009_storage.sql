-- Blob deletions the store could not carry out when they were asked for (the bucket was down).
-- The rows that referred to these blobs are already gone or hidden, so without this list an outage
-- would leave the blobs in the bucket for ever; a background retry in every server process works
-- it off once the store answers again.
CREATE TABLE storage_deletions (
    key          text PRIMARY KEY CHECK (key ~ '^[0-9a-f]{64}\.[a-z0-9]{1,8}$'),
    attempts     integer NOT NULL DEFAULT 0,
    next_try_at  timestamptz NOT NULL DEFAULT now(),
    created_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX storage_deletions_due_idx ON storage_deletions (next_try_at);
