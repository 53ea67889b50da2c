-- The sandbox payment gateway's ledger, shared by every node of a cluster as a real
-- gateway's records are: one row per idempotency key, the first outcome recorded for it
-- (a capture, a decline, or a void that bars any later charge). A key is never
-- captured twice because it has one row.
CREATE TABLE gateway_ledger (
    key          TEXT PRIMARY KEY,
    outcome      TEXT NOT NULL CHECK (outcome IN ('captured', 'declined', 'voided')),
    detail       TEXT NOT NULL,
    recorded_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);
