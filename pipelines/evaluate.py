"""The evaluate stage: `python pipelines/evaluate.py [overrides]` or `--params params.yaml`."""

from geoensemble.app.cli import stage_main

if __name__ == "__main__":
    stage_main("evaluate")
