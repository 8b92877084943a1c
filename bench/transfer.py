"""Side-by-side transfer benchmark: xview2 against aria2c, curl, rclone and the naive way.

One command runs every scenario on 127.0.0.1 against a private nginx (per-connection
``limit_rate`` for the throttled cases) and a private ``moto_server`` (a fresh one for
every S3 run), prints wall time, peak RSS and xview2's ratio to each peer, checks the
targets and rewrites the "transfer" section of ``docs/benchmarks.md``::

    python bench/transfer.py            # the real figures: 1, 2 and 4 GiB files, 3 rounds
    python bench/transfer.py --quick    # a smoke run with small files (< 2 minutes)

The contenders of a scenario run in interleaved rounds (A B C, A B C, ...) and the median
counts: on a small shared VM a single run of anything writing gigabytes is noisy.

Missing peers are reported with the command that installs them.  The GCS and Azure
scenarios live in ``transfer_cloud.py``, the scenario tables in ``results.py``.
"""

from __future__ import annotations

import argparse
import json
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (
    MB,
    S3_ENV,
    WORK,
    GiB,
    Measure,
    MiB,
    Moto,
    Nginx,
    TestFile,
    byte_compiled,
    catalog_for,
    exit_on_sigterm,
    fresh_dir,
    load_average,
    machine,
    make_file,
    require,
    settle,
    step,
    timed,
    warm,
    which,
    write_section,
)
from results import (
    RSS_LIMIT_MB,
    Scenario,
    Target,
    fmt_ratio,
    rounds,
    section_head,
    show,
    size_label,
    table,
    targets_table,
)
from transfer_cloud import CLOUD_SCENARIOS, cloud_markdown, cloud_throttled, cloud_unthrottled

BENCH = Path(__file__).resolve().parent
PEERS = BENCH / "peers.py"
# boto3 upload_file settings tried for the S3 server's ceiling; the best one counts.
CEILING_CONFIGS = [(8, 10), (16, 8), (32, 8), (64, 4)]


