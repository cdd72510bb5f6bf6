"""What users do with a source, written once for both doors (command line, Dagster):
sync, follow, validate, cut over, retire, replay, reconcile, status, and the lane plan."""
