"""Settings read from the environment: what is refused at start, with a message that says why."""

from __future__ import annotations

import pytest

from podium.config import Settings
from podium.errors import ConfigError


def test_the_user_content_url_must_be_an_origin(monkeypatch):
    for bad in ("content.example.com", "ftp://content.example.com", "https://content.example.com/podium"):
        monkeypatch.setenv("PODIUM_USER_CONTENT_URL", bad)
        with pytest.raises(ConfigError):
            Settings.from_env()
    monkeypatch.setenv("PODIUM_USER_CONTENT_URL", "https://content.example.com")
    assert Settings.from_env().user_content_url == "https://content.example.com"
