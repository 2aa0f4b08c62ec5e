-- Quotas without Redis (server/quotas.py): sliding-window counters.
--
-- One row per key (e.g. `msg:86400:<user id>`, `ip:60:<address>`) per fixed window;
-- `window_start` is epoch seconds, a multiple of the window's length. A request is
-- allowed when  previous count * (share of the previous window still inside the
-- sliding window) + current count  stays within the limit. Rows are no longer read
-- after `expires_at` (window_start + 2 windows) and are deleted from time to time.

CREATE TABLE "quota_counters" (
    "key" text NOT NULL,
    "window_start" integer NOT NULL,
    "count" integer NOT NULL,
    "expires_at" integer NOT NULL,
    PRIMARY KEY ("key", "window_start")
);
CREATE INDEX "quota_counters_expiry" ON "quota_counters" ("expires_at");
