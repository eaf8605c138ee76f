ALTER TABLE conversations RESET (fillfactor);
ALTER TABLE members RESET (fillfactor);
ALTER TABLE messages RESET (fillfactor);
