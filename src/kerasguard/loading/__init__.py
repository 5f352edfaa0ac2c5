"""The load pipeline: open a trusted source, take a private copy, verify, scan, gate, load in the sandbox."""
