import os
import sys

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, os.path.dirname(__file__))


def slow_weight(item: pytest.Item) -> float:
    """`@pytest.mark.slow(seconds)`: about how long the test takes on 2 loaded CPU cores."""
    marker = item.get_closest_marker("slow")
    if marker is None:
        return 0.0
    return float(marker.args[0]) if marker.args else 1.0


def pytest_collection_modifyitems(config, items):
    """The longest tests first (a stable sort: the others keep their order), so that
    pytest-xdist hands them out while the short ones are still there to fill the gaps, and
    the run does not end with one worker busy on a long test and the other one idle."""
    items.sort(key=lambda item: -slow_weight(item))
