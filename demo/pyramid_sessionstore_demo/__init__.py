"""Demo app."""
