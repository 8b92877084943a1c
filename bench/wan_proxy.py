"""A TCP proxy that makes 127.0.0.1 behave like a long, per-connection-capped link.

Loopback has no round trip and nginx's ``limit_rate`` caps a *request* with a burst, so
many small ranged requests look free there.  A CDN over a WAN costs at least one round
trip per request and caps each TCP connection.  This proxy sits between a client and a
server on 127.0.0.1 and, for every connection it accepts:

- holds the client's first bytes for one extra round trip (the TCP handshake);
- delays each direction by half the round-trip time (``--rtt-ms``);
- paces the server-to-client direction of *each connection* at ``--rate-mib`` MiB/s
  with no burst, like a per-connection cap, in slices of 64 KiB (so a reply's first
  bytes are not held back until a whole read has been paced), and keeps no more in
  flight than the bandwidth-delay product plus a small queue and one read, so a client
  that stops reading stops the server (backpressure), as TCP would.

Run it on its own (``python bench/wan_proxy.py --upstream 127.0.0.1:8080 --rtt-ms 50
--rate-mib 20``; it prints ``listening on PORT``) or through :class:`WanProxy` from the
benchmark.  It only ever listens on and connects to 127.0.0.1.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.util
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

HOST = "127.0.0.1"
LOOP = "uvloop" if importlib.util.find_spec("uvloop") else "asyncio"
CHUNK = 1024 * 1024
QUEUE_BYTES = 512 * 1024
"""Bytes a direction may hold beyond its bandwidth-delay product (the bottleneck's queue)."""
SLICE = 64 * 1024
"""A paced read goes out in slices this long, each when the cap has let its last byte
through: a reply's first bytes arrive one round trip after the request, as over TCP,
instead of after the whole read (1 MiB at 20 MiB/s is 50 ms more)."""


class Direction:
    """One direction of one connection: delay, pacing and a bounded in-flight window."""

    def __init__(
        self, delay: float, rate: float | None, not_before: float, stats: dict[str, int]
    ) -> None:
        self.delay, self.rate, self.not_before = delay, rate, not_before
        # The bytes on the wire both ways, the bottleneck's queue, and one read more: a
        # read of CHUNK must fit behind the one being sent, or a short link whose
        # bandwidth-delay product is below a read idles between reads (at 20 ms and
        # 20 MiB/s, without it, the link gave a sixth less than its cap).
        self.window = int((rate or 0) * delay * 2) + QUEUE_BYTES + CHUNK
        self.queue: asyncio.Queue[tuple[float, bytes | memoryview]] = asyncio.Queue()
        self.held = 0
        self.room = asyncio.Event()
        self.room.set()
        self.stats = stats

    async def pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        sender = asyncio.create_task(self._send(writer))
        loop = asyncio.get_running_loop()
        sent_until = 0.0  # when the bottleneck finishes the bytes handed to it so far
        try:
            while True:
                await self.room.wait()
                data = await reader.read(CHUNK)
                if not data:
                    break
                now = loop.time()
                self.held += len(data)
                if self.held >= self.window:
                    self.room.clear()
                if not self.rate:
                    self.queue.put_nowait((max(now, self.not_before) + self.delay, data))
                    continue
                sent_until = max(now, sent_until)
                view = memoryview(data)
                for at in range(0, len(data), SLICE):
                    piece = view[at : at + SLICE]
                    sent_until += len(piece) / self.rate
                    due = max(sent_until, self.not_before) + self.delay
                    self.queue.put_nowait((due, piece))
        except (ConnectionError, OSError):
            pass
        finally:
            self.queue.put_nowait((0.0, b""))
            with contextlib.suppress(Exception):
                await sender

    async def _send(self, writer: asyncio.StreamWriter) -> None:
        loop = asyncio.get_running_loop()
        try:
            while True:
                due, data = await self.queue.get()
                if not data:
                    break
                wait = due - loop.time()
                if wait > 0:
                    await asyncio.sleep(wait)
                writer.write(data)
                await writer.drain()
                self.stats["bytes"] += len(data)
                self.held -= len(data)
                if self.held < self.window:
                    self.room.set()
            if writer.can_write_eof():
                writer.write_eof()
        except (ConnectionError, OSError):
            pass
        finally:
            self.room.set()


async def handle(
    client_r: asyncio.StreamReader,
    client_w: asyncio.StreamWriter,
    upstream: tuple[str, int],
    rtt: float,
    rate: float | None,
    stats: dict[str, int],
) -> None:
    loop = asyncio.get_running_loop()
    accepted = loop.time()
    stats["connections"] += 1
    try:
        server_r, server_w = await asyncio.open_connection(*upstream, limit=CHUNK)
    except OSError:
        client_w.close()
        return
    for w in (client_w, server_w):
        sock = w.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    up = Direction(rtt / 2, None, accepted + rtt, stats)  # the handshake costs one round trip
    down = Direction(rtt / 2, rate, 0.0, stats)
    try:
        await asyncio.gather(up.pump(client_r, server_w), down.pump(server_r, client_w))
    except asyncio.CancelledError:
        pass
    finally:
        for w in (client_w, server_w):
            with contextlib.suppress(Exception):
                w.close()


async def serve(port: int, upstream: tuple[str, int], rtt: float, rate: float | None) -> None:
    stats = {"connections": 0, "bytes": 0}
    server = await asyncio.start_server(
        lambda r, w: handle(r, w, upstream, rtt, rate, stats), HOST, port, limit=CHUNK
    )
    bound = server.sockets[0].getsockname()[1]
    print(f"listening on {bound}", flush=True)
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with server:
        await stop.wait()
        server.close()
        tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)  # let them end quietly
    cpu = time.process_time()
    print(f"connections {stats['connections']} bytes {stats['bytes']} cpu {cpu:.1f}s", flush=True)


