"""Building artifacts, measuring them on a GPU, and the measurement records."""
