"""Move @champion: `python pipelines/promote.py version=3` or `rule=best ensemble=latest`."""

from geoensemble.app.cli import stage_main

if __name__ == "__main__":
    stage_main("promote")
