-- Replicas LISTEN on the channel sekisho_changes: each change to a log that
-- replicas follow (revocations, API key changes, account unlocks) notifies
-- it, with the log's table name as the payload, when its transaction
-- commits. Polling stays as the fallback: a notification only wakes it.
CREATE FUNCTION sekisho_notify_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	PERFORM pg_notify('sekisho_changes', TG_TABLE_NAME);
	RETURN NULL;
END
$$;

CREATE TRIGGER revocations_notify AFTER INSERT ON revocations
	FOR EACH STATEMENT EXECUTE FUNCTION sekisho_notify_change();
CREATE TRIGGER api_key_changes_notify AFTER INSERT ON api_key_changes
	FOR EACH STATEMENT EXECUTE FUNCTION sekisho_notify_change();
CREATE TRIGGER account_unlocks_notify AFTER INSERT ON account_unlocks
	FOR EACH STATEMENT EXECUTE FUNCTION sekisho_notify_change();
