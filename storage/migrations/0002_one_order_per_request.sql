-- A request becomes at most one order, whichever node allots it: in cluster mode a
-- former owner of the request's cell may still be running its offer loop while the new
-- owner resumes it, and the second acceptance must fail.
CREATE UNIQUE INDEX orders_one_per_request ON orders (request_id);