class Bench:
    def __init__(self, args: argparse.Namespace):
        self.args = args
        self.tools = require(["time", "nginx", "aria2c", "curl", "sha1sum", "rclone"])
        try:
            import requests  # noqa: F401
        except ImportError:
            require(["requests"])  # prints the hint and exits
        self.xview2_cli = self._find_cli()
        self.runs = 0

    # -- xview2 -------------------------------------------------------------------------
    def _find_cli(self) -> str | None:
        if self.args.xview2_command:
            return None
        path = which("xview2")
        if not path:
            return None
        probe = subprocess.run(
            [path, "download", "--help"], capture_output=True, text=True, check=False
        )
        return path if probe.returncode == 0 and "--catalog" in probe.stdout else None

    def xview2_argv(
        self,
        url: str,
        dest: str,
        catalog: Path,
        connections: int | None,
        endpoint: str | None = None,
    ) -> list[str]:
        if self.args.xview2_command:
            argv = [*shlex.split(self.args.xview2_command), "download", url, "--dest", dest]
            argv += ["--catalog", str(catalog)]
            if connections:
                argv += ["--connections", str(connections)]
            if endpoint:
                argv += ["--endpoint-url", endpoint]
            return [*argv, "--quiet"]
        if self.xview2_cli:
            argv = [self.xview2_cli, "download", url, "--dest", dest, "--catalog", str(catalog)]
            if connections:
                argv += ["--connections", str(connections)]
            if endpoint:
                argv += ["--endpoint-url", endpoint]
            return [*argv, "--quiet"]
        argv = [sys.executable, str(PEERS), "api", url, "--dest", dest, "--catalog", str(catalog)]
        if connections:
            argv += ["--connections", str(connections)]
        if endpoint:
            argv += ["--endpoint-url", endpoint]
        return argv

    @property
    def json_flag(self) -> list[str]:
        """``--json`` where xview2 runs as its command (``peers.py api`` has no such flag)."""
        return ["--json"] if self.args.xview2_command or self.xview2_cli else []

    @property
    def xview2_how(self) -> str:
        if self.args.xview2_command:
            return f"`{self.args.xview2_command}`"
        if self.xview2_cli:
            return "the `xview2` command"
        return "the Python API (`bench/peers.py api`)"

    # -- local contenders ---------------------------------------------------------------------
    def run_local(
        self,
        tool: str,
        argv: list[str],
        out: Path,
        expect: TestFile,
        check_sha1_in_output: bool = False,
    ) -> Measure:
        settle()
        m = timed(tool, argv)
        got = out.stat().st_size if out.exists() else None
        if m.ok and got != expect.size:
            m.ok, m.detail = False, f"wrote {got} bytes, expected {expect.size}"
        if m.ok and check_sha1_in_output:
            text = Path(str(m.extra["log"])).read_text(errors="replace")
            if expect.sha1 not in text:
                m.ok, m.detail = False, "sha1sum printed another digest"
        show(m, expect.size)
        if out.exists():
            out.unlink()
        return m

    def local_contenders(
        self,
        url: str,
        f: TestFile,
        connections: int | None,
        label: str,
    ) -> dict[str, Callable[[], Measure]]:
        cat = catalog_for([f], WORK / "catalog.json")

        def xview2() -> Measure:
            dest = fresh_dir(WORK / "dest" / "xview2")
            argv = self.xview2_argv(url, str(dest), cat, connections)
            return self.run_local(f"xview2 {label}".strip(), argv, dest / f.name, f)

        def aria2c() -> Measure:
            dest = fresh_dir(WORK / "dest" / "aria2c")
            argv = [
                self.tools["aria2c"],
                "-x16",
                "-s16",
                "-k1M",
                f"--checksum=sha-1={f.sha1}",
                "--file-allocation=falloc",
                "--allow-overwrite=true",
                "--auto-file-renaming=false",
                "--console-log-level=warn",
                "--summary-interval=0",
                "--download-result=hide",
                "-d",
                str(dest),
                "-o",
                f.name,
                url,
            ]
            return self.run_local("aria2c -x16 -s16", argv, dest / f.name, f)

        def curl() -> Measure:
            dest = fresh_dir(WORK / "dest" / "curl")
            out = dest / f.name
            script = (
                f"{shlex.quote(self.tools['curl'])} -sS --fail -o {shlex.quote(str(out))} "
                f"{shlex.quote(url)} && {shlex.quote(self.tools['sha1sum'])} "
                f"{shlex.quote(str(out))}"
            )
            return self.run_local(
                "curl -o f && sha1sum f", ["sh", "-c", script], out, f, check_sha1_in_output=True
            )

        return {"xview2": xview2, "aria2c": aria2c, "curl": curl}

    # -- S3 contenders ----------------------------------------------------------------------
    def run_s3(
        self,
        tool: str,
        make_argv: Callable[[Moto, str, str], list[str]],
        f: TestFile,
        make_env: Callable[[Moto], dict[str, str]] | None = None,
    ) -> Measure:
        """One contender against a fresh moto_server and bucket; the object is checked."""
        self.runs += 1
        bucket, key = f"bench-{self.runs}", f"ingest/{f.name}"
        settle()
        with Moto() as moto:
            s3 = moto.client()
            s3.create_bucket(Bucket=bucket)
            env = {**S3_ENV, **(make_env(moto) if make_env else {})}
            m = timed(tool, make_argv(moto, bucket, key), env=env)
            try:
                got: int | None = int(s3.head_object(Bucket=bucket, Key=key)["ContentLength"])
            except Exception as exc:
                got, m.detail = None, m.detail or f"no object: {exc}"
            if m.ok and got != f.size:
                m.ok, m.detail = False, f"object has {got} bytes, expected {f.size}"
            m.extra["server_rss_mb"] = moto.rss_mb()
            m.extra.update(moto.phases(key))
            for obj in s3.list_objects_v2(Bucket=bucket).get("Contents", []):
                s3.delete_object(Bucket=bucket, Key=obj["Key"])
        show(m, f.size)
        return m

    def s3_contenders(
        self,
        url: str,
        f: TestFile,
        connections: int | None,
        label: str = "",
    ) -> dict[str, Callable[[], Measure]]:
        cat = catalog_for([f], WORK / "catalog.json")
        rclone_conf = WORK / "rclone.conf"
        rclone_conf.write_text("")

        def xview2() -> Measure:
            return self.run_s3(
                f"xview2 {label}".strip(),
                lambda moto, bucket, key: self.xview2_argv(
                    url,
                    f"s3://{bucket}/{key.rsplit('/', 1)[0]}",
                    cat,
                    connections,
                    moto.endpoint,
                ),
                f,
                lambda moto: {"XVIEW2_STATE_DIR": str(WORK / "state")},
            )

        def naive() -> Measure:
            return self.run_s3(
                "naive (requests -> upload_fileobj)",
                lambda moto, bucket, key: [
                    sys.executable,
                    str(PEERS),
                    "naive",
                    url,
                    "--endpoint",
                    moto.endpoint,
                    "--bucket",
                    bucket,
                    "--key",
                    key,
                ],
                f,
            )

        def rclone() -> Measure:
            def env(moto: Moto) -> dict[str, str]:
                return {
                    "RCLONE_CONFIG": str(rclone_conf),
                    "RCLONE_CONFIG_BENCH_TYPE": "s3",
                    "RCLONE_CONFIG_BENCH_PROVIDER": "Other",
                    "RCLONE_CONFIG_BENCH_ENDPOINT": moto.endpoint,
                    "RCLONE_CONFIG_BENCH_ACCESS_KEY_ID": S3_ENV["AWS_ACCESS_KEY_ID"],
                    "RCLONE_CONFIG_BENCH_SECRET_ACCESS_KEY": S3_ENV["AWS_SECRET_ACCESS_KEY"],
                    "RCLONE_CONFIG_BENCH_REGION": S3_ENV["AWS_DEFAULT_REGION"],
                    "RCLONE_CONFIG_BENCH_FORCE_PATH_STYLE": "true",
                }

            return self.run_s3(
                "rclone copyurl",
                lambda moto, bucket, key: [
                    self.tools["rclone"],
                    "copyurl",
                    url,
                    f"bench:{bucket}/{key}",
                ],
                f,
                env,
            )

        return {"xview2": xview2, "naive": naive, "rclone": rclone}

    def ceiling_contenders(self, f: TestFile) -> list[Callable[[], Measure]]:
        def one(chunk: int, conc: int) -> Callable[[], Measure]:
            return lambda: self.run_s3(
                f"ceiling: upload_file {chunk} MiB x{conc}",
                lambda moto, bucket, key: [
                    sys.executable,
                    str(PEERS),
                    "ceiling",
                    str(f.path),
                    "--endpoint",
                    moto.endpoint,
                    "--bucket",
                    bucket,
                    "--key",
                    key,
                    "--chunk-mib",
                    str(chunk),
                    "--concurrency",
                    str(conc),
                ],
                f,
            )

        return [one(chunk, conc) for chunk, conc in CEILING_CONFIGS]


