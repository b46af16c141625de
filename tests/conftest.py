"""Shared test setup: no network beyond loopback, telemetry off, data folders located."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.support import netguard

os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
netguard.install()

ROOT = Path(__file__).resolve().parent.parent
SHARED_DATA = Path(os.environ.get("TWINCHAT_DATA_DIR", ROOT.parent / "shared" / "data"))


@pytest.fixture(autouse=True)
def _no_network_leaks():
    before = len(netguard.attempts)
    yield
    leaked = netguard.attempts[before:]
    assert not leaked, f"the test tried to reach the network beyond loopback: {leaked}"


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path, monkeypatch):
    # No test may read or write a developer's real .twinchat folder or pick up their TWINCHAT_* settings.
    for name in list(os.environ):
        if name.startswith("TWINCHAT_") and name not in ("TWINCHAT_DATA_DIR", "TWINCHAT_NETGUARD_LOG"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("TWINCHAT_HOME", str(tmp_path / "home"))


@pytest.fixture
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"shared data folder {SHARED_DATA} is absent (set TWINCHAT_DATA_DIR)")
    return SHARED_DATA
