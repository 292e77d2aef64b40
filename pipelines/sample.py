"""Draw a validation sample to label: `python pipelines/sample.py map=outputs/maps/x.tif`."""

from geoensemble.app.entry import run

if __name__ == "__main__":
    run("sample")