# -- scenarios ------------------------------------------------------------------------------


def throttled_local(b: Bench, nginx: Nginx, size: int, conns: int) -> Scenario:
    f = make_file(size)
    warm(f.path)
    rate = b.args.rate_mb
    sc = Scenario(
        "throttled-local", f"{size_label(size)} to local disk, {rate:g} MB/s per connection", size
    )
    url = nginx.url(f.name, throttled=True)
    run = b.local_contenders(url, f, conns, f"--connections {conns}")
    sc.results = rounds([run["xview2"], run["aria2c"], run["curl"]], b.args.repeat)
    x, a, c = (m.tool for m in sc.results)
    sc.targets = [Target(f"xview2 / aria2c -x16 -s16 ({sc.title})", sc.ratio(x, a), 0.9)]
    sc.notes.append(f"xview2 / curl: {fmt_ratio(sc.ratio(x, c))}")
    return sc


def unthrottled_local(b: Bench, nginx: Nginx, size: int) -> Scenario:
    f = make_file(size)
    warm(f.path)
    sc = Scenario("unthrottled-local", f"{size_label(size)} to local disk, unthrottled", size)
    url = nginx.url(f.name)
    run = b.local_contenders(url, f, b.args.connections_unthrottled, "")
    sc.results = rounds([run["xview2"], run["curl"], run["aria2c"]], b.args.repeat)
    x, c, a = (m.tool for m in sc.results)
    sc.targets = [Target(f"xview2 / (curl + sha1sum) ({sc.title})", sc.ratio(x, c), 0.7)]
    sc.notes.append(f"xview2 / aria2c: {fmt_ratio(sc.ratio(x, a))}")
    return sc


