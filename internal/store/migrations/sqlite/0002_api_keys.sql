-- API keys for machines. Only SHA-256 of the key's secret is kept (see
-- internal/apikey). Lists are JSON arrays; an empty methods or path_prefixes
-- array means any. Times are Unix microseconds; 0 means unset (never
-- expires, not revoked, never used).
CREATE TABLE api_keys (
	id            TEXT    PRIMARY KEY NOT NULL,
	name          TEXT    NOT NULL UNIQUE,
	secret_hash   BLOB    NOT NULL CHECK (length(secret_hash) = 32),
	routes_json   TEXT    NOT NULL,
	methods_json  TEXT    NOT NULL DEFAULT '[]',
	paths_json    TEXT    NOT NULL DEFAULT '[]',
	created_at    INTEGER NOT NULL,
	expires_at    INTEGER NOT NULL DEFAULT 0,
	revoked_at    INTEGER NOT NULL DEFAULT 0,
	last_used_at  INTEGER NOT NULL DEFAULT 0
) STRICT;

-- One row per create or revoke, polled by every replica's key cache: a
-- replica that has applied seq s re-reads the keys named by rows after s.
-- AUTOINCREMENT: a seq is never handed out twice.
CREATE TABLE api_key_changes (
	seq    INTEGER PRIMARY KEY AUTOINCREMENT,
	key_id TEXT    NOT NULL
) STRICT;
