"""A store written by sync is for reading: resuming a run there is a clear error, not a traceback."""

from __future__ import annotations

import pytest

import localtrack
from localtrack.errors import UsageError


def test_resuming_inside_a_synced_copy_is_refused(store, tmp_path):
    run = localtrack.init(project="p", id="r", dir=store)
    for i in range(5):
        run.log({"x": i})
    run.finish()                      # a small tail stays a log, which sync sends as chunks
    remote = tmp_path / "remote"
    localtrack.sync(str(remote), dir=str(store))
    assert localtrack.Api(remote).run("p/r").history().num_rows == 5
    with pytest.raises(UsageError, match="read-only"):
        localtrack.init(project="p", id="r", resume="must", dir=remote)
    again = localtrack.init(project="p", id="r", resume="must", dir=store)   # the original is fine
    assert again.step == 5
    again.finish()
