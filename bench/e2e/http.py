"""A minimal keep-alive HTTP/1.1 client on asyncio streams, and a pool of its connections.

A general-purpose client (httpx) spends more CPU per request than intake does on this machine,
and the load generator shares the machine with the system it measures.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass
from urllib.parse import urlsplit


class HttpError(Exception):
    """The connection failed or the answer was not HTTP/1.1 as expected."""


class _ClosedBeforeAnswerError(Exception):
    """The server closed the connection without answering."""


@dataclass(frozen=True)
class Response:
    status: int
    body: bytes
    retry_after_s: float | None = None


class Connection:
    """One keep-alive connection: a request, then its whole answer, then the next."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def post(self, path: str, body: bytes, headers: dict[str, str]) -> Response:
        """Send and read the answer. A kept-alive connection the server closed meanwhile
        (uvicorn closes idle ones after 5 s) fails before any answer: then once more on a new
        connection (the server never read the request)."""
        reused = self._writer is not None
        try:
            return await self._exchange(path, body, headers)
        except _ClosedBeforeAnswerError:
            if not reused:
                raise HttpError("the server closed the connection") from None
            return await self.post(path, body, headers)
        except (OSError, asyncio.IncompleteReadError, ValueError, IndexError) as exc:
            await self.close()
            raise HttpError(f"{type(exc).__name__}: {exc}") from exc

    async def _exchange(self, path: str, body: bytes, headers: dict[str, str]) -> Response:
        if self._writer is None:
            self._reader, self._writer = await asyncio.open_connection(self.host, self.port)
        assert self._reader is not None
        head = f"POST {path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n"
        head += "".join(f"{name}: {value}\r\n" for name, value in headers.items())
        head += f"Content-Length: {len(body)}\r\n\r\n"
        try:
            self._writer.write(head.encode("latin-1") + body)
            await self._writer.drain()
            status_line = await self._reader.readline()
        except (ConnectionResetError, BrokenPipeError):
            status_line = b""
        if not status_line:
            await self.close()
            raise _ClosedBeforeAnswerError
        return await self._read(self._reader, status_line)

    async def _read(self, reader: asyncio.StreamReader, status_line: bytes) -> Response:
        status = int(status_line.split()[1])
        length, chunked, close, retry_after = 0, False, False, None
        while (line := await reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.decode("latin-1").partition(":")
            name, value = name.strip().lower(), value.strip().lower()
            if name == "content-length":
                length = int(value)
            elif name == "transfer-encoding":
                chunked = "chunked" in value
            elif name == "connection":
                close = value == "close"
            elif name == "retry-after" and value.isdigit():
                retry_after = float(value)
        if chunked:
            parts = []
            while size := int((await reader.readline()).split(b";")[0], 16):
                parts.append(await reader.readexactly(size))
                await reader.readline()
            await reader.readline()
            body = b"".join(parts)
        else:
            body = await reader.readexactly(length)
        if close:
            await self.close()
        return Response(status, body, retry_after)

    async def close(self) -> None:
        writer, self._writer, self._reader = self._writer, None, None
        if writer is not None:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()

    def abort(self) -> None:
        writer, self._writer, self._reader = self._writer, None, None
        if writer is not None:
            writer.transport.abort()


class Pool:
    """Keep-alive connections to one server, opened on demand up to `limit`."""

    def __init__(self, url: str, *, limit: int = 512) -> None:
        parts = urlsplit(url)
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port or 80
        self._idle: list[Connection] = []
        self._limit = asyncio.Semaphore(limit)
        self.limit, self.busy, self.peak_busy = limit, 0, 0

    async def post(self, path: str, body: bytes, headers: dict[str, str]) -> Response:
        async with self._limit:
            connection = self._idle.pop() if self._idle else Connection(self.host, self.port)
            self.busy += 1
            self.peak_busy = max(self.peak_busy, self.busy)
            try:
                response = await connection.post(path, body, headers)
            except BaseException:
                connection.abort()  # cancelled mid-answer: the connection's state is unknown
                raise
            finally:
                self.busy -= 1
            self._idle.append(connection)
            return response

    async def close(self) -> None:
        idle, self._idle = self._idle, []
        for connection in idle:
            await connection.close()
