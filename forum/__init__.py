"""The second example source, shaped unlike the catalogue: a forum's posts, with their author,
their tags (many-to-many), a comment count (an aggregate over a child table) and a boolean
soft-delete flag."""
