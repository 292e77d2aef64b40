"""Everything that opens files: layer specs, readers per format, grid alignment, writers."""
