-- Leave room on each page for updated row versions, so the updates the
-- projector makes all the time (a conversation's last_seq, a member's read
-- cursor, an edit or delete of a message: no indexed column changes) are
-- HOT: the new version stays on its page and no index gets a new entry.
ALTER TABLE conversations SET (fillfactor = 50);
ALTER TABLE members SET (fillfactor = 70);
ALTER TABLE messages SET (fillfactor = 85);
