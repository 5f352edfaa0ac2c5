"""The scan pipeline: discover files, read them, run the rules, gate the report."""
