"""The library's errors, reworded for the API: config keys become argument names.

The library's messages name the config keys a stage's user sets (``data.layers[0].band``),
since that is where most of its users give the values; a notebook passed arguments
(``layers[0].band``). The error keeps its class (a
:class:`~geoensemble.errors.GeoEnsembleError` subclass), so callers catch the same errors as
from the stages.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from geoensemble.errors import GeoEnsembleError

# (pattern, replacement), applied in order; a key is only renamed where it stands alone
# (not inside a path such as /data.tif).
_ALONE = r"(?<![\w/.-])(?:config key )?"
Renames = Sequence[tuple[str, str]]

FEATURES: Renames = (
    (rf"{_ALONE}features\.(sensor|bands|indices|derived|custom)\b", r"\1"),
    (rf"{_ALONE}features\.nan_threshold\b", "the NaN policy (no NaN feature)"),
)
FIT: Renames = (
    (rf"{_ALONE}model\.space\.(\w+)", r"space['\1']"),
    (rf"{_ALONE}model\.space\b", "space"),
    (rf"{_ALONE}model\.estimator\.(\w+)", r"the estimator's \1"),
    (rf"{_ALONE}model\.estimator\b", "the estimator"),
    (rf"{_ALONE}model\.n_clusters\b", "the estimator's n_clusters"),
    (rf"{_ALONE}features\.steps\.(\w+)\.(\w+)", r"the pipeline step \1's \2"),
    (rf"{_ALONE}features\.steps\.(\w+)", r"the pipeline step \1"),
    (rf"{_ALONE}features\.sample\.size\b", "sample"),
    (rf"{_ALONE}features\.(nan_threshold|impute_value|impute)\b", r"\1"),
    (rf"{_ALONE}ensemble\.(size|generations|keep)\b", r"\1"),
    (rf"{_ALONE}ensemble\.metric\b", "criterion"),
    (rf"{_ALONE}ensemble metric\(s\)", "criterion"),
    (rf"{_ALONE}model\.kind=(\w+)", r"a \1 estimator"),
    # the API keeps the stage's CV defaults (5 folds of 32-px blocks): only labels can change
    (
        r"fewer than ensemble\.cv\.folds=(\d+): lower ensemble\.cv\.block_size or "
        r"ensemble\.cv\.folds, or add labels",
        r"fewer than the \1 spatial cross-validation folds: label pixels over a larger area",
    ),
    (rf"{_ALONE}compute\.memory_limit\b", "the workers' memory_limit"),
    (rf"{_ALONE}compute\.timeout\b", "the workers' start timeout"),
    (rf"{_ALONE}compute\.retries\b", "the scheduler's allowed-failures"),
)
PREDICT: Renames = (
    (rf"{_ALONE}predict\.block_size\b", "the block size"),
    (rf"{_ALONE}predict\.threads\b", "the threads"),
)


def rename(message: str, renames: Renames) -> str:
    """``message`` with the config keys of ``renames`` replaced by argument names."""
    for pattern, repl in renames:
        message = re.sub(pattern, repl, message)
    return message


@contextmanager
def argument_names(*renames: Renames) -> Iterator[None]:
    """Re-raise a :class:`GeoEnsembleError` from the body with argument names for keys."""
    try:
        yield
    except GeoEnsembleError as exc:
        text = str(exc)
        for r in renames:
            text = rename(text, r)
        if text == str(exc):
            raise
        new = type(exc)(text)
        for note in getattr(exc, "__notes__", []):
            new.add_note(note)
        raise new from None
