-- Local accounts. Times are Unix microseconds; 0 means unset.
CREATE TABLE users (
	name                TEXT    PRIMARY KEY NOT NULL,
	email               TEXT    NOT NULL DEFAULT '',
	groups_json         TEXT    NOT NULL DEFAULT '[]',
	password_hash       TEXT    NOT NULL DEFAULT '',
	disabled            INTEGER NOT NULL DEFAULT 0 CHECK (disabled IN (0, 1)),
	created_at          INTEGER NOT NULL,
	updated_at          INTEGER NOT NULL,
	password_changed_at INTEGER NOT NULL DEFAULT 0
) STRICT;

-- Revocation log polled by every replica. AUTOINCREMENT: a pruned seq is
-- never handed out again, so a poller's cursor never skips a new row.
CREATE TABLE revocations (
	seq        INTEGER PRIMARY KEY AUTOINCREMENT,
	session_id TEXT    NOT NULL DEFAULT '',
	user_name  TEXT    NOT NULL DEFAULT '',
	before_at  INTEGER NOT NULL DEFAULT 0,
	until_at   INTEGER NOT NULL DEFAULT 0
) STRICT;

CREATE INDEX revocations_until ON revocations (until_at);