def s3_throttled(b: Bench, nginx: Nginx, size: int, conns: int) -> Scenario:
    f = make_file(size)
    warm(f.path)
    rate = b.args.rate_mb
    sc = Scenario(
        "s3-throttled", f"{size_label(size)} to S3 from a {rate:g} MB/s-per-connection server", size
    )
    url = nginx.url(f.name, throttled=True)
    run = b.s3_contenders(url, f, conns, f"--connections {conns}")
    sc.results = rounds([run["xview2"], run["naive"], run["rclone"]], b.args.repeat)
    x, n, r = (m.tool for m in sc.results)
    sc.targets = [
        Target(f"xview2 / naive ({sc.title})", sc.ratio(x, n), 0.25),
        Target(f"xview2 / rclone copyurl ({sc.title})", sc.ratio(x, r), 0.25),
    ]
    return sc


def s3_unthrottled_rounds(b: Bench) -> int:
    """Two rounds more than the others: moto's completion, most of this scenario's time,
    is the noisiest figure of all (see the scenario's notes)."""
    return b.args.repeat + 2 if b.args.repeat > 1 else 1


def s3_unthrottled(b: Bench, nginx: Nginx, size: int) -> Scenario:
    f = make_file(size)
    warm(f.path)
    sc = Scenario("s3-unthrottled", f"{size_label(size)} to S3, unthrottled", size)
    url = nginx.url(f.name)
    run = b.s3_contenders(url, f, b.args.connections_unthrottled)
    ceilings = b.ceiling_contenders(f)
    results = rounds(
        [run["xview2"], run["naive"], run["rclone"], *ceilings], s3_unthrottled_rounds(b)
    )
    tried = results[3:]
    best = min((m for m in tried if m.ok), key=lambda m: m.seconds, default=tried[0])
    sc.notes.append(
        "Ceiling settings tried (chunk size x concurrency: median time): "
        + "; ".join(f"{m.tool.split('upload_file ', 1)[-1]}: {m.seconds:.2f} s" for m in tried)
        + "."
    )
    setting = best.tool.split("upload_file ", 1)[1]
    best.tool = f"S3 server ceiling (boto3 upload_file from disk, {setting})"
    sc.notes.append(
        "moto's completion is mostly kernel time (perf: page faults and page clearing as it"
        " copies the parts into one new object) and ranges from about 1.8 s to over 5 s for"
        " the same upload, so this scenario runs two extra rounds."
    )
    sc.results = [*results[:3], best]
    x, n, _r, c = (m.tool for m in sc.results)
    sc.targets = [
        Target(f"xview2 / naive ({sc.title})", sc.ratio(x, n), 1.0),
        Target(f"xview2 / S3 server ceiling ({sc.title})", sc.ratio(x, c), 1.15),
    ]
    return sc


def big_rss(b: Bench, nginx: Nginx, size: int) -> Scenario:
    f = make_file(size)
    warm(f.path)
    sc = Scenario("rss", f"Peak RSS of xview2, {size_label(size)} file, unthrottled", size)
    url = nginx.url(f.name)
    local = b.local_contenders(url, f, b.args.connections_unthrottled, "(local)")["xview2"]()
    s3 = b.s3_contenders(url, f, b.args.connections_unthrottled, "(S3)")["xview2"]()
    sc.results = [local, s3]
    for m, where in ((local, "local"), (s3, "S3")):
        value = m.peak_rss_mb * MiB / MB if m.peak_rss_mb and m.ok else None
        sc.targets.append(
            Target(f"xview2 peak RSS, {size_label(size)} to {where}", value, RSS_LIMIT_MB, " MB")
        )
    return sc


# -- report --------------------------------------------------------------------------------


