"""pyramid_sessionstore."""
