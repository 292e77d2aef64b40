"""Land-cover classes of the embedded default scene and the colours used for maps."""

from __future__ import annotations

# code -> (name, RGB colour); the order is the class code of the ground-truth raster.
SCENE_CLASSES: dict[int, tuple[str, tuple[int, int, int]]] = {
    0: ("water", (31, 120, 180)),
    1: ("forest", (27, 120, 55)),
    2: ("cropland", (166, 217, 106)),
    3: ("bare_soil", (191, 129, 45)),
    4: ("built_up", (215, 48, 39)),
    5: ("snow", (240, 240, 250)),
}

# A qualitative palette for clusters, whose codes have no fixed meaning.
CLUSTER_PALETTE: list[tuple[int, int, int]] = [
    (228, 26, 28),
    (55, 126, 184),
    (77, 175, 74),
    (152, 78, 163),
    (255, 127, 0),
    (255, 255, 51),
    (166, 86, 40),
    (247, 129, 191),
    (153, 153, 153),
    (102, 194, 165),
    (252, 141, 98),
    (141, 160, 203),
    (231, 138, 195),
    (166, 216, 84),
    (255, 217, 47),
    (229, 196, 148),
    (179, 179, 179),
    (27, 158, 119),
    (217, 95, 2),
    (117, 112, 179),
]


def palette(n: int) -> list[tuple[int, int, int]]:
    """``n`` distinct colours, cycling the cluster palette with darker repeats."""
    out = []
    for i in range(n):
        r, g, b = CLUSTER_PALETTE[i % len(CLUSTER_PALETTE)]
        f = 0.6 ** (i // len(CLUSTER_PALETTE))
        out.append((int(r * f), int(g * f), int(b * f)))
    return out
