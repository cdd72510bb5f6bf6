"""Reading the source: the extractor every statement goes through, and its two change
feeds (the generated log, a trusted change column)."""
