DROP INDEX messages_replies;
ALTER TABLE messages DROP COLUMN reply_to;