class WanProxy:
    """The proxy as a child process (its CPU is its own), stopped by its PID."""

    def __init__(
        self, upstream_port: int, rtt_ms: float, rate_mib: float | None, loop: str = LOOP
    ) -> None:
        self.upstream_port, self.rtt_ms, self.rate_mib = upstream_port, rtt_ms, rate_mib
        self.loop = loop
        self.port = 0
        self.proc: subprocess.Popen[str] | None = None

    def __enter__(self) -> WanProxy:
        argv = [sys.executable, str(Path(__file__).resolve()), "--upstream"]
        argv += [f"{HOST}:{self.upstream_port}", "--rtt-ms", str(self.rtt_ms)]
        argv += ["--loop", self.loop]
        if self.rate_mib:
            argv += ["--rate-mib", str(self.rate_mib)]
        self.proc = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line.startswith("listening on "):
            raise RuntimeError(f"the WAN proxy did not start: {line!r}")
        self.port = int(line.split()[-1])
        return self

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait()

    def cpu_seconds(self) -> float:
        """The proxy's CPU time so far (user + system), from /proc."""
        if self.proc is None:
            return 0.0
        try:
            fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            return 0.0
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def url(self, url: str) -> str:
        """``url`` (on 127.0.0.1 at the upstream port) rewritten to go through the proxy."""
        return url.replace(f"{HOST}:{self.upstream_port}", f"{HOST}:{self.port}", 1)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, default=0, help="port to listen on (default: any)")
    parser.add_argument("--upstream", required=True, help="127.0.0.1:PORT of the real server")
    parser.add_argument("--rtt-ms", type=float, default=50.0, help="round-trip time to add")
    parser.add_argument(
        "--rate-mib", type=float, default=None, help="cap per connection, MiB/s (default: none)"
    )
    parser.add_argument(
        "--loop",
        choices=["uvloop", "asyncio"],
        default=LOOP,
        help=f"event loop (default {LOOP}: uvloop when installed, which costs less CPU)",
    )
    args = parser.parse_args()
    host, _, port = args.upstream.rpartition(":")
    if host != HOST:
        parser.error("the upstream must be on 127.0.0.1")
    rate = args.rate_mib * (1 << 20) if args.rate_mib else None
    started = time.monotonic()
    main = serve(args.port, (host, int(port)), args.rtt_ms / 1000, rate)
    if args.loop == "uvloop":
        import uvloop

        uvloop.run(main)
    else:
        asyncio.run(main)
    print(f"ran {time.monotonic() - started:.1f}s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
