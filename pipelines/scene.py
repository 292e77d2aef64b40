"""The scene stage: `python pipelines/scene.py [overrides]` or `--params params.yaml`."""

from geoensemble.app.cli import run_then_exit

if __name__ == "__main__":
    run_then_exit("scene")
