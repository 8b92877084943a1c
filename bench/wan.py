"""WAN benchmark: xview2 against aria2c, the naive way and rclone over a long, capped link.

Loopback has no round trip, and nginx's ``limit_rate`` caps a request (with a burst), not
a connection.  Here every contender reaches nginx through ``bench/wan_proxy.py``, which
adds a round trip (half each way, one more for each new connection's handshake) and caps
each TCP connection with backpressure, like a CDN over a WAN.  One command::

    python bench/wan.py            # the real figures (1 GiB, 2 GiB over HTTPS, 3 rounds)
    python bench/wan.py --quick    # a smoke run with small files, one round

Scenarios: the proxy's own ceiling (many uncapped connections through it); 1 GiB to
local disk at 20, 50 and 80 ms with 20 MiB/s per connection (xview2 with 16 connections
and with its tuned default, aria2c -x16); 1 GiB to S3 (moto) at 50 ms (xview2, the naive
way, rclone copyurl); 2 GiB over HTTPS from nginx with a self-signed certificate,
unthrottled and without the proxy (xview2 against curl + sha1sum).  Each figure is shown
beside the link's limit for the contender's connections, and the tables are written to
``docs/benchmarks-wan.md``.
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (
    HOST,
    MB,
    NGINX_CONF,
    REPO,
    WORK,
    Measure,
    MiB,
    Nginx,
    TestFile,
    byte_compiled,
    catalog_for,
    exit_on_sigterm,
    free_port,
    fresh_dir,
    load_average,
    machine,
    make_file,
    require,
    settle,
    step,
    timed,
    wait_for_port,
    warm,
)
from results import fmt_ratio, section_head, size_label
from results import rounds as all_rounds
from transfer import Bench
from wan_proxy import WanProxy

DOCS = REPO / "docs" / "benchmarks-wan.md"
RSS_LIMIT_MB = 256.0


@dataclass
class Row:
    m: Measure
    connections: int | None
    """Connections the contender used (None: unknown), for the link's limit."""
    chosen: str = ""


@dataclass
class Scenario:
    title: str
    size: int
    rate_mib: float | None
    kind: str = "transfer"
    rows: list[Row] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    targets: list[tuple[str, float | None, float, str]] = field(default_factory=list)

    def get(self, prefix: str) -> Row | None:
        return next((r for r in self.rows if r.m.tool.startswith(prefix)), None)

    def ratio(self, a: str, b: str) -> float | None:
        ra, rb = self.get(a), self.get(b)
        if not ra or not rb or not ra.m.ok or not rb.m.ok:
            return None
        return ra.m.seconds / rb.m.seconds

    def limit(self, connections: int | None) -> float | None:
        if not self.rate_mib or not connections:
            return None
        return self.size / (connections * self.rate_mib * MiB)


# -- contenders ------------------------------------------------------------------------


def chosen_connections(m: Measure) -> tuple[int | None, str]:
    """The count xview2 logged (``-v``): 'N connections ...'."""
    try:
        text = Path(str(m.extra["log"])).read_text(errors="replace")
    except (KeyError, OSError):
        return None, ""
    found = re.findall(r": (\d+) connections(?:, chosen by measuring \(([^;]*))?", text)
    if not found:
        return None, ""
    counts = [int(n) for n, _ in found]
    return max(counts), found[-1][1]


