"""The values and declarations everything else is written against: records, cursors and
snapshots, index versions, sources, and the protocols the stages depend on."""
