-- The consumer reads what every saved-search subscription matched among the
-- issues of a feed batch in one statement (issue_id = ANY (...)): by issue.
CREATE INDEX saved_search_matches_by_issue ON saved_search_matches (issue_id);
