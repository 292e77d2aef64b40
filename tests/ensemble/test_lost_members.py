"""A member task the scheduler cancels (its workers killed over and over, the data they held
lost) is one line naming the member, not an internal error (issue 21)."""

from __future__ import annotations

import time

import pytest
from distributed import Client, LocalCluster

from geoensemble.app.keys import keyed
from geoensemble.ensemble.search import gather_members
from geoensemble.errors import ComputeError


def test_a_cancelled_member_task_is_one_line_naming_the_member() -> None:
    with (
        LocalCluster(n_workers=1, processes=False, dashboard_address=None) as cluster,
        Client(cluster) as client,
    ):
        slow = client.submit(time.sleep, 2, key="fit-abc123-gen0-7")
        quick = client.submit(sum, [1, 2], key="fit-abc123-gen0-8")
        slow.cancel()  # what the scheduler does to a task whose data was forgotten
        with pytest.raises(ComputeError) as err:
            gather_members([slow, quick])
    line = str(err.value)
    assert "\n" not in line
    assert line.startswith("member-007 was cancelled by the dask scheduler: its workers")
    assert "the machine's memory (memory_limit) or the cluster's workers (address)" in line
    assert "(compute.memory_limit)" in str(keyed(err.value))  # as a stage says it
