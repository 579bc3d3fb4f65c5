-- Provider tokens of OIDC browser sessions (refresh token, ID token for
-- logout), sealed by the gateway with the session keyring: the database
-- holds no usable token. Times are Unix microseconds.
CREATE TABLE oidc_tokens (
	session_id TEXT    PRIMARY KEY NOT NULL,
	provider   TEXT    NOT NULL,
	subject    TEXT    NOT NULL DEFAULT '',
	sealed     BLOB    NOT NULL,
	expires_at INTEGER NOT NULL,
	updated_at INTEGER NOT NULL
) STRICT;

CREATE INDEX oidc_tokens_expires ON oidc_tokens (expires_at);
CREATE INDEX oidc_tokens_subject ON oidc_tokens (provider, subject);