def markdown(b: Bench, scenarios: list[Scenario], info: dict[str, str], elapsed: float) -> str:
    args = b.args
    command = "python bench/transfer.py" + (" --quick" if args.quick else "")
    if args.only:
        command += " --only " + " ".join(sc.key for sc in scenarios)
    if args.size_gib:
        command += f" --size-gib {args.size_gib:g}"
    if args.repeat != (1 if args.quick else 3):
        command += f" --repeat {args.repeat}"
    runs = (
        "one run of each contender"
        if args.repeat == 1
        else f"{args.repeat} interleaved rounds ({s3_unthrottled_rounds(b)} for S3 unthrottled),"
        " the median counts"
    )
    parts = [
        *section_head(
            "## Transfer: xview2 side by side with aria2c, curl, rclone and the naive way",
            f"Command: `{command}` ({runs}; total {elapsed / 60:.1f} min;"
            f" xview2 run through {b.xview2_how}; generated {time.strftime('%Y-%m-%d %H:%M %Z')}).",
            info,
        ),
        "- Web server: nginx on 127.0.0.1 (`sendfile on`, files in the page cache); the"
        f" throttled location has `limit_rate {args.rate_mb * MB:.0f}` (bytes/s, per"
        " connection). S3: `moto_server` on 127.0.0.1, a fresh process and bucket for every"
        " run (moto keeps objects in memory, spilling objects and parts over 5 MiB to"
        " temporary files; it is the bottleneck of every S3 figure).",
        "- Wall time from the harness's own clock around the whole command; peak RSS is GNU"
        " `time -v`'s maximum resident set size of the command (for `sh -c 'a && b'`, the"
        " largest step). Destination emptied and `sync` run before each contender; xview2's"
        " modules byte-compiled first, as installing the package does.",
        "- Every contender is checked afterwards (file size or S3 object size; the digest"
        " where the contender verifies). xview2 and aria2c (`--checksum=sha-1=...`) verify"
        " SHA-1; `curl` is followed by `sha1sum`; the naive way and `rclone copyurl` verify"
        " nothing (a favour to them).",
        "- Durability: xview2 writes local files with direct I/O and `fsync`s each before"
        " renaming it into place, so a finished file survives a power cut; `curl` and"
        " `aria2c` end with the bytes still unsynced in the page cache (a favour to them).",
        f"- xview2: `--connections {args.connections}` where throttled and"
        + (
            f" `--connections {args.connections_unthrottled}`"
            if args.connections_unthrottled
            else " the command's default connections"
        )
        + " unthrottled; a catalog file with"
        " size and SHA-1. aria2c: `-x16 -s16 -k1M --file-allocation=falloc`. The naive way:"
        " `requests.get(url, stream=True)` into `boto3` `upload_fileobj` with default settings"
        " (boto3's defaults give every part a CRC32, as xview2 does; without part checksums"
        " moto computes a CRC64NVME of the whole object when completing, about 3 s per GiB)."
        " rclone: `rclone copyurl URL remote:bucket/key`, defaults. Ceiling: `boto3`"
        " `upload_file` of the same bytes from local disk, best of several chunk size /"
        " concurrency settings.",
        "- Ratio = xview2's wall time ÷ the contender's (below 1: xview2 is faster). With"
        " `--repeat N` the contenders run in N interleaved rounds and each figure is the"
        " median; peak RSS is the largest of the N.",
        "- Every S3 figure includes moto's `CompleteMultipartUpload`, which concatenates the"
        " parts and checksums the whole object in one Python thread after the last part: it"
        " costs every multipart uploader the same several seconds per GiB. moto runs as"
        " `bench/moto_server.py` (moto's own app with a request log); *moto: receiving* is"
        " the server-side time from the first to the end of the last part upload, *moto:"
        " completing* the time it spent in `CompleteMultipartUpload`.",
        "",
    ]
    for sc in scenarios:
        parts += [table(sc), ""]
    parts += ["Targets:", "", targets_table(scenarios), ""]
    return "\n".join(parts)


