-- 0001: the records of a Speedy Cheers market.
-- Every record keeps its full form in `body` (the engine's JSON of it); the columns
-- beside it are what the constraints, the indexes and ops' queries need. Money is
-- bigint minor units; times are Unix milliseconds. Orders and their events, the hot
-- write path, keep `body` as json (stored as written, no conversion on insert); the
-- rest as jsonb.

CREATE TABLE users (
    id            uuid PRIMARY KEY,
    created_at_ms bigint NOT NULL,
    body          jsonb NOT NULL
);

CREATE TABLE associates (
    id            uuid PRIMARY KEY,
    created_at_ms bigint NOT NULL,
    body          jsonb NOT NULL
);

CREATE TABLE orders (
    id             uuid PRIMARY KEY,
    request_id     uuid NOT NULL,
    user_id        uuid NOT NULL,
    associate_id   uuid NOT NULL,
    state          text NOT NULL,
    allotted_at_ms bigint NOT NULL,
    -- Open until over and owing nothing: what recovery rebuilds.
    open           boolean NOT NULL,
    -- When it left the open set; archived some time after.
    closed_at_ms   bigint,
    archived       boolean NOT NULL DEFAULT false,
    next_seq       integer NOT NULL CHECK (next_seq >= 1),
    -- The epoch of the last writer: a write from an older epoch is refused.
    epoch          bigint NOT NULL CHECK (epoch >= 0),
    body           json NOT NULL,
    CHECK (open = (closed_at_ms IS NULL))
);
CREATE INDEX orders_by_user ON orders (user_id, id);
CREATE INDEX orders_by_associate ON orders (associate_id, id);
CREATE INDEX orders_by_state_time ON orders (state, allotted_at_ms);
CREATE INDEX orders_open ON orders (id) WHERE open;
CREATE INDEX orders_to_archive ON orders (closed_at_ms) WHERE NOT open AND NOT archived;

CREATE FUNCTION speedy_fence_orders() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.epoch < OLD.epoch THEN
        RAISE EXCEPTION 'order % is held by epoch %: a write from epoch % is refused',
            OLD.id, OLD.epoch, NEW.epoch
            USING ERRCODE = 'SPF01';
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER orders_fenced BEFORE UPDATE ON orders
    FOR EACH ROW EXECUTE FUNCTION speedy_fence_orders();

-- Every event of every order; `feed_seq` is its position in the global feed.
CREATE SEQUENCE event_feed_seq MINVALUE 0 START WITH 0;
CREATE TABLE order_events (
    order_id uuid NOT NULL REFERENCES orders (id),
    seq      integer NOT NULL CHECK (seq >= 0),
    feed_seq bigint NOT NULL UNIQUE,
    at_ms    bigint NOT NULL,
    state    text NOT NULL,
    body     json NOT NULL,
    PRIMARY KEY (order_id, seq)
);

-- An order's events are appended in order (0, 1, 2...) and never changed.
CREATE FUNCTION speedy_events_in_order() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    expected integer;
BEGIN
    IF TG_OP <> 'INSERT' THEN
        RAISE EXCEPTION 'order events are append-only' USING ERRCODE = 'SPE02';
    END IF;
    SELECT COALESCE(max(seq) + 1, 0) INTO expected FROM order_events WHERE order_id = NEW.order_id;
    IF NEW.seq <> expected THEN
        RAISE EXCEPTION 'order % expects event % next, not %', NEW.order_id, expected, NEW.seq
            USING ERRCODE = 'SPE01';
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER order_events_in_order BEFORE INSERT OR UPDATE OR DELETE ON order_events
    FOR EACH ROW EXECUTE FUNCTION speedy_events_in_order();

CREATE TABLE invoices (
    id               uuid PRIMARY KEY,
    order_id         uuid NOT NULL,
    currency         text NOT NULL,
    total_minor      bigint NOT NULL,
    commission_minor bigint NOT NULL,
    payout_minor     bigint NOT NULL,
    issued_at_ms     bigint NOT NULL,
    body             jsonb NOT NULL
);
CREATE INDEX invoices_by_order ON invoices (order_id);

-- Tax invoices are numbered without gaps (meta.tax_invoice_seq, in the same transaction).
CREATE TABLE tax_invoices (
    invoice_id    uuid PRIMARY KEY,
    number        bigint NOT NULL UNIQUE CHECK (number >= 1),
    order_id      uuid NOT NULL,
    taxable_minor bigint NOT NULL,
    tax_minor     bigint NOT NULL,
    total_minor   bigint NOT NULL,
    issued_at_ms  bigint NOT NULL,
    body          jsonb NOT NULL
);

CREATE TABLE payments (
    id              uuid PRIMARY KEY,
    order_id        uuid NOT NULL,
    user_id         uuid NOT NULL,
    idempotency_key text NOT NULL,
    method          text NOT NULL,
    amount_minor    bigint NOT NULL,
    tip_minor       bigint NOT NULL,
    status          text NOT NULL,
    created_at_ms   bigint NOT NULL,
    updated_at_ms   bigint NOT NULL,
    body            jsonb NOT NULL,
    -- One payment per idempotency key (keys are per user).
    UNIQUE (user_id, idempotency_key)
);
CREATE INDEX payments_by_order ON payments (order_id, id);
CREATE INDEX payments_pending ON payments (id) WHERE status = 'pending';

CREATE TABLE feedback (
    id       uuid PRIMARY KEY,
    order_id uuid NOT NULL,
    -- The role of the party rated.
    about    text NOT NULL CHECK (about IN ('user', 'associate')),
    -- 'app', or 'external:' and the source's name.
    source   text NOT NULL,
    rating   smallint NOT NULL CHECK (rating BETWEEN 1 AND 5),
    at_ms    bigint NOT NULL,
    body     jsonb NOT NULL,
    -- One rating per order, rated side and source.
    UNIQUE (order_id, about, source)
);

CREATE TABLE discount_codes (
    code text PRIMARY KEY,
    body jsonb NOT NULL
);

CREATE TABLE discount_redemptions (
    code     text NOT NULL,
    user_id  uuid NOT NULL,
    order_id uuid NOT NULL,
    PRIMARY KEY (code, user_id)
);

CREATE TABLE pricing (
    id   smallint PRIMARY KEY CHECK (id = 1),
    body jsonb NOT NULL
);

CREATE TABLE open_requests (
    id             uuid PRIMARY KEY,
    user_id        uuid NOT NULL,
    created_at_ms  bigint NOT NULL,
    deadline_at_ms bigint NOT NULL,
    body           jsonb NOT NULL
);

CREATE TABLE presence (
    associate_id uuid PRIMARY KEY,
    online       boolean NOT NULL,
    at_ms        bigint NOT NULL,
    body         jsonb NOT NULL
);

CREATE TABLE meta (
    key   text PRIMARY KEY,
    value bigint NOT NULL
);
INSERT INTO meta (key, value) VALUES ('tax_invoice_seq', 0);
