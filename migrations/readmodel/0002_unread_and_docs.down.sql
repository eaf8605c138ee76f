DROP VIEW IF EXISTS read_cursors, unread_counts;
