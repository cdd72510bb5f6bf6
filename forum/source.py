"""The forum as a :class:`etl_core.Source`: one document per post.

Unlike the catalogue: the parent is a user (a rename of a user reaches every post they wrote), a
child table feeds an aggregate (a new comment changes the post's ``comment_count``), the
many-to-many link has its own table, and a post is soft-deleted by a boolean flag.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    DateTime,
    ForeignKey,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    Table,
    Text,
    func,
    literal_column,
    select,
)
from sqlalchemy.dialects.postgresql import aggregate_order_by

from etl_core import Hop, Source, Tracked, Tracking

metadata = MetaData()

users = Table(
    "forum_users",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("handle", Text, nullable=False),
    Column("display_name", Text),
)
posts = Table(
    "forum_posts",
    metadata,
    Column("id", BigInteger, primary_key=True),
    Column("author_id", Integer, ForeignKey("forum_users.id"), nullable=False, index=True),
    Column("title", Text, nullable=False),
    Column("body", Text),
    Column("is_deleted", Boolean, nullable=False, server_default="false"),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)
tags = Table(
    "forum_tags",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("name", Text, nullable=False, unique=True),
)
post_tags = Table(
    "forum_post_tags",
    metadata,
    Column("post_id", BigInteger, ForeignKey("forum_posts.id", ondelete="CASCADE"), nullable=False),
    Column("tag_id", Integer, ForeignKey("forum_tags.id", ondelete="CASCADE"), nullable=False, index=True),
    PrimaryKeyConstraint("post_id", "tag_id"),
)
comments = Table(
    "forum_comments",
    metadata,
    Column("id", BigInteger, primary_key=True),
    Column(
        "post_id", BigInteger, ForeignKey("forum_posts.id", ondelete="CASCADE"), nullable=False, index=True
    ),
    Column("body", Text, nullable=False),
)


@dataclass(frozen=True, slots=True)
class Post:
    id: int
    title: str
    body: str | None
    author_handle: str
    author_name: str | None
    tags: list[str]
    comment_count: int
    is_deleted: bool
    created_at: datetime


_tags = (
    select(
        func.coalesce(
            func.array_agg(aggregate_order_by(tags.c.name, tags.c.name)),
            literal_column("ARRAY[]::text[]"),
        )
    )
    .select_from(post_tags.join(tags))
    .where(post_tags.c.post_id == posts.c.id)
    .scalar_subquery()
)
_comment_count = select(func.count()).where(comments.c.post_id == posts.c.id).scalar_subquery()

forum_select = select(
    posts.c.id,
    posts.c.title,
    posts.c.body,
    users.c.handle.label("author_handle"),
    users.c.display_name.label("author_name"),
    _tags.label("tags"),
    _comment_count.label("comment_count"),
    posts.c.is_deleted,
    posts.c.created_at,
).select_from(posts.join(users, users.c.id == posts.c.author_id))

TRACKING = Tracking(
    "forum",
    posts,
    "id",
    (
        Tracked(users, "id", (Hop(posts, "author_id", "id"),)),  # a rename reaches every post
        Tracked(tags, "id", (Hop(post_tags, "tag_id", "post_id"),)),
        Tracked(post_tags, "post_id"),
        Tracked(comments, "post_id"),  # a comment changes its post's count
    ),
)

FORUM = Source(
    name="forum",
    selectable=forum_select,
    record_type=Post,
    key="id",
    deleted="is_deleted",
    tracking=TRACKING,
    alias="posts",
)


def author(p: Post) -> dict[str, Any]:
    return {"handle": p.author_handle, "name": p.author_name}
