"""Benchmark: ``build_index`` against a plain ``json.load`` loop over the same label files.

    python bench/bench_index.py                      # full scale, writes docs/benchmarks-index.md
    python bench/bench_index.py --scale 0.1 --no-doc # a quick look
    python bench/bench_index.py --pax-bomb           # memory of `index --from-archives`
                                                     # refusing a hostile archive

Generates (once, cached in a temporary folder) a label-only tree at the real scale of
the challenge data: 22,068 label files, about 425,000 buildings per phase, every polygon
in both ``lng_lat`` and ``xy`` at full float precision.  Then runs, side by side and as
separate processes, the baseline (``json.load`` of every file, nothing else) and
``build_index`` (Parquet + GeoParquet written, geometry included), ``--repeat`` times
each, alternating, and reports median times, ratios and peak memory:

* time: measured inside each process around the work itself, and also for the whole
  process (interpreter start and imports included);
* memory: the peak RSS of the largest single process (``getrusage`` in each measured
  process, of itself and of its reaped worker processes), and the peak of the summed RSS
  of the whole process tree (parent plus its workers), sampled from ``/proc`` every 25 ms
  (RSS) and every 250 ms (PSS, which splits shared pages between processes).

``--pax-bomb`` instead writes a gzip of about 1 MB holding one 1 GiB pax header (the
archive the reader must refuse without reading it) and runs ``xview2 index
--from-archives`` on it under GNU ``time -v``: exit status, message and peak RSS, next to
an interpreter that only imports the same modules.  It rewrites only its own block of
the design notes in the report.

The report's last section, "Design notes and measurements", is written by hand and kept
as it is when the tables above it are generated again.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import machine_basics, machine_markdown, package_version

SPLITS = ("train", "test", "hold", "tier3")
TARGET_RATIO = 3.0
TARGET_RSS_MB = 512
SAMPLE_SECONDS = 0.025
PSS_EVERY = 10  # samples


# ------------------------------------------------------------------------ child modes


def _rusage_mb() -> dict[str, float]:
    """Peak RSS of this process and of its largest (reaped) child process."""
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    kids = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    return {"max_process_mb": max(own, kids)}


def child_baseline(root: str) -> dict[str, float]:
    """List the label folders and ``json.load`` every file: nothing else."""
    started = time.perf_counter()
    count = 0
    for split in SPLITS:
        folder = os.path.join(root, split, "labels")
        for name in sorted(os.listdir(folder)):
            with open(os.path.join(folder, name), "rb") as fh:
                json.load(fh)
            count += 1
    return {"seconds": time.perf_counter() - started, "files": count} | _rusage_mb()


def child_index(root: str, workers: int | None) -> dict[str, float]:
    from xview2_ingest.index import build_index

    started = time.perf_counter()
    report = build_index(root, workers=workers)
    seconds = time.perf_counter() - started
    assert report.ok, report.skipped[:5]
    return {
        "seconds": seconds,
        "files": report.images,
        "buildings": report.buildings,
        "pairs": report.pairs,
    } | _rusage_mb()


# ------------------------------------------------------------------------ measurement


def _idle_share() -> str:
    """Share of CPU time idle over the next 2 seconds (from /proc/stat), as text."""
    try:
        with open("/proc/stat") as fh:
            first = [int(v) for v in fh.readline().split()[1:]]
        time.sleep(2)
        with open("/proc/stat") as fh:
            second = [int(v) for v in fh.readline().split()[1:]]
    except OSError:
        return "unknown"
    delta = [b - a for a, b in zip(first, second, strict=True)]
    return f"{100 * delta[3] / max(1, sum(delta)):.0f}%"


def _descendants(pid: int) -> list[int]:
    """``pid`` and all its descendants (from /proc/PID/task/TID/children)."""
    found, todo = [], [pid]
    while todo:
        p = todo.pop()
        found.append(p)
        try:
            for tid in os.listdir(f"/proc/{p}/task"):
                with open(f"/proc/{p}/task/{tid}/children") as fh:
                    todo.extend(int(c) for c in fh.read().split())
        except OSError:
            continue
    return found


def _tree_rss(pid: int) -> int:
    """Summed RSS (bytes) of ``pid`` and its descendants: cheap (``statm``)."""
    page, total = os.sysconf("SC_PAGE_SIZE"), 0
    for p in _descendants(pid):
        try:
            with open(f"/proc/{p}/statm") as fh:
                total += int(fh.read().split()[1]) * page
        except OSError:
            continue
    return total


def _tree_pss(pid: int) -> int:
    """Summed PSS (bytes) of ``pid`` and its descendants: pages shared between processes
    (libraries, copy-on-write) are split between them instead of counted in each, so this
    is the physical memory the processes really use.  Costs a page-table walk: sampled
    less often."""
    total = 0
    for p in _descendants(pid):
        try:
            with open(f"/proc/{p}/smaps_rollup") as fh:
                total += next(int(ln.split()[1]) * 1024 for ln in fh if ln.startswith("Pss:"))
        except (OSError, StopIteration):
            continue
    return total


def run_child(args: list[str]) -> dict[str, float]:
    """Run this script in a child mode; return its report plus wall time and memory."""
    started = time.perf_counter()
    proc = subprocess.Popen([sys.executable, __file__, *args], stdout=subprocess.PIPE, text=True)
    peak_rss = peak_pss = 0
    stop = threading.Event()

    def sample() -> None:
        nonlocal peak_rss, peak_pss
        tick = 0
        while not stop.is_set():
            peak_rss = max(peak_rss, _tree_rss(proc.pid))
            if tick % PSS_EVERY == 0:
                peak_pss = max(peak_pss, _tree_pss(proc.pid))
            tick += 1
            stop.wait(SAMPLE_SECONDS)

    sampler = threading.Thread(target=sample, daemon=True)
    if os.path.isdir("/proc"):
        sampler.start()
    out, _ = proc.communicate()
    wall = time.perf_counter() - started
    stop.set()
    if sampler.is_alive():
        sampler.join()
    if proc.returncode:
        raise SystemExit(f"child {args[:2]} failed with exit code {proc.returncode}")
    result = json.loads(out.strip().splitlines()[-1])
    result["tree_mb"] = peak_rss / 1e6 if peak_rss else float("nan")
    result["tree_pss_mb"] = peak_pss / 1e6 if peak_pss else float("nan")
    result["wall"] = wall
    return result


# ------------------------------------------------------------------------ report


def machine() -> dict[str, str]:
    try:
        import orjson

        json_lib = f"orjson {orjson.__version__}"
    except ImportError:
        json_lib = "json (orjson not installed)"
    return {**machine_basics(), "pyarrow": package_version("pyarrow"), "JSON parser": json_lib}


def render(
    info: dict[str, str],
    data: dict[str, str],
    rows: list[dict[str, Any]],
    verdict: str,
    command: str,
    idle: str,
) -> str:
    lines = [
        "# Benchmark: label index",
        "",
        "`build_index` (both Parquet files written, `geometry` WKB and `area_px` included)",
        "against a plain loop of `json.load` over the same label files, each in its own",
        "process, run alternately; median of the runs.",
        "",
        f"Command: `{command}`",
        "",
        "## Machine",
        "",
        machine_markdown(info),
        "",
        "## Data",
        "",
        "| | |",
        "|---|---|",
        *(f"| {k} | {v} |" for k, v in data.items()),
        "",
        "## Results",
        "",
        "| run | time in process (s) | ratio | whole process (s) | ratio | "
        "peak RSS, largest process (MB) | peak RSS, sum over processes (MB) | "
        "peak PSS, sum over processes (MB) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['name']} | {r['seconds']:.2f} | {r['ratio']:.2f}x | {r['wall']:.2f} | "
            f"{r['wall_ratio']:.2f}x | {r['max_process_mb']:.0f} | {r['tree_mb']:.0f} | "
            f"{r['tree_pss_mb']:.0f} |"
        )
    lines += [
        "",
        verdict,
        "",
        f"CPU idle share over 2 s (other jobs share this machine): {idle}.",
        "",
        "`build_index` time covers listing the label folders, reading and parsing every",
        "file, converting both WKT polygons of every building (WKB `geometry`, `area_px`),",
        "building the Arrow tables in worker processes, writing `images.parquet` and",
        "`buildings.parquet` (zstd, row groups of 64,000 rows) and publishing them.",
        "",
    ]
    return "\n".join(lines)


# ------------------------------------------------------------------------ the report

NOTES = "## Design notes and measurements"
BOMB_START, BOMB_END = "<!-- pax-bomb -->", "<!-- /pax-bomb -->"


def keep_notes(doc: Path, generated: str) -> str:
    """``generated`` followed by the hand-written notes of the report already at ``doc``."""
    old = doc.read_text() if doc.exists() else ""
    at = old.find(NOTES)
    return generated.rstrip("\n") + "\n\n" + old[at:] if at >= 0 else generated


# ------------------------------------------------------------------------ pax bomb


def write_pax_bomb(path: Path, pax_size: int = 1 << 30) -> None:
    """A .tar.gz of about 1 MB holding one pax header of ``pax_size`` bytes, then a label:
    gzip members of 1 MiB of ``a`` each, concatenated (one stream to every decoder)."""
    import gzip
    import tarfile

    pax = tarfile.TarInfo("././@PaxHeader")
    pax.type, pax.size = tarfile.XHDTYPE, pax_size
    label = tarfile.TarInfo("train/labels/socal-fire_00000001_post_disaster.json")
    label.size = 2
    chunk = gzip.compress(b"a" * (1 << 20), compresslevel=9)
    with open(path, "wb") as out:
        out.write(gzip.compress(pax.tobuf(tarfile.USTAR_FORMAT)))
        for _ in range(pax_size >> 20):
            out.write(chunk)
        tail = label.tobuf(tarfile.USTAR_FORMAT) + b"{}".ljust(512, b"\0") + bytes(1024)
        out.write(gzip.compress(tail))


def time_v(argv: list[str]) -> tuple[int, float, float, str]:
    """Exit status, wall seconds, peak RSS (MB, GNU ``time -v``) and output of ``argv``."""
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "time.txt"
        started = time.perf_counter()
        done = subprocess.run(
            ["/usr/bin/time", "-v", "-o", str(report), *argv], capture_output=True, text=True
        )
        seconds = time.perf_counter() - started
        fields = dict(
            line.strip().rsplit(": ", 1) for line in report.read_text().splitlines() if ": " in line
        )
    rss = int(fields.get("Maximum resident set size (kbytes)", 0)) / 1024
    return done.returncode, seconds, rss, (done.stdout + done.stderr).strip()


def pax_bomb(doc: Path | None) -> None:
    if not Path("/usr/bin/time").exists():
        raise SystemExit("GNU time is needed (apt-get install time)")
    cli = "import sys; from xview2_ingest.cli import main; sys.exit(main())"
    imports = "import xview2_ingest.cli, xview2_ingest.index.build, xview2_ingest.archive"
    with tempfile.TemporaryDirectory() as dest:
        archive = Path(dest) / "train_images_labels_targets.tar.gz"
        write_pax_bomb(archive)
        size = archive.stat().st_size
        command = ["index", "--from-archives", "--dest", dest]
        code, seconds, rss, output = time_v([sys.executable, "-c", cli, *command])
        _, _, base_rss, _ = time_v([sys.executable, "-c", imports])
    message = output.splitlines()[-1] if output else ""
    print(f"archive {size:,} bytes; exit {code} in {seconds:.2f} s; peak RSS {rss:.0f} MB")
    print(f"imports alone: {base_rss:.0f} MB; message: {message}")
    block = "\n".join(
        [
            BOMB_START,
            "### A pax bomb: `index --from-archives` on a hostile archive",
            "",
            f"Command: `python bench/bench_index.py --pax-bomb` (Python {sys.version.split()[0]}).",
            f"The archive is {size:,} bytes of gzip holding one pax header of 1,073,741,824",
            "bytes (1 MiB of `a`, compressed once, repeated as gzip members), then a label.",
            "",
            "| run | exit | wall s | peak RSS MB (`time -v`) |",
            "|---|---:|---:|---:|",
            f"| `xview2 index --from-archives` | {code} | {seconds:.2f} | {rss:.0f} |",
            f"| the same imports, nothing else | 0 | | {base_rss:.0f} |",
            "",
            "Message:",
            "",
            "```text",
            message,
            "```",
            "",
            "Target: refused with a clear error, peak RSS < 256 MB: "
            + ("met." if code != 0 and rss < 256 and "oversized" in message else "NOT met."),
            BOMB_END,
        ]
    )
    if doc is None:
        print(block)
        return
    text = doc.read_text() if doc.exists() else f"# Benchmark: label index\n\n{NOTES}\n"
    if BOMB_START in text:
        head, _, rest = text.partition(BOMB_START)
        text = head + block + rest.partition(BOMB_END)[2]
    else:
        if NOTES not in text:
            text = text.rstrip("\n") + f"\n\n{NOTES}\n"
        text = text.rstrip("\n") + "\n\n" + block + "\n"
    doc.write_text(text)
    print(f"written to {doc}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--root",
        help="label tree to use or create (default: a cached "
        "folder in the system temporary directory)",
    )
    parser.add_argument(
        "--scale",
        type=float,
        default=1.0,
        help="fraction of the real number of pairs (default 1.0)",
    )
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument(
        "--workers",
        type=int,
        default=None,
        help="build_index worker processes (default: one per CPU)",
    )
    parser.add_argument(
        "--doc",
        default="docs/benchmarks-index.md",
        help="markdown report to write (relative to the repository)",
    )
    parser.add_argument("--no-doc", action="store_true", help="print only")
    parser.add_argument(
        "--pax-bomb",
        action="store_true",
        help="only: peak memory of `index --from-archives` refusing a 1 GiB pax header",
    )
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    doc = Path(__file__).resolve().parent.parent / args.doc
    if args.pax_bomb:
        pax_bomb(None if args.no_doc else doc)
        return

    if args.child:
        mode, root, *rest = args.child
        if mode == "baseline":
            print(json.dumps(child_baseline(root)))
        else:
            print(json.dumps(child_index(root, int(rest[0]) if rest else None)))
        return

    from xview2_ingest.demo.synth import REAL_PAIRS, write_label_tree

    pairs = {s: max(1, round(n * args.scale)) for s, n in REAL_PAIRS.items()}
    root = Path(args.root or Path(tempfile.gettempdir()) / f"xview2-bench-labels-{args.scale:g}")
    marker = root / "synth.json"
    if not marker.exists() or json.loads(marker.read_text()).get("pairs") != pairs:
        shutil.rmtree(root, ignore_errors=True)
        print(f"generating {2 * sum(pairs.values()):,} label files ...", flush=True)
        started = time.perf_counter()
        stats = write_label_tree(root, pairs)
        per_phase = sum(n for (_, phase, _), n in stats.buildings.items() if phase == "post")
        marker.write_text(json.dumps({"pairs": pairs, "buildings_per_phase": per_phase}))
        print(f"  done in {time.perf_counter() - started:.1f}s", flush=True)
    per_phase = json.loads(marker.read_text())["buildings_per_phase"]
    sizes = [e.stat().st_size for s in SPLITS for e in os.scandir(root / s / "labels")]
    data = {
        "label files": f"{len(sizes):,}",
        "total size": f"{sum(sizes) / 1e6:,.0f} MB (mean {sum(sizes) / len(sizes) / 1e3:.1f} KB)",
        "buildings per phase": f"{per_phase:,} (each as lng_lat and xy WKT)",
        "files in page cache": "yes (a warm-up pass reads them all first)",
    }
    run_child(["--child", "baseline", str(root)])  # warm-up: page cache
    idle_before = _idle_share()
    extra = [] if args.workers is None else [str(args.workers)]
    runs: dict[str, list[dict[str, float]]] = {"baseline": [], "index": []}
    for i in range(args.repeat):
        for name in ("baseline", "index"):
            r = run_child(["--child", name, str(root), *extra])
            runs[name].append(r)
            print(
                f"  run {i + 1} {name:8s} {r['seconds']:6.2f}s in process, "
                f"{r['wall']:6.2f}s whole, peak {r['max_process_mb']:5.0f} MB largest process, "
                f"{r['tree_mb']:5.0f} MB RSS / {r['tree_pss_mb']:5.0f} MB PSS all processes",
                flush=True,
            )
    idle_after = _idle_share()
    assert runs["index"][0]["buildings"] == 2 * per_phase, "index lost buildings"

    def median(name: str, key: str) -> float:
        return statistics.median(r[key] for r in runs[name])

    base, base_wall = median("baseline", "seconds"), median("baseline", "wall")
    rows: list[dict[str, Any]] = []
    for name, label in (
        ("baseline", "json.load loop (baseline)"),
        ("index", f"build_index, {args.workers or os.cpu_count()} worker(s)"),
    ):
        rows.append(
            {
                "name": label,
                "seconds": median(name, "seconds"),
                "ratio": median(name, "seconds") / base,
                "wall": median(name, "wall"),
                "wall_ratio": median(name, "wall") / base_wall,
                "max_process_mb": max(r["max_process_mb"] for r in runs[name]),
                "tree_mb": max(r["tree_mb"] for r in runs[name]),
                "tree_pss_mb": max(r["tree_pss_mb"] for r in runs[name]),
            }
        )
    ours = rows[1]
    time_ok = ours["ratio"] <= TARGET_RATIO
    rss_ok = ours["max_process_mb"] <= TARGET_RSS_MB
    total_ok = ours["tree_pss_mb"] <= TARGET_RSS_MB
    verdict = (
        f"Targets: time <= {TARGET_RATIO:g}x the baseline, peak RSS <= {TARGET_RSS_MB} MB.  "
        f"Time: {ours['ratio']:.2f}x in process ({ours['wall_ratio']:.2f}x for the whole "
        f"process): {'met' if time_ok else 'NOT met'}.  Memory: {ours['max_process_mb']:.0f} MB "
        f"for the largest process (what `getrusage`/`time -v` report): "
        f"{'met' if rss_ok else 'NOT met'}; all processes together (parent and workers) "
        f"{ours['tree_pss_mb']:.0f} MB PSS ({ours['tree_mb']:.0f} MB RSS, shared pages counted "
        f"once per process): {'also within' if total_ok else 'above'} {TARGET_RSS_MB} MB."
    )
    ok = time_ok and rss_ok
    command = (
        "python bench/bench_index.py"
        + (f" --scale {args.scale:g}" if args.scale != 1 else "")
        + (f" --workers {args.workers}" if args.workers else "")
        + (f" --repeat {args.repeat}" if args.repeat != 5 else "")
    )
    text = render(
        machine(),
        data,
        rows,
        verdict,
        command,
        f"{idle_before} before the runs, {idle_after} after",
    )
    print()
    print(text)
    if not args.no_doc:
        doc.parent.mkdir(parents=True, exist_ok=True)
        doc.write_text(keep_notes(doc, text))
        print(f"written to {args.doc}")
    raise SystemExit(0 if ok else 1)


if __name__ == "__main__":
    main()
