"""Request bodies over the limit get 413 with the limit, whether declared or streamed; bugs get the error shape."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from twinchat.api.app import create_app
from twinchat.testing import fake_service


@pytest.fixture
def client(tmp_path: Path) -> TestClient:
    service = fake_service(tmp_path, max_body_bytes=2048)
    service.ingest_records([])
    _, key = service.create_key("admin")
    return TestClient(
        create_app(service.settings, service=service),
        headers={"Authorization": f"Bearer {key}"},
        raise_server_exceptions=False,
    )


def test_a_declared_body_over_the_limit_gets_413_naming_the_limit(client: TestClient) -> None:
    response = client.post("/v1/twins/ann/ask", json={"question": "x" * 4000})
    assert response.status_code == 413
    assert response.json()["error"] == "too_large"
    assert "the limit is 2048 bytes (TWINCHAT_MAX_BODY_BYTES)" in response.json()["message"]


def test_a_streamed_body_over_the_limit_gets_413(client: TestClient) -> None:
    def chunks() -> Iterator[bytes]:
        yield b'{"question": "'
        for _ in range(10):
            yield b"x" * 500
        yield b'"}'

    response = client.post(
        "/v1/twins/ann/ask", content=chunks(), headers={"content-type": "application/json"}
    )
    assert response.status_code == 413 and response.json()["error"] == "too_large"


def test_a_body_within_the_limit_is_read(client: TestClient) -> None:
    response = client.post("/v1/twins/ann/ask", json={"question": "x" * 1000})
    assert response.status_code == 404  # read and routed: no twin ann here


def test_an_unexpected_error_is_a_500_in_the_error_shape_without_internals(client: TestClient) -> None:
    def broken(*_: object, **__: object) -> None:
        raise RuntimeError("secret internals")

    client.app.state.service.twins = broken  # type: ignore[attr-defined]
    response = client.get("/v1/twins")
    assert response.status_code == 500 and response.json()["error"] == "internal"
    assert "secret" not in response.text and "reference" in response.json()["message"]
