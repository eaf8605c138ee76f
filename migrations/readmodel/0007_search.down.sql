DROP INDEX messages_search;
DROP TEXT SEARCH CONFIGURATION parley_search;
