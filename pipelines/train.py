"""The train stage: `python pipelines/train.py [overrides]` or `--params params.yaml`."""

from geoensemble.app.cli import stage_main

if __name__ == "__main__":
    stage_main("train")
