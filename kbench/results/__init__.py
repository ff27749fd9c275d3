"""Results on disk: trial folders, atomic writes, and the results table."""
