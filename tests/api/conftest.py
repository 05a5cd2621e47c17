"""Fixtures of the REST API tests: real test audio for the files endpoint."""

from __future__ import annotations

import pytest

from tests.support.audio import AudioSamples


@pytest.fixture(scope="session")
def audio(tmp_path_factory: pytest.TempPathFactory) -> AudioSamples:
    return AudioSamples(tmp_path_factory.mktemp("audio"))
