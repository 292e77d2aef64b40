"""Quicklooks drawn with Pillow: colours by hand, no-data transparent, no matplotlib."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from geoensemble import plots


def test_ramp_lut_runs_through_the_anchor_colours() -> None:
    lut = plots.ramp_lut("magma", 9)  # 9 entries: exactly the anchors
    assert [tuple(int(v) for v in c) for c in lut] == plots.RAMPS["magma"]
    mid = plots.ramp_lut("viridis", 17)[1]  # half way between the first two anchors
    assert tuple(int(v) for v in mid) == (70, 23, 104)  # (68+71)/2, (1+45)/2, (84+123)/2


def test_ramp_png_colours_values_and_leaves_nodata_transparent(tmp_path: Path) -> None:
    pct = np.full((600, 600), 100.0, dtype=np.float32)
    pct[:, :300] = 0.0
    pct[:100, :100] = np.nan
    png = plots.ramp_png(
        tmp_path / "a.png", pct, title="agreement (%)", ramp="magma", limits=(0, 100)
    )
    img = np.asarray(Image.open(png).convert("RGBA"))
    top = 2 * 16 + 20  # the title band: pad, line, pad
    # the map starts at (top, 16): no-data corner transparent, 0 % darkest, 100 % lightest
    assert img[top + 10, 16 + 10][3] == 0  # transparent, as in the class-map quicklooks
    assert tuple(img[top + 300, 16 + 10][:3]) == plots.RAMPS["magma"][0]
    assert tuple(img[top + 300, 16 + 590][:3]) == plots.RAMPS["magma"][-1]
    # the colour bar beside the map: the highest value on top
    bar_x = 16 + 600 + 32 + 5
    assert tuple(img[top + 1, bar_x][:3]) == plots.RAMPS["magma"][-1]
    lowest = tuple(int(v) for v in plots.ramp_lut("magma")[1])  # the row above the frame
    assert tuple(img[top + 598, bar_x][:3]) == lowest


def test_ramp_png_does_not_import_matplotlib(tmp_path: Path) -> None:
    code = (
        "import sys, numpy as np; from geoensemble import plots; "
        f"plots.ramp_png(r'{tmp_path / 'r.png'}', np.ones((50, 50)), title='t'); "
        "print('matplotlib' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