def _bind(fn: Callable[..., Scenario], *args: object) -> Callable[[], Scenario]:
    return lambda: fn(*args)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small files, for a smoke run")
    parser.add_argument(
        "--size-gib",
        type=float,
        default=None,
        help="base size (default 1; the unthrottled local file is 2x, the RSS file 4x)",
    )
    parser.add_argument(
        "--rate-mb",
        type=float,
        default=20.0,
        help="per-connection cap of the throttled server, MB/s (default 20)",
    )
    parser.add_argument(
        "--connections",
        type=int,
        default=16,
        help="xview2 --connections for the throttled scenarios (default 16)",
    )
    parser.add_argument(
        "--connections-unthrottled",
        type=int,
        default=None,
        help="xview2 --connections unthrottled (default: the CLI's default)",
    )
    parser.add_argument(
        "--only",
        nargs="*",
        default=None,
        choices=[
            "throttled-local",
            "unthrottled-local",
            "s3-throttled",
            "s3-unthrottled",
            "rss",
            *CLOUD_SCENARIOS,
        ],
    )
    parser.add_argument(
        "--repeat",
        type=int,
        default=None,
        help="interleaved rounds per scenario; the median counts (default 3, 1 with --quick)",
    )
    parser.add_argument(
        "--xview2-command",
        default=None,
        help="run this instead of the `xview2` on PATH (e.g. another checkout's)",
    )
    parser.add_argument("--skip-rss", action="store_true", help="skip the 4 GiB peak-RSS runs")
    parser.add_argument("--no-docs", action="store_true", help="do not rewrite docs/benchmarks.md")
    args = parser.parse_args()

    if args.repeat is None:
        args.repeat = 1 if args.quick else 3
    base = int((args.size_gib or 1) * GiB)
    if args.quick and not args.size_gib:
        base = 48 * MiB
    wanted = set(
        args.only
        or [
            "throttled-local",
            "unthrottled-local",
            "s3-throttled",
            "s3-unthrottled",
            "rss",
            *CLOUD_SCENARIOS,
        ]
    )
    if args.quick or args.skip_rss:
        wanted.discard("rss") if args.only is None else None

    exit_on_sigterm()
    byte_compiled()
    shutil.rmtree(WORK / "logs", ignore_errors=True)
    b = Bench(args)
    print(f"xview2 runs through {b.xview2_how}")
    info = machine()
    info["Load average at start (1, 5, 15 min)"] = load_average()
    started = time.perf_counter()
    scenarios: list[Scenario] = []
    with Nginx(rate=int(args.rate_mb * MB)) as nginx:
        print(f"nginx on 127.0.0.1:{nginx.port} (pid {nginx.proc.pid if nginx.proc else '?'})")
        plan: list[tuple[str, Callable[[], Scenario]]] = [
            ("throttled-local", lambda: throttled_local(b, nginx, base, args.connections)),
            ("unthrottled-local", lambda: unthrottled_local(b, nginx, 2 * base)),
            ("s3-throttled", lambda: s3_throttled(b, nginx, base, args.connections)),
            ("s3-unthrottled", lambda: s3_unthrottled(b, nginx, base)),
            ("rss", lambda: big_rss(b, nginx, 4 * base)),
            *[
                (
                    f"{kind}-throttled",
                    _bind(cloud_throttled, b, nginx, base, args.connections, kind),
                )
                for kind in ("gcs", "azure")
            ],
            *[
                (f"{kind}-unthrottled", _bind(cloud_unthrottled, b, nginx, base, kind))
                for kind in ("gcs", "azure")
            ],
        ]
        for key, fn in plan:
            if key not in wanted:
                continue
            with step(f"{key} (load average {load_average()})"):
                scenarios.append(fn())
    elapsed = time.perf_counter() - started
    info["Load average at end"] = load_average()

    print()
    for sc in scenarios:
        print(table(sc) + "\n")
    print(targets_table(scenarios))
    results = WORK / "results.json"
    results.write_text(
        json.dumps(
            [
                {
                    "scenario": sc.key,
                    "title": sc.title,
                    "size": sc.size,
                    "results": [asdict(m) for m in sc.results],
                    "targets": [{**asdict(t), "met": t.met} for t in sc.targets],
                }
                for sc in scenarios
            ],
            indent=2,
        )
    )
    cloud = [sc for sc in scenarios if sc.key in CLOUD_SCENARIOS]
    others = [sc for sc in scenarios if sc.key not in CLOUD_SCENARIOS]
    if not args.no_docs and others:
        write_section("transfer", markdown(b, others, info, elapsed))
        print("\nwrote docs/benchmarks.md (transfer section)")
    if not args.no_docs and cloud:
        write_section("transfer-cloud", cloud_markdown(b, cloud, info, elapsed))
        print("\nwrote docs/benchmarks.md (transfer-cloud section)")
    failed = [m for sc in scenarios for m in sc.results if not m.ok]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
