"""A TCP proxy on loopback that a test can cut, turn into a black hole, or freeze, to take a server away."""

from __future__ import annotations

import asyncio
import contextlib


class TcpProxy:
    """Forwards 127.0.0.1:<port> to a target (host and port, or a unix socket path).

    `stop()` refuses connections, `blackhole()` drops them and accepts new ones that stay silent,
    `stall()` freezes everything as a SIGSTOPped server does (open connections stay open, new ones are
    accepted, nothing is answered) until `resume()` delivers what waited, as SIGCONT does;
    `serve_new_only()` instead leaves the frozen connections frozen for good and serves new ones (the
    server is back, but what was open during the hang is silently lost).
    """

    def __init__(self, target_host: str, target_port: int = 0, *, unix_path: str | None = None) -> None:
        self.target = (target_host, target_port)
        self.unix_path = unix_path
        self.port = 0
        self.mode = "forward"
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._writers: set[asyncio.StreamWriter] = set()
        self._flowing = asyncio.Event()
        self._flowing.set()
        self._stall_on: bytes | None = None
        self.stalled = asyncio.Event()

    async def start(self) -> None:
        """Listen (again, on the same port once it has one) and forward; silent connections are dropped."""
        if self.mode == "blackhole":
            self._drop()  # like a restarted server: hung connections end, clients reconnect
        self.mode = "forward"
        self._flowing.set()
        self.stalled.clear()
        if self._server is None:
            self._server = await asyncio.start_server(self._handle, "127.0.0.1", self.port, reuse_address=True)
            self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        """Close the listener and every open connection: the server is gone."""
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        self._drop()
        self._flowing.set()  # nothing waits for a resume that will not come

    async def blackhole(self) -> None:
        """Keep listening but never answer (and drop what is open): the server hangs."""
        await self.start()
        self.mode = "blackhole"
        self._drop()

    def stall(self) -> None:
        """Freeze: keep every connection open, accept new ones, forward nothing in either direction."""
        self._stall_on = None
        self._flowing.clear()
        self.stalled.set()

    def stall_on(self, marker: bytes) -> None:
        """Freeze as soon as a client sends `marker` (before it reaches the server): a hang mid-request."""
        self._stall_on = marker

    def resume(self) -> None:
        """Unfreeze: deliver what waited and forward again."""
        self._stall_on = None
        self.stalled.clear()
        self._flowing.set()

    def serve_new_only(self) -> None:
        """Serve new connections; those open now stay frozen, silently, until the proxy stops."""
        self._stall_on = None
        self.stalled.clear()
        self._flowing = asyncio.Event()  # the frozen connections keep waiting on the old one
        self._flowing.set()

    def _drop(self) -> None:
        for w in list(self._writers):
            w.transport.abort()
        self._writers.clear()
        for t in list(self._tasks):
            t.cancel()

    async def _connect_upstream(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        if self.unix_path is not None:
            return await asyncio.open_unix_connection(self.unix_path)
        return await asyncio.open_connection(*self.target)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        if self.mode == "blackhole":
            return  # the connection stays open and silent until dropped
        me = asyncio.current_task()
        if me is not None:  # dropped with the rest, even while it waits for a frozen server
            self._tasks.add(me)
            me.add_done_callback(self._tasks.discard)
        flowing = self._flowing  # this connection's fate: resumed with it, or frozen with it for good
        await flowing.wait()  # a frozen server accepts (the kernel does) but does not answer
        try:
            up_reader, up_writer = await self._connect_upstream()
        except OSError:
            writer.transport.abort()
            return
        self._writers.add(up_writer)

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter, upstream: bool) -> None:
            with contextlib.suppress(Exception):
                while data := await src.read(65536):
                    if upstream and self._stall_on is not None and self._stall_on in data:
                        self.stall()
                    await flowing.wait()
                    dst.write(data)
                    await dst.drain()
            dst.transport.abort()

        for t in (
            asyncio.create_task(pipe(reader, up_writer, True)),
            asyncio.create_task(pipe(up_reader, writer, False)),
        ):
            self._tasks.add(t)
            t.add_done_callback(self._tasks.discard)
