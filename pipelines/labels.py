"""The labels stage: `python pipelines/labels.py [overrides]` or `--params params.yaml`."""

from geoensemble.app.entry import run

if __name__ == "__main__":
    run("labels")
