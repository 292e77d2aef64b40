"""Every stage in order: `python pipelines/run_all.py [overrides]` (MLflow's main entry)."""

from geoensemble.app.entry import run

if __name__ == "__main__":
    run("all")
