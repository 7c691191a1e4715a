"""How /predict reads a body over DSLC_SERVING_MAX_BODY_BYTES: refuse, drain, or close."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from dslc.lake import Lake
from dslc.serving import service as service_mod
from dslc.serving.metrics import ClientGoneError
from dslc.serving.schema import RequestError
from dslc.serving.service import Service
from dslc.settings import Settings

LIMIT = 1024


@pytest.fixture
def service(tmp_path: Path) -> Service:
    settings = Settings(serving_max_body_bytes=LIMIT, lake_url=f"file://{tmp_path}/lake")
    return Service(settings, None, Lake(settings.lake))


class Client:
    """An ASGI ``receive`` that hands out body chunks and records how many it gave."""

    def __init__(self, chunks: Iterator[bytes], end: str = "body") -> None:
        self.chunks = chunks
        self.end = end
        self.calls = 0

    async def __call__(self) -> dict[str, Any]:
        self.calls += 1
        chunk = next(self.chunks, None)
        if chunk is None:
            if self.end == "disconnect":
                return {"type": "http.disconnect"}
            return {"type": "http.request", "body": b"", "more_body": False}
        return {"type": "http.request", "body": chunk, "more_body": True}


def scope(*headers: tuple[bytes, bytes]) -> dict[str, Any]:
    return {"type": "http", "headers": [(b"content-type", b"application/json"), *headers]}


def read(service: Service, receive: Client, *headers: tuple[bytes, bytes]) -> RequestError:
    with pytest.raises(RequestError) as info:
        asyncio.run(service.read_body(scope(*headers), receive))
    return info.value


def test_a_body_within_the_limit_is_read_whole(service: Service) -> None:
    receive = Client(iter([b"[", b" " * (LIMIT - 2), b"]"]))
    assert asyncio.run(service.read_body(scope(), receive)) == b"[" + b" " * (LIMIT - 2) + b"]"


def test_a_declared_length_over_the_limit_is_refused_unread(service: Service) -> None:
    receive = Client(iter([b" " * 10]))
    err = read(service, receive, (b"content-length", str(LIMIT + 1).encode()))
    assert err.status == 413 and not err.close and receive.calls == 0
    assert f"larger than {LIMIT} bytes" in str(err)
    huge = str(LIMIT + service_mod.DRAIN_BYTES + 1).encode()
    assert read(service, Client(iter([])), (b"content-length", huge)).close


def test_a_streamed_body_over_the_limit_is_drained_then_refused(service: Service) -> None:
    receive = Client(iter([b" " * 512] * 20))
    err = read(service, receive)
    assert err.status == 413 and not err.close
    assert receive.calls == 21  # every chunk and the end: the connection can be reused


def test_an_endless_body_is_refused_and_the_connection_closed(
    service: Service, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(service_mod, "DRAIN_BYTES", 10 * LIMIT)

    def endless() -> Iterator[bytes]:
        while True:
            yield b" " * 512

    receive = Client(endless())
    err = read(service, receive)
    assert err.status == 413 and err.close
    # 3 chunks cross the limit, then the drain stops at the first chunk past its bound
    assert receive.calls == 3 + 10 * LIMIT // 512 + 1


def test_a_client_gone_while_draining_is_not_answered(service: Service) -> None:
    receive = Client(iter([b" " * 2048, b" "]), end="disconnect")
    with pytest.raises(ClientGoneError):
        asyncio.run(service.read_body(scope(), receive))
