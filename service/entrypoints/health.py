"""The HTTP listener for orchestrators and scrapers, served by uvicorn: /healthz (the process is
up), /readyz (broker and store answer) and /metrics (Prometheus text, prometheus_client)."""

import asyncio
import contextlib
import json
from collections.abc import Awaitable, Callable
from typing import Any

import uvicorn
from prometheus_client import CollectorRegistry, make_asgi_app

from service.compat import start_uvicorn

Check = Callable[[], Awaitable[bool]]
Scope = dict[str, Any]
Send = Callable[[dict[str, Any]], Awaitable[None]]


class HealthServer:
    def __init__(
        self, *, host: str, port: int, checks: dict[str, Check], registry: CollectorRegistry
    ) -> None:
        self._host, self._port, self._checks = host, port, checks
        self._metrics = make_asgi_app(registry)
        self._server: uvicorn.Server | None = None
        self._loop: asyncio.Task[None] | None = None

    @property
    def port(self) -> int:
        """The bound port (differs from the configured one when that was 0)."""
        return self._port

    async def start(self) -> None:
        config = uvicorn.Config(
            self._app,
            host=self._host,
            port=self._port,
            interface="asgi3",
            lifespan="off",
            log_level="warning",
            access_log=False,
        )
        self._server = uvicorn.Server(config)
        await start_uvicorn(self._server)
        self._port = int(self._server.servers[0].sockets[0].getsockname()[1])
        self._loop = asyncio.create_task(self._server.main_loop())

    async def stop(self) -> None:
        if self._server is None:
            return
        self._server.should_exit = True
        if self._loop is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._loop
        await self._server.shutdown()
        self._server = None

    async def readiness(self) -> dict[str, bool]:
        results = await asyncio.gather(*(_safe(check) for check in self._checks.values()))
        return dict(zip(self._checks, results, strict=True))

    async def _app(self, scope: Scope, receive: Callable[[], Awaitable[Any]], send: Send) -> None:
        path = scope.get("path", "")
        if path == "/metrics":
            await self._metrics(scope, receive, send)
            return
        body: dict[str, object]
        if path == "/healthz":
            status, body = 200, {"status": "alive"}
        elif path == "/readyz":
            checks = await self.readiness()
            ready = all(checks.values())
            status, body = (200 if ready else 503), {"ready": ready, **checks}
        else:
            status, body = 404, {"error": "not found"}
        payload = json.dumps(body).encode()
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode())]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": payload})


async def _safe(check: Check) -> bool:
    try:
        return await asyncio.wait_for(check(), timeout=3)
    except Exception:
        return False
