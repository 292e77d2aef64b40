"""Every stage in order: `python pipelines/run_all.py [overrides]` (MLflow's main entry)."""

from geoensemble.app.cli import stage_main

if __name__ == "__main__":
    stage_main("all")
