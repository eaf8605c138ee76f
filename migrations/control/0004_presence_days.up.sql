-- Who was online on which UTC day, per deployment (read_model.name), for
-- the analytics view online_users_per_day. Presence is never in the log,
-- so this is not a read model: gateways record a user's first connection
-- of a day here, and a replay neither rebuilds nor drops it.
CREATE TABLE presence_days (
    name            text        NOT NULL,
    day             date        NOT NULL,
    user_id         text        NOT NULL,
    first_online_at timestamptz NOT NULL,
    PRIMARY KEY (name, day, user_id)
);

ALTER FUNCTION point_analytics(text, text) RENAME TO point_analytics_reactions;

CREATE FUNCTION point_analytics(dst text, src text) RETURNS void
LANGUAGE plpgsql AS $fn$
DECLARE
    deployment text;
BEGIN
    PERFORM parley.point_analytics_reactions(dst, src);
    SELECT name INTO deployment FROM parley.read_model WHERE analytics_schema = dst;
    -- Users seen online (a connection on any gateway) per UTC day.
    EXECUTE format($v$CREATE OR REPLACE VIEW %1$I.online_users_per_day AS
        SELECT p.day, count(*) AS online_users
          FROM parley.presence_days p
         WHERE p.name = %2$L
         GROUP BY p.day$v$, dst, deployment);
END
$fn$;
