"""Move @champion: `python pipelines/promote.py version=3` or `rule=best ensemble=latest`."""

from geoensemble.app.cli import run_then_exit

if __name__ == "__main__":
    run_then_exit("promote")