class Wan:
    def __init__(self, args: argparse.Namespace):
        self.args = args
        self.b = Bench(args)
        self.tools = self.b.tools

    def xview2_local(self, url: str, f: TestFile, conns: int | None, ca: Path | None = None):  # type: ignore[no-untyped-def]
        cat = catalog_for([f], WORK / "catalog.json")

        def run() -> Row:
            dest = fresh_dir(WORK / "dest" / "xview2")
            argv = [*self.b.xview2_argv(url, str(dest), cat, conns), "-v"]
            if ca:
                argv += ["--ca-bundle", str(ca)]
            label = f"xview2 --connections {conns}" if conns else "xview2 (tuned connections)"
            m = self.b.run_local(label, argv, dest / f.name, f)
            n, why = chosen_connections(m)
            return Row(m, conns or n, why)

        return run

    def aria2c(self, url: str, f: TestFile):  # type: ignore[no-untyped-def]
        def run() -> Row:
            return Row(self.b.local_contenders(url, f, None, "")["aria2c"](), 16)

        return run

    def curl_ranges(self, url: str, f: TestFile, n: int):  # type: ignore[no-untyped-def]
        """The link's floor as measured: ``n`` curls at once, each asking for its own
        ``1/n`` of the file in one request, into /dev/null (no file, no verification):
        one handshake and one round trip per connection, then streaming at the cap."""
        curl = shlex.quote(self.tools["curl"])
        step = -(-f.size // n)
        ranges = [(i * step, min(f.size, (i + 1) * step) - 1) for i in range(n)]
        script = " & ".join(
            f"{curl} -sS --fail -o /dev/null -r {a}-{b} {shlex.quote(url)}" for a, b in ranges
        )

        def run() -> Row:
            settle()
            m = timed(f"floor: {n} x curl, a range each, no file", ["sh", "-c", f"{script}; wait"])
            return Row(m, n)

        return run

    def curl_sha1(self, url: str, f: TestFile, ca: Path):  # type: ignore[no-untyped-def]
        def run() -> Row:
            dest = fresh_dir(WORK / "dest" / "curl")
            out = dest / f.name
            curl, sha1sum = self.tools["curl"], self.tools["sha1sum"]
            script = (
                f"{shlex.quote(curl)} -sS --fail --cacert {shlex.quote(str(ca))} "
                f"-o {shlex.quote(str(out))} {shlex.quote(url)} && "
                f"{shlex.quote(sha1sum)} {shlex.quote(str(out))}"
            )
            m = self.b.run_local(
                "curl -o f && sha1sum f", ["sh", "-c", script], out, f, check_sha1_in_output=True
            )
            return Row(m, 1)

        return run

    def s3(self, url: str, f: TestFile, conns: int | None):  # type: ignore[no-untyped-def]
        runs = self.b.s3_contenders(url, f, conns, f"--connections {conns}" if conns else "")

        def xview2() -> Row:
            m = runs["xview2"]()
            return Row(m, conns)

        def naive() -> Row:
            return Row(runs["naive"](), 1)

        def rclone() -> Row:
            return Row(runs["rclone"](), 1)

        return xview2, naive, rclone


def rounds(wan: Wan, contenders: list[Callable[[], Row]], repeat: int) -> list[Row]:
    """Interleaved rounds (A B C, A B C, ...) as in ``results.rounds``; each contender's
    median time counts, with the most connections it used."""
    rows: list[list[Row]] = [[] for _ in contenders]

    def measured(i: int, run: Callable[[], Row]) -> Callable[[], Measure]:
        def go() -> Measure:
            rows[i].append(run())
            return rows[i][-1].m

        return go

    merged = all_rounds([measured(i, run) for i, run in enumerate(contenders)], repeat)
    out = []
    for m, mine in zip(merged, rows, strict=True):
        conns = [row.connections for row in mine if row.connections]
        why = next((row.chosen for row in mine if row.chosen), "")
        out.append(Row(m, max(conns) if conns else None, why))
    return out


# -- scenarios ---------------------------------------------------------------------------


def proxy_ceiling(wan: Wan, nginx: Nginx) -> Scenario:
    """Many uncapped connections through the proxy, against the same straight to nginx."""
    args = wan.args
    n = 16
    f = make_file(args.proxy_mib * MiB, f"proxy-{args.proxy_mib}.bin")
    warm(f.path)
    sc = Scenario(
        f"The proxy's own ceiling: {n} x {args.proxy_mib} MiB, uncapped", n * f.size, None, "proxy"
    )
    direct = nginx.url(f.name)
    with WanProxy(nginx.port, 50, None) as proxy:
        for label, url in (
            ("through the proxy (50 ms, no cap)", proxy.url(direct)),
            ("straight to nginx", direct),
        ):
            curls = " & ".join(f"curl -sS -o /dev/null {shlex.quote(url)}" for _ in range(n))
            settle()
            cpu0 = proxy.cpu_seconds()
            m = timed(f"{n} x curl, {label}", ["sh", "-c", f"{curls}; wait"])
            cpu = proxy.cpu_seconds() - cpu0 if "proxy" in label else None
            sc.rows.append(Row(m, n, f"proxy CPU {cpu:.1f} s" if cpu is not None else ""))
            print(
                f"   {m.tool:<50} {m.seconds:7.2f} s {sc.size / MB / m.seconds:7.0f} MB/s",
                flush=True,
            )
    need = 32 * 20 * MiB / MB
    sc.notes.append(
        f"The fastest link below needs {need:.0f} MB/s through the proxy (32 connections x"
        f" 20 MiB/s, the most the tuned default opens); 16 connections need {need / 2:.0f} MB/s."
    )
    return sc


def wan_local(wan: Wan, nginx: Nginx, rtt: float, size: int, repeat: int) -> Scenario:
    args = wan.args
    f = make_file(size)
    warm(f.path)
    sc = Scenario(
        f"{size_label(size)} to local disk, {rtt:g} ms RTT, {args.rate_mib:g} MiB/s per connection",
        size,
        args.rate_mib,
    )
    with WanProxy(nginx.port, rtt, args.rate_mib) as proxy:
        url = proxy.url(nginx.url(f.name))
        contenders = [
            wan.xview2_local(url, f, 16),
            wan.xview2_local(url, f, None),
            wan.aria2c(url, f),
            wan.curl_ranges(url, f, 16),
        ]
        sc.rows = rounds(wan, contenders, repeat)
    x16, auto = "xview2 --connections 16", "xview2 (tuned"
    floor = sc.ratio(x16, "floor")
    if floor is not None:
        sc.notes.append(
            f"xview2 --connections 16 ÷ the measured floor (16 curls, a range each): {floor:.2f}"
        )
    link16 = sc.limit(16)
    x = sc.get(x16)
    sc.targets = [
        (f"xview2 --connections 16 / aria2c -x16 ({sc.title})", sc.ratio(x16, "aria2c"), 0.9, "x"),
        (
            f"xview2 --connections 16 / the link's limit for 16 connections ({sc.title})",
            x.m.seconds / link16 if x and x.m.ok and link16 else None,
            1.15,
            "x",
        ),
        (f"xview2 tuned / xview2 --connections 16 ({sc.title})", sc.ratio(auto, x16), 1.2, "x"),
    ]
    return sc


def wan_s3(wan: Wan, nginx: Nginx, rtt: float, size: int, repeat: int) -> Scenario:
    args = wan.args
    f = make_file(size)
    warm(f.path)
    sc = Scenario(
        f"{size_label(size)} to S3 (moto), {rtt:g} ms RTT, {args.rate_mib:g} MiB/s per connection",
        size,
        args.rate_mib,
    )
    with WanProxy(nginx.port, rtt, args.rate_mib) as proxy:
        url = proxy.url(nginx.url(f.name))
        x, naive, rclone = wan.s3(url, f, 16)
        contenders = [x, naive] + ([] if args.skip_rclone else [rclone])
        sc.rows = rounds(wan, contenders, repeat)
    sc.targets = [(f"xview2 / naive ({sc.title})", sc.ratio("xview2", "naive"), 0.2, "x")]
    if not args.skip_rclone:
        sc.notes.append(f"xview2 / rclone copyurl: {fmt_ratio(sc.ratio('xview2', 'rclone'))}")
    return sc


def https_unthrottled(wan: Wan, size: int, repeat: int) -> Scenario:
    f = make_file(size)
    warm(f.path)
    title = f"{size_label(size)} over HTTPS (self-signed CA), unthrottled, no proxy"
    sc = Scenario(title, size, None)
    with HttpsNginx() as nginx:
        url = nginx.url(f.name)
        contenders = [wan.xview2_local(url, f, None, nginx.cert), wan.curl_sha1(url, f, nginx.cert)]
        sc.rows = rounds(wan, contenders, repeat)
    sc.targets = [(f"xview2 / (curl + sha1sum) ({sc.title})", sc.ratio("xview2", "curl"), 0.7, "x")]
    return sc


class HttpsNginx(Nginx):
    """The benchmark's nginx, serving the same files over TLS with a fresh self-signed
    certificate for 127.0.0.1 (made with the ``openssl`` command)."""

    def __enter__(self) -> HttpsNginx:
        binary, openssl = (require(["nginx", "openssl"])[k] for k in ("nginx", "openssl"))
        self.port = free_port()
        self.dir = WORK / "nginx" / str(self.port)
        (self.dir / "nginx-tmp").mkdir(parents=True, exist_ok=True)
        self.cert, self.key = self.dir / "cert.pem", self.dir / "key.pem"
        subprocess.run(
            [
                openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt",
                "ec_paramgen_curve:prime256v1", "-nodes", "-days", "1",
                "-subj", f"/CN={HOST}", "-addext", f"subjectAltName=IP:{HOST}",
                "-keyout", str(self.key), "-out", str(self.cert),
            ],
            check=True,
            capture_output=True,
        )  # fmt: skip
        conf = NGINX_CONF.format(
            user="user root;" if os.geteuid() == 0 else "",
            workers=self.workers,
            work=self.dir,
            host=HOST,
            port=self.port,
            files=WORK / "files",
            rate=self.rate,
        ).replace(
            f"listen {HOST}:{self.port};",
            f"listen {HOST}:{self.port} ssl;\n        ssl_certificate {self.cert};\n"
            f"        ssl_certificate_key {self.key};",
        )
        (self.dir / "nginx.conf").write_text(conf)
        self.proc = subprocess.Popen(
            [
                *(binary, "-c", str(self.dir / "nginx.conf")),
                *("-e", str(self.dir / "nginx-error.log"), "-p", str(self.dir)),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_for_port(self.port, self.proc, "nginx (HTTPS)")
        return self

    def url(self, name: str, throttled: bool = False) -> str:
        return super().url(name, throttled).replace("http://", "https://", 1)


# -- report ------------------------------------------------------------------------------


def table(sc: Scenario) -> str:
    first = sc.rows[0]
    head = (
        "| contender | connections | wall time | throughput | link's limit | time ÷ limit"
        " | peak RSS | xview2 ÷ this | every run |"
    )
    rows = [f"**{sc.title}**", "", head, "|---|---:|---:|---:|---:|---:|---:|---:|---|"]
    for r in sc.rows:
        m = r.m
        limit = sc.limit(r.connections)
        mbps = f"{sc.size / MB / m.seconds:.0f} MB/s" if m.ok else "—"
        rss = f"{m.peak_rss_mb * MiB / MB:.0f} MB" if m.peak_rss_mb else "?"
        ratio = (
            "—"
            if r is first
            else fmt_ratio(first.m.seconds / m.seconds if m.ok and first.m.ok else None)
        )
        conns = str(r.connections or "?") + (f" ({r.chosen})" if r.chosen else "")
        runs = ", ".join(f"{t:.2f}" for t in m.extra.get("runs", []))  # type: ignore[attr-defined]
        rows.append(
            f"| {m.tool}{'' if m.ok else ' (FAILED)'} | {conns} | {m.seconds:.2f} s | {mbps} | "
            f"{'—' if limit is None else f'{limit:.2f} s'} | "
            f"{'—' if limit is None or not m.ok else f'{m.seconds / limit:.2f}'} | {rss} | "
            f"{ratio} | {runs} |"
        )
    for note in sc.notes:
        rows += ["", note]
    return "\n".join(rows)


def proxy_table(sc: Scenario) -> str:
    rows = [f"**{sc.title}**", "", "| run | wall time | throughput | note |", "|---|---:|---:|---|"]
    for r in sc.rows:
        rows.append(
            f"| {r.m.tool} | {r.m.seconds:.2f} s | {sc.size / MB / r.m.seconds:.0f} MB/s"
            f" | {r.chosen} |"
        )
    for note in sc.notes:
        rows += ["", note]
    return "\n".join(rows)


def targets_table(scenarios: list[Scenario], rss: list[tuple[str, float | None]]) -> str:
    rows = ["| target | measured | limit | met |", "|---|---:|---:|:---:|"]
    for sc in scenarios:
        for label, value, limit, unit in sc.targets:
            met = "n/a" if value is None else ("yes" if value <= limit else "**no**")
            rows.append(f"| {label} | {fmt_ratio(value)}{unit} | {limit:g}{unit} | {met} |")
    for label, value in rss:
        met = "n/a" if value is None else ("yes" if value <= RSS_LIMIT_MB else "**no**")
        shown = "n/a" if value is None else f"{value:.0f} MB"
        rows.append(f"| peak RSS, {label} | {shown} | {RSS_LIMIT_MB:.0f} MB | {met} |")
    return "\n".join(rows)


def markdown(wan: Wan, scenarios: list[Scenario], info: dict[str, str], elapsed: float) -> str:
    args = wan.args
    command = "python bench/wan.py" + (" --quick" if args.quick else "")
    parts = [
        *section_head(
            "## Figures",
            f"Command: `{command}` ({args.repeat} interleaved round(s) for the 50 ms and HTTPS"
            f" scenarios, the median counts, one for the others; total {elapsed / 60:.1f} min;"
            f" xview2 run through {wan.b.xview2_how};"
            f" generated {time.strftime('%Y-%m-%d %H:%M %Z')}).",
            info,
        ),
        "- Every contender reaches nginx on 127.0.0.1 through `bench/wan_proxy.py`: each"
        " direction is delayed by half the round-trip time, a new connection's first bytes by"
        " one more round trip (its handshake), and the server-to-client direction of every"
        f" TCP connection is paced at {args.rate_mib:g} MiB/s with no burst, in 64 KiB"
        " slices; the proxy keeps no more than the bandwidth-delay product plus 512 KiB and"
        " one 1 MiB read in flight per direction, so a client that stops reading stops the"
        " server. nginx itself is not throttled.",
        "- *Link's limit*: the file's size over the contender's connections times the cap"
        " (the time no client can beat with that many connections); *time ÷ limit* is how"
        " close the contender came to it. For the tuned default the connections are the"
        " count xview2 chose (its `-v` log line).",
        "- *Floor*: 16 curls at once, each asking for its own sixteenth of the file in one"
        " request, into /dev/null: what the link gives a client that pays one handshake and"
        " one round trip per connection and nothing more (no probe, no file written, nothing"
        " verified). It measures how near the link's limit any client can come here.",
        "- Wall time from the harness's clock around the whole command (process start,"
        " probe, handshakes, verification and `fsync` included; the package's modules are"
        " byte-compiled first, as installing it does); peak RSS from GNU `time -v`."
        " xview2 and aria2c verify SHA-1; curl is followed by `sha1sum`; the naive way"
        " (`requests` into `boto3` `upload_fileobj`) and `rclone copyurl` verify nothing.",
        "- The machine has 2 cores shared with the proxy, nginx, moto and the client, and"
        " with other work: the load average is quoted; compare ratios of one run.",
        "",
    ]
    for sc in scenarios:
        parts += [proxy_table(sc) if sc.kind == "proxy" else table(sc), ""]
    rss = [
        (
            f"{r.m.tool}, {sc.title}",
            r.m.peak_rss_mb * MiB / MB if r.m.peak_rss_mb and r.m.ok else None,
        )
        for sc in scenarios
        for r in sc.rows
        if r.m.tool.startswith("xview2")
    ]
    parts += ["Targets:", "", targets_table(scenarios, rss), ""]
    return "\n".join(parts)


DOC_HEADER = """# WAN benchmarks

Generated by `bench/wan.py` between the markers below; the notes after them are written
by hand from the figures of the same run.
"""


def write_doc(body: str) -> None:
    """Replace the generated block of ``docs/benchmarks-wan.md``, keeping the rest."""
    start, end = "<!-- wan:start -->", "<!-- wan:end -->"
    block = f"{start}\n{body.rstrip()}\n{end}"
    text = DOCS.read_text() if DOCS.exists() else DOC_HEADER
    if start in text and end in text:
        text = text[: text.index(start)] + block + text[text.index(end) + len(end) :]
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    DOCS.write_text(text)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small files, one round")
    parser.add_argument("--size-mib", type=int, default=None, help="file size (default 1024)")
    parser.add_argument("--rate-mib", type=float, default=20.0, help="cap per connection, MiB/s")
    parser.add_argument(
        "--rtts", type=float, nargs="*", default=[20, 50, 80], help="round trips, ms"
    )
    parser.add_argument(
        "--repeat", type=int, default=None, help="rounds (default 3, 1 with --quick)"
    )
    parser.add_argument("--proxy-mib", type=int, default=256, help="file size for the proxy check")
    parser.add_argument(
        "--only",
        nargs="*",
        choices=["proxy", "local", "s3", "https"],
        default=None,
        help="run only these scenarios",
    )
    parser.add_argument("--skip-rclone", action="store_true", help="no rclone in the S3 scenario")
    parser.add_argument("--xview2-command", default=None, help="run this instead of `xview2`")
    parser.add_argument(
        "--no-docs", action="store_true", help="do not write docs/benchmarks-wan.md"
    )
    args = parser.parse_args()
    args.repeat = args.repeat or (1 if args.quick else 3)
    size = (args.size_mib or (96 if args.quick else 1024)) * MiB
    if args.quick:
        args.proxy_mib = min(args.proxy_mib, 32)
    wanted = set(args.only or ["proxy", "local", "s3", "https"])
    require(["openssl"]) if "https" in wanted else None
    exit_on_sigterm()
    byte_compiled()
    shutil.rmtree(WORK / "logs", ignore_errors=True)
    wan = Wan(args)
    info = machine()
    info["Load average at start (1, 5, 15 min)"] = load_average()
    started = time.perf_counter()
    scenarios: list[Scenario] = []
    with Nginx() as nginx:
        if "proxy" in wanted:
            with step(f"proxy ceiling (load average {load_average()})"):
                scenarios.append(proxy_ceiling(wan, nginx))
        if "local" in wanted:
            for rtt in args.rtts:
                goal = rtt == 50
                with step(f"local, {rtt:g} ms (load average {load_average()})"):
                    scenarios.append(wan_local(wan, nginx, rtt, size, args.repeat if goal else 1))
        if "s3" in wanted:
            with step(f"S3, 50 ms (load average {load_average()})"):
                scenarios.append(wan_s3(wan, nginx, 50, size, 1))
    if "https" in wanted:
        with step(f"HTTPS, unthrottled (load average {load_average()})"):
            scenarios.append(https_unthrottled(wan, 2 * size, args.repeat))
    elapsed = time.perf_counter() - started
    info["Load average at end"] = load_average()
    text = markdown(wan, scenarios, info, elapsed)
    print("\n" + text)
    if not args.no_docs:
        write_doc(text)
        print(f"\nwrote {DOCS.relative_to(REPO)}")
    return 0 if all(r.m.ok for sc in scenarios for r in sc.rows) else 1


if __name__ == "__main__":
    sys.exit(main())
