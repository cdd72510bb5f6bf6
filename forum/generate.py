"""The forum's tables, deterministic data (``generate``) and churn of every kind (``churn``):
posts written, edited, soft- and hard-deleted, users renamed, tags linked and unlinked,
comments added and removed."""

from __future__ import annotations

import random

from sqlalchemy import Engine, text

from forum.source import TRACKING, metadata

WORDS = (
    "ask answer bug build cache deploy docs error fix index join lock merge query release schema test".split()
)
TAGS = "postgres opensearch dagster python sql search ops help".split()


def create_schema(engine: Engine) -> None:
    """The forum's tables and their generated change capture; idempotent."""
    metadata.create_all(engine, checkfirst=True)
    TRACKING.apply(engine)


def _text(rng: random.Random, n: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(n))


def generate(engine: Engine, posts: int, seed: int = 1) -> None:
    """``posts`` posts by ``posts // 10 + 1`` users, tagged and commented."""
    rng = random.Random(seed)
    users = posts // 10 + 1
    with engine.begin() as conn:
        conn.execute(
            text("INSERT INTO forum_users (id, handle, display_name) VALUES (:id, :h, :n)"),
            [{"id": i, "h": f"user{i}", "n": f"User {i}"} for i in range(1, users + 1)],
        )
        conn.execute(
            text("INSERT INTO forum_tags (id, name) VALUES (:id, :name)"),
            [{"id": i, "name": name} for i, name in enumerate(TAGS, 1)],
        )
        conn.execute(
            text("INSERT INTO forum_posts (id, author_id, title, body) VALUES (:id, :a, :t, :b)"),
            [
                {"id": i, "a": rng.randint(1, users), "t": _text(rng, 4), "b": _text(rng, 20)}
                for i in range(1, posts + 1)
            ],
        )
        conn.execute(
            text("INSERT INTO forum_post_tags (post_id, tag_id) VALUES (:p, :t) ON CONFLICT DO NOTHING"),
            [{"p": i, "t": rng.randint(1, len(TAGS))} for i in range(1, posts + 1) for _ in range(2)],
        )
        conn.execute(
            text("INSERT INTO forum_comments (post_id, body) VALUES (:p, :b)"),
            [{"p": rng.randint(1, posts), "b": _text(rng, 6)} for _ in range(posts * 2)],
        )


def churn(engine: Engine, rounds: int, seed: int = 2) -> None:
    """``rounds`` statements of every kind, each in its own transaction."""
    rng = random.Random(seed)
    statements = (
        "INSERT INTO forum_posts (id, author_id, title, body) SELECT coalesce(max(id), 0) + 1, "
        "(SELECT min(id) FROM forum_users), 'new post', 'fresh body' FROM forum_posts",
        "UPDATE forum_posts SET body = body || ' edited' WHERE id = (SELECT id FROM forum_posts "
        "ORDER BY random() LIMIT 1)",
        "UPDATE forum_posts SET is_deleted = NOT is_deleted WHERE id = (SELECT id FROM forum_posts "
        "ORDER BY random() LIMIT 1)",
        "DELETE FROM forum_posts WHERE id = (SELECT id FROM forum_posts ORDER BY random() LIMIT 1)",
        "UPDATE forum_users SET display_name = display_name || '!' WHERE id = (SELECT id FROM "
        "forum_users ORDER BY random() LIMIT 1)",
        "INSERT INTO forum_post_tags (post_id, tag_id) SELECT id, (SELECT id FROM forum_tags ORDER BY "
        "random() LIMIT 1) FROM forum_posts ORDER BY random() LIMIT 1 ON CONFLICT DO NOTHING",
        "DELETE FROM forum_post_tags WHERE (post_id, tag_id) = (SELECT post_id, tag_id FROM "
        "forum_post_tags ORDER BY random() LIMIT 1)",
        "UPDATE forum_tags SET name = name || 'x' WHERE id = (SELECT id FROM forum_tags ORDER BY "
        "random() LIMIT 1)",
        "INSERT INTO forum_comments (post_id, body) SELECT id, 'another comment' FROM forum_posts "
        "ORDER BY random() LIMIT 1",
        "DELETE FROM forum_comments WHERE id = (SELECT id FROM forum_comments ORDER BY random() LIMIT 1)",
    )
    for _ in range(rounds):
        with engine.begin() as conn:
            conn.execute(text("SELECT setseed(:s)"), {"s": rng.random()})
            conn.execute(text(rng.choice(statements)))
