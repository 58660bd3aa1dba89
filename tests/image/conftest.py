"""The image the tests run: built once per session by `scripts/build-image.sh` (`make image`)."""

from __future__ import annotations

import pytest

from tests.image.podman import BuiltImage, build_image


@pytest.fixture(scope="session")
def built_image() -> BuiltImage:
    """Cold (no cached Debian base, no layers) about two minutes; warm, only the changed layers."""
    return build_image()
