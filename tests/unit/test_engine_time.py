"""Docker's timestamps, as the engine-wide lock reads them to judge a lock stale."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from devbox.engine import _parse_time
from devbox.errors import DevboxError


@pytest.mark.parametrize(
    ("stamp", "expected"),
    [
        ("2026-11-23T15:01:02.123456789Z", datetime(2026, 11, 23, 15, 1, 2, 123456, tzinfo=UTC)),
        ("2026-11-23T15:01:02Z", datetime(2026, 11, 23, 15, 1, 2, tzinfo=UTC)),
        ("2026-11-23T15:01:02.1Z", datetime(2026, 11, 23, 15, 1, 2, 100000, tzinfo=UTC)),
        # `docker info`'s SystemTime is the daemon's local time with its offset.
        ("2026-11-23T17:01:02.5+02:00", datetime(2026, 11, 23, 15, 1, 2, 500000, tzinfo=UTC)),
        ("2026-11-23T11:01:02-04:00", datetime(2026, 11, 23, 15, 1, 2, tzinfo=UTC)),
    ],
)
def test_docker_timestamps_compare_as_instants_whatever_the_daemon_timezone(
    stamp: str, expected: datetime
) -> None:
    assert _parse_time(stamp) == expected


def test_an_unreadable_timestamp_is_a_devbox_error() -> None:
    with pytest.raises(DevboxError, match="unreadable time"):
        _parse_time("yesterday")
