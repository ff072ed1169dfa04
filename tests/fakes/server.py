"""The life cycle every fake server shares: an aiohttp app on 127.0.0.1."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Self

from aiohttp import web


@dataclass
class RecordedRequest:
    """One request as the server saw it."""

    method: str
    path: str
    headers: dict[str, str]
    body: Any  # parsed JSON, or the raw text when it was not JSON, or None


class LocalServer:
    """Serves the routes a subclass adds in :meth:`routes` on 127.0.0.1 (a free port the
    first time, the same port after a restart); ``async with`` starts and stops it.

    ``handler_cancellation``: a client hanging up cancels its handler, which is how the
    fakes notice (and record) that a stream was closed by the caller. ``_closing`` is set
    while stopping, so stalled replies end at once.
    """

    shutdown_timeout = 1.0

    def __init__(self) -> None:
        self.requests: list[RecordedRequest] = []
        self._recorded = asyncio.Condition()
        self._closing = asyncio.Event()
        self._runner: web.AppRunner | None = None
        self.port = 0

    def routes(self, app: web.Application) -> None:
        raise NotImplementedError

    async def start(self) -> Self:
        """Listen on 127.0.0.1."""
        app = web.Application()
        self.routes(app)
        self._closing.clear()
        self._runner = web.AppRunner(app, handler_cancellation=True, shutdown_timeout=self.shutdown_timeout,
                                     access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()
        self.port = self._runner.addresses[0][1]
        return self

    async def close(self) -> None:
        """Stop the server; stalled replies end at once."""
        self._closing.set()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> Self:
        return await self.start()

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    @property
    def root_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def _record(self, request: web.Request) -> Any:
        """Keep the request (body parsed as JSON where it is JSON); returns the body."""
        text = await request.text()
        try:
            body: Any = json.loads(text) if text else None
        except ValueError:
            body = text
        self.requests.append(RecordedRequest(request.method, request.path, dict(request.headers), body))
        async with self._recorded:
            self._recorded.notify_all()
        return body

    async def wait_for_requests(
        self, check: Callable[[RecordedRequest], bool], *, count: int = 1, timeout: float = 10.0
    ) -> list[RecordedRequest]:
        """Wait until ``count`` recorded requests pass ``check`` (woken by each request)."""
        def hits() -> list[RecordedRequest]:
            return [r for r in self.requests if check(r)]

        async with self._recorded:
            await asyncio.wait_for(self._recorded.wait_for(lambda: len(hits()) >= count), timeout)
        return hits()

    async def _pause(self, seconds: float) -> None:
        """Wait ``seconds``, or less when the server is closing (keeps teardown fast)."""
        if seconds <= 0:
            return
        try:
            await asyncio.wait_for(self._closing.wait(), seconds)
        except TimeoutError:
            pass
