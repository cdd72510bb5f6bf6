"""The sync itself: small generator stages composed into one pipeline, the fan-out per version,
progress and checkpoints, prefetching, follow mode and sharded backfills."""
