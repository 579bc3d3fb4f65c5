-- Account unlocks written by `sekisho user unlock`, polled by every
-- replica's sign-in throttle, which then clears the account's lockout. A
-- replica reads only rows written after it started, so an old unlock never
-- lifts a lockout that began since. Rows older than a day are pruned by the
-- next unlock. Times are Unix microseconds. AUTOINCREMENT: a seq is never
-- handed out twice, so a poller's cursor never skips a new row.
CREATE TABLE account_unlocks (
	seq       INTEGER PRIMARY KEY AUTOINCREMENT,
	user_name TEXT    NOT NULL,
	at        INTEGER NOT NULL
) STRICT;

CREATE INDEX account_unlocks_at ON account_unlocks (at);
