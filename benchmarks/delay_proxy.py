"""A slow link without netem: a TCP proxy on 127.0.0.1 that holds every chunk of data `delay`
seconds in each direction before passing it on (25 ms each way is a 50 ms round trip). Chunks
keep their order and are not slowed by each other: only latency is added, never a bandwidth cap.

Bounded, so it cannot outlive or outgrow a benchmark: it listens on 127.0.0.1 only, forwards only
to a port on 127.0.0.1, serves at most `max_connections` connections at once, holds at most
`MAX_CHUNKS_IN_FLIGHT` chunks per direction, and stops by itself after `lifetime` seconds.

    with DelayProxy(target_port=2222, delay=0.025) as link:
        ...  # connect to 127.0.0.1:link.port

Standalone, to look at it: python benchmarks/delay_proxy.py --to 2222 --delay 0.025 --lifetime 60
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
import threading
from types import TracebackType

LOCALHOST = "127.0.0.1"
CHUNK = 64 * 1024
MAX_CHUNKS_IN_FLIGHT = 256
CONNECT_TIMEOUT_S = 10.0
START_TIMEOUT_S = 5.0


class DelayProxy:
    """Forwards 127.0.0.1:`port` (chosen by the kernel, or `listen_port`) to 127.0.0.1:`target_port`,
    each direction `delay` seconds late. Use as a context manager, or start()/stop()."""

    def __init__(
        self,
        target_port: int,
        delay: float,
        *,
        listen_port: int = 0,
        lifetime: float = 1800.0,
        max_connections: int = 64,
    ) -> None:
        if not 0 <= delay <= 1:
            raise ValueError(f"delay {delay} s: a link slower than 1 s each way is not a benchmark")
        if lifetime <= 0 or max_connections < 1:
            raise ValueError("lifetime and max_connections must be positive")
        self.target_port = target_port
        self.delay = delay
        self.lifetime = lifetime
        self.max_connections = max_connections
        self.port = listen_port
        self.connections_served = 0
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._run, name="delay-proxy", daemon=True)

    def start(self) -> DelayProxy:
        """Start listening; return once the port accepts connections."""
        self._thread.start()
        if not self._ready.wait(START_TIMEOUT_S) or self._error is not None:
            raise RuntimeError(f"the delaying proxy did not start: {self._error}")
        return self

    def stop(self) -> None:
        """Close the listener and every connection; return once the proxy's thread has ended."""
        if self._loop is not None and self._stop is not None and self._thread.is_alive():
            with contextlib.suppress(RuntimeError):  # the loop ended by itself meanwhile
                self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(timeout=10)

    def wait(self) -> None:
        """Block until the proxy stops (its lifetime ends, or stop() from another thread)."""
        self._thread.join()

    def __enter__(self) -> DelayProxy:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def _run(self) -> None:
        try:
            asyncio.run(self._main())
        except BaseException as exc:  # reported by start() if it never listened
            self._error = exc
            self._ready.set()

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        conns: set[asyncio.Task[None]] = set()

        async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            task = asyncio.current_task()
            assert task is not None
            conns.add(task)
            try:
                if len(conns) <= self.max_connections:
                    self.connections_served += 1
                    await self._forward(reader, writer)
            except asyncio.CancelledError:
                pass  # stopping: the task ends here (3.11's stream callback chokes on a cancelled one)
            finally:
                writer.close()
                conns.discard(task)

        server = await asyncio.start_server(serve, LOCALHOST, self.port)
        self.port = server.sockets[0].getsockname()[1]
        self._ready.set()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stop.wait(), self.lifetime)
        server.close()
        for task in list(conns):
            task.cancel()
        await asyncio.gather(*conns, return_exceptions=True)

    async def _forward(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        # The client's bytes are timed from now, but the server sees the connection only after a
        # real link's handshake (SYN, SYN-ACK, ACK: three trips), so its first byte reaches the
        # client two round trips after the connect, as it would over the link.
        to_server = _Leg(client_r, self.delay)
        try:
            await asyncio.sleep(3 * self.delay)
            server_r, server_w = await asyncio.wait_for(
                asyncio.open_connection(LOCALHOST, self.target_port), CONNECT_TIMEOUT_S
            )
        except (OSError, TimeoutError):
            to_server.reading.cancel()
            return
        try:
            # Either direction failing (a reset) ends both; each ends by itself at its EOF.
            async with asyncio.TaskGroup() as group:
                group.create_task(to_server.deliver(server_w))
                group.create_task(_Leg(server_r, self.delay).deliver(client_w))
        except* OSError:
            pass
        finally:
            to_server.reading.cancel()
            server_w.close()


class _Leg:
    """One direction of a connection: chunks read from `src` as they come, each stamped with the
    time it may be written (`delay` after it was read), EOF included."""

    def __init__(self, src: asyncio.StreamReader, delay: float) -> None:
        self.queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue(MAX_CHUNKS_IN_FLIGHT)
        self.reading = asyncio.create_task(self._pump(src, delay))

    async def _pump(self, src: asyncio.StreamReader, delay: float) -> None:
        loop = asyncio.get_running_loop()
        while True:
            try:
                data = await src.read(CHUNK)
            except OSError:
                data = b""
            await self.queue.put((loop.time() + delay, data))
            if not data:
                return

    async def deliver(self, dst: asyncio.StreamWriter) -> None:
        """Write each chunk to `dst` when it is due; end at EOF, which is passed on."""
        loop = asyncio.get_running_loop()
        try:
            while True:
                due, data = await self.queue.get()
                await asyncio.sleep(max(0.0, due - loop.time()))
                if not data:
                    if dst.can_write_eof():
                        dst.write_eof()
                    return
                dst.write(data)
                await dst.drain()
        finally:
            self.reading.cancel()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--to", type=int, required=True, metavar="PORT", help="port on 127.0.0.1 to forward to"
    )
    parser.add_argument("--delay", type=float, default=0.025, help="seconds each way (default 0.025)")
    parser.add_argument(
        "--listen", type=int, default=0, metavar="PORT", help="port to listen on (default: any)"
    )
    parser.add_argument("--lifetime", type=float, default=300.0, help="stop after this many seconds (300)")
    args = parser.parse_args(argv)
    proxy = DelayProxy(args.to, args.delay, listen_port=args.listen, lifetime=args.lifetime).start()
    print(f"127.0.0.1:{proxy.port} -> 127.0.0.1:{args.to}, {args.delay * 1000:g} ms each way", flush=True)
    try:
        proxy.wait()
    except KeyboardInterrupt:
        proxy.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
