DROP FUNCTION IF EXISTS point_analytics(text, text);
DROP TABLE IF EXISTS read_model;
