-- From schema 3 on, every body is storage's own layout (storage/src/embedded/layout.rs),
-- not the wire model: a protocol change can no longer change what is stored. The layouts
-- write what schema 2 wrote, field for field, but for one event: a cancellation that
-- carries a fee invoice is its own kind, `cancelled_with_fee`, and a plain `cancelled`
-- has no `invoice_id`.

-- Events are append-only; this rewrite of their encoding is the one exception.
ALTER TABLE order_events DISABLE TRIGGER order_events_in_order;

UPDATE order_events
   SET body = jsonb_set(body::jsonb, '{kind}',
                        jsonb_build_object('cancelled_with_fee',
                                           body::jsonb -> 'kind' -> 'cancelled'))::json
 WHERE body::jsonb -> 'kind' ? 'cancelled'
   AND jsonb_typeof(body::jsonb -> 'kind' -> 'cancelled' -> 'invoice_id') = 'string';

UPDATE order_events
   SET body = (body::jsonb #- '{kind,cancelled,invoice_id}')::json
 WHERE body::jsonb -> 'kind' ? 'cancelled';

ALTER TABLE order_events ENABLE TRIGGER order_events_in_order;
