"""The scene stage: `python pipelines/scene.py [overrides]` or `--params params.yaml`."""

from geoensemble.app.entry import run

if __name__ == "__main__":
    run("scene")
