"""Ensembles: member pipelines from config, scoring (AIC/BIC), the generations search."""
