"""Class names and colours of maps: stable colours per class name, and clusters named after
the reference class they mostly hold.

Colours
    A class is drawn in the same colour in every run and every map, because its colour comes
    from its *name*: well-known land-cover names have a fixed colour (:data:`KNOWN_COLOURS`:
    water blue, snow light cyan, forest dark green, cropland yellow, bare soil brown, built-up
    red, grass light green...), matched after lower-casing and treating ``_``, ``-`` and ``/``
    as spaces (``Built-up`` = ``built_up``), then by a known word inside the name
    (``deciduous forest`` is a forest green). Any other name gets a colour of
    :data:`CLUSTER_PALETTE` picked by a SHA-256 hash of the name, never Python's salted
    ``hash``. Within one map, colours are kept distinct: a repeated colour is shaded (known
    names) or moved to the next palette slot (hashed names), deterministically.

Cluster names
    A cluster is named after the reference class (truth raster or training labels) that holds
    the largest share of its reference pixels, with that share: ``water (91 %)``. It is named
    only when the share is at least :data:`MATCH_SHARE` (50 %, i.e. the class is a majority
    of the cluster) over at least :data:`MATCH_MIN_PIXELS` reference pixels; otherwise it keeps
    the neutral name ``cluster <code>`` and a neutral grey (:func:`neutral_greys`).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

RGB = tuple[int, int, int]

#: Registered model version tag holding the class names a classifier was trained with: a JSON
#: object of class value -> name (written by training, read by predict).
CLASS_NAMES_TAG = "geoensemble.class_names"

# Well-known land-cover names (normalised: lower case, single spaces) and their colours.
_WATER, _SNOW, _ICE, _CLOUD = (31, 120, 180), (204, 240, 255), (165, 215, 240), (255, 255, 255)
_FOREST, _CROP, _GRASS = (27, 120, 55), (240, 205, 40), (166, 217, 106)
_SHRUB, _BARE, _ROCK = (204, 184, 121), (191, 129, 45), (150, 125, 100)
_BUILT, _WETLAND, _SHADOW = (215, 48, 39), (108, 159, 184), (55, 55, 70)
KNOWN_COLOURS: dict[str, RGB] = {
    "water": _WATER,
    "open water": _WATER,
    "river": _WATER,
    "lake": _WATER,
    "sea": _WATER,
    "ocean": _WATER,
    "snow": _SNOW,
    "snow ice": _SNOW,
    "perennial ice snow": _SNOW,
    "ice": _ICE,
    "glacier": _ICE,
    "cloud": _CLOUD,
    "clouds": _CLOUD,
    "shadow": _SHADOW,
    "cloud shadow": _SHADOW,
    "forest": _FOREST,
    "trees": _FOREST,
    "tree cover": _FOREST,
    "woodland": _FOREST,
    "evergreen forest": (20, 90, 40),
    "deciduous forest": (90, 165, 70),
    "mixed forest": (55, 140, 80),
    "cropland": _CROP,
    "crops": _CROP,
    "cultivated crops": _CROP,
    "agriculture": _CROP,
    "cropland pasture": _CROP,
    "pasture": (220, 215, 95),
    "pasture hay": (220, 215, 95),
    "grass": _GRASS,
    "grassland": _GRASS,
    "grassland herbaceous": _GRASS,
    "herbaceous": _GRASS,
    "meadow": _GRASS,
    "rangeland": _GRASS,
    "shrub": _SHRUB,
    "shrubland": _SHRUB,
    "shrub scrub": _SHRUB,
    "scrub": _SHRUB,
    "bare soil": _BARE,
    "bare": _BARE,
    "bare ground": _BARE,
    "barren": _BARE,
    "barren land": _BARE,
    "soil": _BARE,
    "sand": (230, 200, 140),
    "rock": _ROCK,
    "built up": _BUILT,
    "built": _BUILT,
    "urban": _BUILT,
    "developed": _BUILT,
    "buildings": _BUILT,
    "impervious": _BUILT,
    "settlement": _BUILT,
    "artificial": _BUILT,
    "wetland": _WETLAND,
    "wetlands": _WETLAND,
    "woody wetlands": (140, 190, 215),
    "emergent herbaceous wetlands": _WETLAND,
    "marsh": _WETLAND,
}

# Land-cover classes of the embedded default scene: code -> (name, colour); the order is the
# class code of its ground-truth raster. Colours are the names' own (:func:`class_colour`).
SCENE_CLASSES: dict[int, tuple[str, RGB]] = {
    i: (n, KNOWN_COLOURS[n.replace("_", " ")])
    for i, n in enumerate(("water", "forest", "cropland", "bare_soil", "built_up", "snow"))
}

# A qualitative palette for clusters without a reference, and for class names not in the table.
CLUSTER_PALETTE: list[RGB] = [
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

#: Smallest share of a cluster's reference pixels its majority class must hold to name it.
MATCH_SHARE = 0.5
#: Fewest reference pixels a cluster needs to be named at all.
MATCH_MIN_PIXELS = 10
#: The colour of clusters that match no class (and the first of :func:`neutral_greys`).
NEUTRAL_GREY: RGB = (160, 160, 160)


def palette(n: int) -> list[RGB]:
    """``n`` distinct colours, cycling the cluster palette with darker repeats."""
    out = []
    for i in range(n):
        r, g, b = CLUSTER_PALETTE[i % len(CLUSTER_PALETTE)]
        f = 0.6 ** (i // len(CLUSTER_PALETTE))
        out.append((int(r * f), int(g * f), int(b * f)))
    return out


def normalise(name: str) -> str:
    """A class name as looked up in :data:`KNOWN_COLOURS`: lower case, ``_-/`` as spaces."""
    return " ".join(re.sub(r"[_\-/,]+", " ", str(name).lower()).split())


def known_colour(name: str) -> RGB | None:
    """The table colour of a well-known name (exactly, or by a known word in it), or None."""
    key = normalise(name)
    if key in KNOWN_COLOURS:
        return KNOWN_COLOURS[key]
    if key.endswith("s") and key[:-1] in KNOWN_COLOURS:
        return KNOWN_COLOURS[key[:-1]]
    for word in key.split():
        if word in KNOWN_COLOURS:
            return KNOWN_COLOURS[word]
    return None


def _hash_slot(name: str) -> int:
    digest = hashlib.sha256(normalise(name).encode("utf-8")).digest()
    return int.from_bytes(digest[:4], "big") % len(CLUSTER_PALETTE)


def class_colour(name: str) -> RGB:
    """The colour of a class name, the same in every run (see the module docstring)."""
    known = known_colour(name)
    return known if known is not None else CLUSTER_PALETTE[_hash_slot(name)]


def shade(rgb: RGB, step: int) -> RGB:
    """The ``step``-th variant of a colour: alternately darker and lighter, so a repeated
    class stays recognisably its colour but can be told apart."""
    if step == 0:
        return rgb
    f = 1 - 0.22 * ((step + 1) // 2)
    if step % 2:  # darker
        return tuple(int(c * max(f, 0.2)) for c in rgb)  # type: ignore[return-value]
    return tuple(int(255 - (255 - c) * max(f, 0.2)) for c in rgb)  # type: ignore[return-value]


def class_colours(names: Sequence[str]) -> list[RGB]:
    """The colour of each name, distinct within ``names`` and the same for the same set.

    Names are served in a fixed order (known names before hashed ones, then alphabetically),
    so which of two clashing names keeps the pure colour does not depend on the input order.
    """
    used: set[RGB] = set()
    out: dict[int, RGB] = {}
    order = sorted(range(len(names)), key=lambda i: (known_colour(names[i]) is None, names[i]))
    for i in order:
        known = known_colour(names[i])
        if known is not None:
            step = 0
            while shade(known, step) in used and step < 16:
                step += 1
            col = shade(known, step)
        else:
            slot = _hash_slot(names[i])
            for k in range(len(CLUSTER_PALETTE)):
                col = CLUSTER_PALETTE[(slot + k) % len(CLUSTER_PALETTE)]
                if col not in used:
                    break
            else:
                col = palette(len(used) + 1)[-1]
        used.add(col)
        out[i] = col
    return [out[i] for i in range(len(names))]


# Greys for unnamed clusters, at least 64 levels apart (160 and 178 could not be told apart).
_GREY_LEVELS = (NEUTRAL_GREY[0], 96, 224, 32)


def neutral_greys(n: int) -> list[RGB]:
    """``n`` clearly distinct colours for unnamed clusters: up to four greys (equal R, G and
    B, starting at :data:`NEUTRAL_GREY`), so they read as "no class"; beyond four, muted
    colours of :data:`CLUSTER_PALETTE` (a quarter grey), each at least 48 RGB units from
    every colour before it, then darker rounds of the same."""
    out: list[RGB] = [(v, v, v) for v in _GREY_LEVELS[:n]]
    muted = [tuple(int(0.75 * c + 0.25 * NEUTRAL_GREY[0]) for c in rgb) for rgb in CLUSTER_PALETTE]
    hues: list[RGB] = []
    for m in muted:  # greedily, in palette order: deterministic
        if all(_dist(m, o) >= 48 for o in [*hues, *((v, v, v) for v in _GREY_LEVELS)]):
            hues.append(m)  # type: ignore[arg-type]
    for i in range(max(0, n - len(_GREY_LEVELS))):
        f = 0.6 ** (i // len(hues))  # darker once every hue is used
        out.append(tuple(int(c * f) for c in hues[i % len(hues)]))  # type: ignore[arg-type]
    return out


def _dist(a: Sequence[float], b: Sequence[float]) -> float:
    return float(np.sqrt(sum((x - y) ** 2 for x, y in zip(a, b, strict=True))))


@dataclass(frozen=True)
class ClusterMatch:
    """The reference class a cluster mostly holds."""

    code: int
    name: str  # ``water (91 %)`` or ``cluster 3``
    colour: RGB
    matched: str | None  # the class name, when the share clears the threshold
    majority: str | None  # the largest class, even when not convincing
    share: float  # of the cluster's reference pixels that are ``majority``
    pixels: int  # reference pixels in the cluster

    def as_dict(self) -> dict[str, object]:
        return {
            "code": self.code,
            "name": self.name,
            "colour": "#{:02x}{:02x}{:02x}".format(*self.colour),
            "class": self.matched,
            "majority": self.majority,
            "share": round(self.share, 4),
            "reference_pixels": self.pixels,
        }


def match_clusters(
    clusters: np.ndarray,
    reference: np.ndarray,
    codes: Sequence[int],
    class_names: Mapping[int, str],
    *,
    min_share: float = MATCH_SHARE,
    min_pixels: int = MATCH_MIN_PIXELS,
) -> list[ClusterMatch]:
    """Name and colour each cluster code after the reference class it mostly holds.

    Parameters
    ----------
    clusters
        Cluster code of each reference pixel.
    reference
        Reference class code of the same pixels.
    codes
        Every cluster code of the map (also those no reference pixel falls in).
    class_names
        Reference code -> class name (unnamed codes are called ``class_<code>``).
    min_share, min_pixels
        The naming threshold (see the module docstring).

    Returns
    -------
    list of ClusterMatch
        One per code of ``codes``, in that order. Matched clusters take their class's colour
        (see :func:`class_colours`, over all reference classes so the colours are those of the
        labels and the truth); a second cluster of the same class is shaded, the one with the
        larger share keeping the pure colour. Unmatched ones take :func:`neutral_greys`.
    """
    clusters = np.asarray(clusters, dtype=np.int64)
    reference = np.asarray(reference, dtype=np.int64)
    ref_codes = sorted({int(c) for c in np.unique(reference)} | set(class_names))
    ref_name = {c: str(class_names.get(c, f"class_{c}")) for c in ref_codes}
    ref_colour = dict(zip(ref_codes, class_colours([ref_name[c] for c in ref_codes]), strict=True))
    rows = _majorities(clusters, reference, codes, ref_name)
    named = {
        code: cls
        for code, cls, share, n in rows
        if cls is not None and share >= min_share and n >= min_pixels
    }
    rank = _shade_ranks(named, {code: share for code, _, share, _ in rows})
    ref_by_name = {ref_name[c]: ref_colour[c] for c in ref_codes}
    return _matches(rows, named, rank, ref_by_name)


# (cluster code, its majority reference class or None, that class's share, reference pixels)
_Majority = tuple[int, str | None, float, int]


def _majorities(
    clusters: np.ndarray, reference: np.ndarray, codes: Sequence[int], ref_name: dict[int, str]
) -> list[_Majority]:
    """The majority reference class of each cluster code, its share and the pixels."""
    rows: list[_Majority] = []
    for code in codes:
        sel = reference[clusters == int(code)]
        if sel.size == 0:
            rows.append((int(code), None, 0.0, 0))
            continue
        vals, counts = np.unique(sel, return_counts=True)
        best = int(np.argmax(counts))  # ties: the smallest reference code
        rows.append(
            (int(code), ref_name[int(vals[best])], float(counts[best] / sel.size), int(sel.size))
        )
    return rows


def _shade_ranks(named: dict[int, str], share_of: dict[int, float]) -> dict[int, int]:
    """The shade of each named cluster among the clusters of its class (0: pure colour)."""
    # Clusters of one class: the largest share keeps the pure colour, the others are shaded.
    rank: dict[int, int] = {}
    for cls in set(named.values()):
        same = sorted((c for c in named if named[c] == cls), key=lambda c: -share_of[c])
        rank.update({c: k for k, c in enumerate(same)})
    return rank


def _matches(
    rows: list[_Majority],
    named: dict[int, str],
    rank: dict[int, int],
    ref_by_name: dict[str, RGB],
) -> list[ClusterMatch]:
    """A ClusterMatch per row: named clusters in their class's (shaded) colour, the others
    in neutral greys."""
    greys = iter(neutral_greys(sum(1 for r in rows if r[0] not in named)))
    out = []
    for code, majority, share, n in rows:
        if code in named:
            cls = named[code]
            out.append(
                ClusterMatch(
                    code,
                    f"{cls} ({round(100 * share)} %)",
                    shade(ref_by_name[cls], rank[code]),
                    cls,
                    majority,
                    share,
                    n,
                )
            )
        else:
            out.append(ClusterMatch(code, f"cluster {code}", next(greys), None, majority, share, n))
    return out
