"""``moto_server`` with a request trace: the same app, plus one JSON line per request.

Each line holds the method, path, query and the server's own start and end times
(monotonic seconds), so a benchmark can tell the time spent receiving parts from the time
moto spends in ``CompleteMultipartUpload``.  Usage::

    python bench/moto_server.py -H 127.0.0.1 -p PORT --trace FILE
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any


class _Traced:
    """A WSGI body that logs the request when the server closes it."""

    def __init__(self, body: Iterable[bytes], done: Callable[[], None]):
        self._body, self._done = body, done

    def __iter__(self) -> Iterator[bytes]:
        return iter(self._body)

    def close(self) -> None:
        try:
            close = getattr(self._body, "close", None)
            if close:
                close()
        finally:
            self._done()


def traced(app: Any, path: str) -> Any:
    lock = threading.Lock()
    out = open(path, "a", buffering=1)  # noqa: SIM115  (open for the server's lifetime)

    def wrapper(environ: dict[str, Any], start_response: Any) -> Any:
        started = time.monotonic()
        record = {
            "method": environ.get("REQUEST_METHOD"),
            "path": environ.get("PATH_INFO"),
            "query": environ.get("QUERY_STRING", ""),
            "length": int(environ.get("CONTENT_LENGTH") or 0),
            "start": started,
        }

        def done() -> None:
            record["end"] = time.monotonic()
            with lock:
                out.write(json.dumps(record) + "\n")

        return _Traced(app(environ, start_response), done)

    return wrapper


def main() -> None:
    from moto.moto_server.werkzeug_app import (
        DomainDispatcherApplication,
        MotoRequestHandler,
        create_backend_app,
    )
    from werkzeug.serving import run_simple

    parser = argparse.ArgumentParser()
    parser.add_argument("-H", "--host", default="127.0.0.1")
    parser.add_argument("-p", "--port", type=int, required=True)
    parser.add_argument("--trace", required=True)
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    app = DomainDispatcherApplication(create_backend_app)
    app.debug = True  # type: ignore[attr-defined]  # as moto_server does
    run_simple(
        args.host,
        args.port,
        traced(app, args.trace),
        threaded=True,
        request_handler=MotoRequestHandler,
    )


if __name__ == "__main__":
    main()
