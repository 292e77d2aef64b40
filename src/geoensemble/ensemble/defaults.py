"""The search's defaults, stated once.

The library (:class:`~geoensemble.ensemble.search.Search`, the training sample), the
application's config schema (and so ``params.yaml``) and :func:`geoensemble.fit_ensemble`
take their defaults from here, so a notebook and ``dvc repro`` run the same search unless
told otherwise. This module imports nothing, so the command line reads it cheaply.
"""

from __future__ import annotations

SIZE = 4  # members per generation
GENERATIONS = 2  # most generations (the search stops early after PATIENCE without gain)
KEEP = 3  # members kept, best first (predicted, registered)
CRITERION = "aic"  # the primary score ranking members
PATIENCE = 2  # generations without improvement of the primary score before stopping
RETRIES = 2  # reruns of a member task whose worker died
SAMPLE = 200_000  # most training pixels
CV_FOLDS = 5  # spatial block cross-validation of supervised members: folds
CV_BLOCK = 32  # ... and pixels per side of a block (a block is never split)

# Criteria where larger is better; every other one (aic, bic, log_loss, rmse...) is minimized.
MAXIMIZE = frozenset(
    {
        "accuracy",
        "kappa",
        "f1_macro",
        "r2",
        "log_likelihood",
        "heldout_log_likelihood",
        "member_space_log_likelihood",
        "mean_agreement",  # a member's agreement with the others (ensemble.agreement)
    }
)
# Criteria known to be better when smaller (others not listed are the user's to direct).
MINIMIZE = frozenset(
    {"aic", "bic", "elm_aic", "inertia", "log_loss", "rmse", "mae", "member_space_aic"}
    | {"member_space_bic", "heldout_penalized_nll"}
)


def direction_of(criterion: str) -> str:
    """``"maximize"`` for a score where larger is better, else ``"minimize"``."""
    return "maximize" if criterion in MAXIMIZE else "minimize"
