"""The namespaced network, built once per module (it takes about half a minute)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from .harness import MultiHost
from .netns import requirements_message


@pytest.fixture(scope="module")
def hosts(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MultiHost]:
    missing = requirements_message()
    if missing:  # never a skip: CI must run this
        pytest.fail(missing, pytrace=False)
    harness = MultiHost(tmp_path_factory.mktemp("multihost"))
    try:
        harness.start()
        yield harness
    finally:
        harness.stop()
