"""A tiny HTTP listener for orchestrators: /healthz (process up), /readyz (broker and
store answer) and /metrics (counters as JSON)."""

import asyncio
import json
from collections.abc import Awaitable, Callable

Check = Callable[[], Awaitable[bool]]


class Counters:
    """Process-wide counters, served as JSON on the health listener's /metrics."""

    def __init__(self) -> None:
        self.values: dict[str, int] = {}

    def add(self, name: str, amount: int = 1) -> None:
        self.values[name] = self.values.get(name, 0) + amount


class HealthServer:
    def __init__(
        self,
        *,
        host: str,
        port: int,
        checks: dict[str, Check],
        metrics: Callable[[], dict[str, int]] = dict,
    ) -> None:
        self._host, self._port, self._checks, self._metrics = host, port, checks, metrics
        self._server: asyncio.Server | None = None

    @property
    def port(self) -> int:
        """The bound port (differs from the configured one when that was 0)."""
        return self._port

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, self._host, self._port)
        self._port = int(self._server.sockets[0].getsockname()[1])

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def readiness(self) -> dict[str, bool]:
        results = await asyncio.gather(*(_safe(check) for check in self._checks.values()))
        return dict(zip(self._checks, results, strict=True))

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            request_line = (await asyncio.wait_for(reader.readline(), 5)).decode("latin-1").split()
            path = request_line[1] if len(request_line) > 1 else "/"
            body: dict[str, object]
            if path == "/healthz":
                status, body = 200, {"status": "alive"}
            elif path == "/readyz":
                checks = await self.readiness()
                status, body = (
                    (200 if all(checks.values()) else 503),
                    {"ready": all(checks.values()), **checks},
                )
            elif path == "/metrics":
                status, body = 200, dict(self._metrics())
            else:
                status, body = 404, {"error": "not found"}
            payload = json.dumps(body).encode()
            reason = {200: "OK", 404: "Not Found", 503: "Service Unavailable"}[status]
            writer.write(
                f"HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(payload)}\r\nConnection: close\r\n\r\n".encode()
                + payload
            )
            await writer.drain()
        except (TimeoutError, ConnectionError):
            pass
        finally:
            writer.close()


async def _safe(check: Check) -> bool:
    try:
        return await asyncio.wait_for(check(), 3)
    except Exception:
        return False
