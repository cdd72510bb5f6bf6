"""Two versions of the forum's index: ``f1`` as first shipped, ``f2`` with tags as keywords for
facets, the author's name searchable and the comment count for ranking."""

from __future__ import annotations

from typing import Any

from etl_core import IndexVersion
from forum.source import Post, author


def post_f1(p: Post) -> dict[str, Any]:
    return {"title": p.title, "body": p.body or "", "author": p.author_handle, "tags": p.tags}


def post_f2(p: Post) -> dict[str, Any]:
    return {
        "title": p.title,
        "body": p.body or "",
        "author": author(p),
        "tags": p.tags,
        "comment_count": p.comment_count,
        "created_at": p.created_at.isoformat(),
    }


F1: IndexVersion[Post] = IndexVersion(
    key="f1",
    index="posts_f1",
    transform=post_f1,
    mappings={
        "properties": {
            "title": {"type": "text"},
            "body": {"type": "text"},
            "author": {"type": "keyword"},
            "tags": {"type": "text"},
        }
    },
)
F2: IndexVersion[Post] = IndexVersion(
    key="f2",
    index="posts_f2",
    transform=post_f2,
    mappings={
        "properties": {
            "title": {"type": "text", "analyzer": "english"},
            "body": {"type": "text", "analyzer": "english"},
            "author": {"properties": {"handle": {"type": "keyword"}, "name": {"type": "text"}}},
            "tags": {"type": "keyword"},
            "comment_count": {"type": "integer"},
            "created_at": {"type": "date"},
        }
    },
)
VERSIONS = [F1, F2]
