"""Move @champion: `python pipelines/promote.py version=3` or `rule=best ensemble=latest`."""

from geoensemble.app.entry import run

if __name__ == "__main__":
    run("promote")
