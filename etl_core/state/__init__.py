"""What the project keeps in PostgreSQL: cursors, dead letters, shard plans, the lane locks,
and the migrations of those tables."""
