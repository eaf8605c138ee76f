DROP FUNCTION point_analytics(text, text);
ALTER FUNCTION point_analytics_reactions(text, text) RENAME TO point_analytics;
DROP TABLE presence_days;
