DROP FUNCTION point_analytics(text, text);
ALTER FUNCTION point_analytics_presence(text, text) RENAME TO point_analytics;
