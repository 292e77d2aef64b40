"""Raster-level features (bands, indices), table conversion, NaN policy and sampling."""
