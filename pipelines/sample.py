"""Draw a validation sample to label: `python pipelines/sample.py map=outputs/maps/x.tif`."""

from geoensemble.app.cli import run_then_exit

if __name__ == "__main__":
    run_then_exit("sample")
