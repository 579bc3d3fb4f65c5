-- The whole schema as of SQLite migration 0004, in one step: the tables and
-- columns mirror migrations/sqlite so a row means the same in both stores
-- (times are Unix microseconds, 0 means unset; lists are JSON arrays).
--
-- The logs (revocations, api_key_changes, account_unlocks) take seq from an
-- identity column, which never hands a number out twice, so pruning never
-- lets a poller's cursor skip a new row. Postgres may commit those numbers
-- out of order; every writer therefore takes LOCK TABLE ... IN EXCLUSIVE
-- MODE on the log before inserting (see postgres.go, appendLog).

-- Local accounts.
CREATE TABLE users (
	name                TEXT    PRIMARY KEY,
	email               TEXT    NOT NULL DEFAULT '',
	groups_json         TEXT    NOT NULL DEFAULT '[]',
	password_hash       TEXT    NOT NULL DEFAULT '',
	disabled            BOOLEAN NOT NULL DEFAULT false,
	created_at          BIGINT  NOT NULL,
	updated_at          BIGINT  NOT NULL,
	password_changed_at BIGINT  NOT NULL DEFAULT 0
);

-- Revocation log polled by every replica.
CREATE TABLE revocations (
	seq        BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	session_id TEXT   NOT NULL DEFAULT '',
	user_name  TEXT   NOT NULL DEFAULT '',
	before_at  BIGINT NOT NULL DEFAULT 0,
	until_at   BIGINT NOT NULL DEFAULT 0
);

CREATE INDEX revocations_until ON revocations (until_at);

-- API keys for machines; only SHA-256 of the key's secret is kept.
CREATE TABLE api_keys (
	id           TEXT   PRIMARY KEY,
	name         TEXT   NOT NULL UNIQUE,
	secret_hash  BYTEA  NOT NULL CHECK (length(secret_hash) = 32),
	routes_json  TEXT   NOT NULL,
	methods_json TEXT   NOT NULL DEFAULT '[]',
	paths_json   TEXT   NOT NULL DEFAULT '[]',
	created_at   BIGINT NOT NULL,
	expires_at   BIGINT NOT NULL DEFAULT 0,
	revoked_at   BIGINT NOT NULL DEFAULT 0,
	last_used_at BIGINT NOT NULL DEFAULT 0
);

-- One row per create or revoke, polled by every replica's key cache.
CREATE TABLE api_key_changes (
	seq    BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	key_id TEXT   NOT NULL
);

-- Provider tokens of OIDC browser sessions, sealed by the gateway.
CREATE TABLE oidc_tokens (
	session_id TEXT   PRIMARY KEY,
	provider   TEXT   NOT NULL,
	subject    TEXT   NOT NULL DEFAULT '',
	sealed     BYTEA  NOT NULL,
	expires_at BIGINT NOT NULL,
	updated_at BIGINT NOT NULL
);

CREATE INDEX oidc_tokens_expires ON oidc_tokens (expires_at);
CREATE INDEX oidc_tokens_subject ON oidc_tokens (provider, subject);

-- Account unlocks written by `sekisho user unlock`, polled by every
-- replica's sign-in throttle; rows older than a day are pruned by the next
-- unlock.
CREATE TABLE account_unlocks (
	seq       BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	user_name TEXT   NOT NULL,
	at        BIGINT NOT NULL
);

CREATE INDEX account_unlocks_at ON account_unlocks (at);
