"""Every stage in order: `python pipelines/run_all.py [overrides]` (MLflow's main entry)."""

from geoensemble.app.cli import run_then_exit

if __name__ == "__main__":
    run_then_exit("all")
