"""The command in a real 80x24 pseudo-terminal, its screen rendered by a terminal
emulator (pyte): every row fits, numbers are never cut, units never wrap, and the speed
shown never exceeds what the throttled server can deliver."""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import pty
import re
import select
import signal
import struct
import subprocess
import sys
import termios
import time
from collections.abc import Callable
from pathlib import Path

import pyte
import pytest

from xview2_ingest.demo.server import Faults, SignedLinkServer
from xview2_ingest.demo.synth import make_dataset

COLS, ROWS = 80, 24
MiB = 1 << 20
RATE = MiB  # bytes per second per connection
CONNECTIONS = 2
UNIT = r"(?:B|kB|MB|GB)"
SIZE = rf"\d+(?:\.\d)?(?:/\d+(?:\.\d)?)? {UNIT}"
SPEED = rf"(\d+(?:\.\d)?) ({UNIT})/s"
ROW = re.compile(rf"^(?P<name>\S.*?) +(?:[━╸]+ +)?(?P<size>{SIZE})(?: +{SPEED})?")
SCALE = {"B": 1, "kB": 1e3, "MB": 1e6, "GB": 1e9}


def run_in_terminal(
    argv: list[str],
    *,
    every: float = 0.25,
    rows: int = ROWS,
    when: Callable[[str], bool] | None = None,
    then: Callable[[subprocess.Popen[bytes]], None] | None = None,
    timeout: float = 120,
    probe: Callable[[], int] | None = None,
    probed: list[int] | None = None,
) -> tuple[int, list[str]]:
    """Run ``argv`` on a COLS x ``rows`` pty; return its exit code and the screen every
    ``every`` seconds and at the end.  Once a screen satisfies ``when``, ``then`` is
    called once with the process (e.g. to interrupt it).  With ``probe``, its value just
    after each screen was read is appended to ``probed``."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, COLS, 0, 0))
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")}
    env["TERM"] = "xterm-256color"
    proc = subprocess.Popen(argv, stdin=slave, stdout=slave, stderr=slave, env=env)
    os.close(slave)
    screen = pyte.Screen(COLS, rows)
    stream = pyte.ByteStream(screen)
    screens: list[str] = []
    last = deadline = time.monotonic()
    deadline += timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.05)
            if ready:
                try:
                    data = os.read(master, 65536)
                except OSError:
                    data = b""
                if not data:
                    break
                stream.feed(data)
            if time.monotonic() - last >= every:
                last = time.monotonic()
                screens.append("\n".join(line.rstrip() for line in screen.display))
                if probe is not None and probed is not None:
                    probed.append(probe())
                if when is not None and then is not None and when(screens[-1]):
                    then(proc)
                    when = None
        screens.append("\n".join(line.rstrip() for line in screen.display))
        if probe is not None and probed is not None:
            probed.append(probe())
        return proc.wait(timeout=60), screens
    finally:
        if proc.poll() is None:
            proc.kill()
        os.close(master)


def progress_rows(screen: str) -> list[re.Match[str]]:
    return [m for line in screen.splitlines() if (m := ROW.match(line))]


def assert_fits(screen: str) -> None:
    for line in screen.splitlines():
        assert len(line) <= COLS, line
        # a unit or a rate never starts a line: nothing wrapped
        assert not re.match(rf"^\s*(?:{UNIT}|{UNIT}/s|/s)\b", line), screen
        # numbers are never cut ("6.3/… MB", "0:00:…")
        assert not re.search(r"\d[./:]?…|…\s*(?:MB|kB|GB)", line), screen


@pytest.fixture(scope="module")
def archives(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("terminal")
    src = root / "src"
    src.mkdir()
    make_dataset(src, {"train": 8, "test": 4}, padding=600_000)
    cat = root / "cat.json"
    cat.write_text(
        json.dumps(
            {
                p.name: {"size": p.stat().st_size, "sha1": hashlib.sha1(p.read_bytes()).hexdigest()}
                for p in src.iterdir()
            }
        )
    )
    return src, cat


def command(*args: str) -> list[str]:
    return [sys.executable, "-m", "xview2_ingest.cli", *args]


def transfer_args(links: Path, dest: Path, cat: Path) -> list[str]:
    return [
        "--links", str(links), "--dest", str(dest), "--catalog", str(cat),
        "--connections", str(CONNECTIONS), "--part-size-mb", "1",
    ]  # fmt: skip


def speeds(screen: str) -> list[tuple[str, float]]:
    """(row name, bytes per second) of every row of ``screen`` that shows a speed."""
    return [
        (row.group("name").strip(), float(row.group(3)) * SCALE[row.group(4)])
        for row in progress_rows(screen)
        if row.group(3)
    ]


def test_download_at_80_columns_fits_and_never_overstates_the_speed(
    archives: tuple[Path, Path], tmp_path: Path
) -> None:
    src, cat = archives
    files = len(list(src.iterdir()))
    with SignedLinkServer(src, faults=Faults(rate=RATE)) as srv:
        links = tmp_path / "links.txt"
        links.write_text(srv.links_text())
        dest = tmp_path / "dest"
        # first run: interrupted after a few seconds, to resume below
        code, screens = run_in_terminal(
            command("download", *transfer_args(links, dest, cat)),
            when=lambda s: bool(re.search(r"^total .* [1-9]\d*\.\d/", s, re.M)),
            then=lambda proc: proc.send_signal(signal.SIGINT),
        )
        assert code == 130, screens[-1]
        assert "interrupted" in screens[-1] and "failed" not in screens[-1], screens[-1]
        # second run: resumes; its first screens must not count resumed bytes as speed
        before, served = srv.bytes_served, list[int]()
        code, screens = run_in_terminal(
            command("download", *transfer_args(links, dest, cat)),
            probe=lambda: srv.bytes_served,
            probed=served,
        )
    print("\n\n".join(screens[::8] + screens[-1:]))  # shown with -s: the captured screens
    assert code == 0, screens[-1]
    for screen in screens:
        assert_fits(screen)
    final = screens[-1]
    assert final.count("verified") >= files
    assert re.search(r"^total .* (\d+\.\d)/\1 MB", final, re.M), final
    # The server paces each request at RATE from its arrival, and a lane has two open at
    # most: its own and the next, asked a round trip ahead.
    cap_file = 2 * CONNECTIONS * RATE
    slack = 1.15  # pacing granularity of the server, refresh timing
    rounding = 0.05e6  # speeds are shown to a tenth of a MB
    paired = zip(screens[:-1], served[:-1], strict=True)  # the last screen: final averages
    shown = [(name, speed, got) for screen, got in paired for name, speed in speeds(screen)]
    assert shown, screens
    for name, speed, got in shown:
        cap = cap_file * (files if name == "total" else 1)
        assert speed <= cap * slack, (name, speed, cap)
        if name == "total":
            # a speed is taken over a second at least: it can never exceed the bytes the
            # server has sent this run (resumed bytes counted as speed would)
            assert speed <= (got - before) * slack + rounding, (speed, got - before)


def test_interrupt_is_reported_as_interrupted_not_failed(
    archives: tuple[Path, Path], tmp_path: Path
) -> None:
    src, cat = archives
    with SignedLinkServer(src, faults=Faults(rate=RATE)) as srv:
        links = tmp_path / "links.txt"
        links.write_text(srv.links_text())
        proc = subprocess.Popen(
            command("download", *transfer_args(links, tmp_path / "d", cat)),
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
        )
        time.sleep(2.5)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    text = err.decode()
    assert proc.returncode == 130, text
    assert "interrupted" in text and "failed" not in text, text


def test_ingest_status_and_stats_at_80_columns(archives: tuple[Path, Path], tmp_path: Path) -> None:
    src, cat = archives
    dest = tmp_path / "dest"
    with SignedLinkServer(src, faults=Faults(rate=4 * RATE)) as srv:
        links = tmp_path / "links.txt"
        links.write_text(srv.links_text())
        code, screens = run_in_terminal(command("ingest", *transfer_args(links, dest, cat)))
    assert code == 0, screens[-1]
    for screen in screens:
        assert_fits(screen)
        assert "..." not in screen
    final = screens[-1]
    assert "extract" in final and "index" in final and "indexed" in final

    code, screens = run_in_terminal(command("status", "--dest", str(dest), "--catalog", str(cat)))
    status = screens[-1]
    print(status)
    assert code == 0
    assert_fits(status)
    rows = [line for line in status.splitlines() if line.split()[1:2] == ["verified"]]
    assert len(rows) == 2, status
    for line in rows:
        assert re.search(r"\d+\.\d MB +\d{4}-\d\d-\d\d \d\d:\d\d +[0-9a-f]{12}$", line), line

    code, screens = run_in_terminal(command("stats", "--dest", str(dest)), rows=100)
    stats = screens[-1]
    print(stats)
    assert code == 0
    assert_fits(stats)
    assert "…" not in stats
    for header in ("pairs", "images", "pre bldgs", "post bldgs", "destroyed"):
        assert header in stats, stats


def test_rate_window_never_exceeds_what_arrived_in_the_window() -> None:
    from xview2_ingest.cli.progress import RateWindow

    now = [0.0]
    window = RateWindow(window=3.0, floor=1.0, clock=lambda: now[0])
    now[0] = 0.01
    window.add(50_000_000)  # a burst at the start (say, buffered bytes): not a speed
    assert window.rate() <= 50_000_000 / 1.0
    for _ in range(100):  # then a steady 1 MB every 0.1 s: 10 MB/s
        now[0] += 0.1
        window.add(1_000_000)
    assert 9.6e6 <= window.rate() <= 10.4e6  # one sample more or less at the edge
    now[0] += 10  # nothing arrives: the rate falls to 0, the mean stays
    assert window.rate() == 0 and window.mean() > 0


def test_plan_drops_columns_before_cutting_numbers() -> None:
    from xview2_ingest.cli.progress import elide_middle, plan

    wide = plan(200, name=34, size=14, rate=10, note=8)
    assert (wide.name, wide.size, wide.rate, wide.eta, wide.note) == (34, 14, 10, 7, 8)
    at80 = plan(80, name=34, size=14, rate=10, note=8)
    assert at80.size == 14 and at80.rate == 10 and at80.eta == 7 and at80.bar >= 10
    assert sum([at80.name, at80.size, at80.rate, at80.eta, at80.bar, at80.note]) + 5 <= 80
    narrow = plan(40, name=34, size=14, rate=10, note=8)
    assert narrow.size == 14 and narrow.bar == 0 and narrow.note == 0
    assert (narrow.rate, narrow.eta) == (0, 0) and narrow.name + 1 + narrow.size <= 40
    assert elide_middle("train_images_labels_targets.tar.gz", 20) == "train_ima…ets.tar.gz"
