"""Generated change capture: the triggers and log a source declares, and the statements
that read that log."""
