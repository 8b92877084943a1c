"""Benchmark: ``make_targets`` against the plain per-image loop public solutions use.

    python bench/bench_targets.py            # tier3 scale, writes docs/benchmarks-targets.md
    python bench/bench_targets.py --quick    # 1,000 label files, prints only

Generates (once, cached under ``bench/_work/``) a tier3-sized label tree: 6,369 pairs
(12,738 label files) of 1024 x 1024 images, about 25 buildings each (heavy tailed), with
irregular 4-11-vertex polygons and the real share of damage classes.  Then runs, each in
its own process and alternately, ``--repeat`` times:

* the plain loop: for each label ``json.load``, ``shapely.wkt.loads`` per building,
  ``cv2.fillPoly`` on rounded vertices into a zero mask, ``cv2.imwrite`` the PNG;
* ``make_targets(splits=["tier3"])`` with ``--workers`` processes, on a tree whose
  targets and record were removed first (the first run on tier3, as users meet it).

It reports images per second and the peak of the summed RSS of each process tree
(sampled from ``/proc`` every 25 ms), and checks on a sample that both wrote the same
masks, pixel for pixel.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import WORK, machine_basics, machine_markdown, package_version

TARGET_RATIO = 2.0
TARGET_RSS_MB = 512
TIER3_PAIRS = 6369
BUILDINGS = 25.0
DAMAGE = {"no-damage": 1, "minor-damage": 2, "major-damage": 3, "destroyed": 4}


# ------------------------------------------------------------------------ child modes


def child_loop(root: str, out: str) -> dict[str, Any]:
    """The per-image loop of public solutions (baseline mask script style)."""
    import cv2
    import numpy as np
    from shapely import wkt

    started = time.perf_counter()
    labels = os.path.join(root, "tier3", "labels")
    count = 0
    for name in sorted(os.listdir(labels)):
        with open(os.path.join(labels, name)) as fh:
            doc = json.load(fh)
        meta = doc["metadata"]
        mask = np.zeros((meta["height"], meta["width"]), np.uint8)
        post = "_post_" in name
        for feature in doc["features"]["xy"]:
            coords = np.array(wkt.loads(feature["wkt"]).exterior.coords)
            value = DAMAGE.get(feature["properties"].get("subtype"), 0) if post else 1
            cv2.fillPoly(mask, [np.rint(coords).astype(np.int32)], value)
        cv2.imwrite(os.path.join(out, name[: -len(".json")] + "_target.png"), mask)
        count += 1
    return {"seconds": time.perf_counter() - started, "images": count}


def child_targets(root: str, workers: int) -> dict[str, Any]:
    from xview2_ingest.prepare import make_targets

    started = time.perf_counter()
    report = make_targets(root, splits=["tier3"], workers=workers)
    seconds = time.perf_counter() - started
    assert report.ok, report.failed[:3]
    return {"seconds": seconds, "images": report.made}


def micro(root: Path, labels: int = 200, repeat: int = 3) -> list[dict[str, Any]]:
    """The parts side by side on the same masks: fill with OpenCV or PIL, encode with
    OpenCV, PIL or this project's writer; and how often OpenCV and PIL disagree."""
    import io

    import cv2
    import numpy as np
    from PIL import Image, ImageDraw

    from xview2_ingest.index.labels import parse_label_path, read_label
    from xview2_ingest.prepare import raster

    names = sorted(os.listdir(root / "tier3" / "labels"))[:labels]
    parsed = [
        read_label(parse_label_path(f"tier3/labels/{n}"), (root / "tier3/labels" / n).read_bytes())
        for n in names
    ]
    rule = raster.MaskRule()
    polys = [[np.rint(r[0]).astype(np.int32) for r in raster.label_polygons(p)] for p in parsed]
    values = [[rule.value(p.ref.phase, s) for s in p.subtypes] for p in parsed]
    masks = []

    def fill_cv2(keep: bool = False) -> None:
        for ps, vs in zip(polys, values, strict=True):
            m = np.zeros((1024, 1024), np.uint8)
            for pts, v in zip(ps, vs, strict=True):
                cv2.fillPoly(m, [pts], v)
            if keep:
                masks.append(m)

    def fill_pil() -> None:
        for ps, vs in zip(polys, values, strict=True):
            im = Image.new("L", (1024, 1024))
            draw = ImageDraw.Draw(im)
            for pts, v in zip(ps, vs, strict=True):
                draw.polygon([(int(x), int(y)) for x, y in pts], fill=v)

    def enc_cv2() -> None:
        for m in masks:
            cv2.imencode(".png", m)

    def enc_pil() -> None:
        for m in masks:
            Image.fromarray(m).save(io.BytesIO(), "PNG")

    def enc_own() -> None:
        for m in masks:
            raster.encode_png(m)

    def count() -> None:
        for m in masks:
            raster.pixel_counts(m)

    fill_cv2(keep=True)
    rows = []
    for name, fn in (
        ("fill: cv2.fillPoly", fill_cv2),
        ("fill: PIL ImageDraw.polygon", fill_pil),
        ("encode: cv2.imencode (defaults)", enc_cv2),
        ("encode: PIL save (defaults)", enc_pil),
        ("encode: raster.encode_png (ISA-L level 1)", enc_own),
        ("count pixels per value (raster.pixel_counts)", count),
    ):
        best = min(_timed(fn) for _ in range(repeat))
        rows.append({"name": name, "ms": 1000 * best / len(masks)})
    differing = building = 0
    for ps, vs, m in zip(polys, values, masks, strict=True):
        im = Image.new("L", (1024, 1024))
        draw = ImageDraw.Draw(im)
        for pts, v in zip(ps, vs, strict=True):
            draw.polygon([(int(x), int(y)) for x, y in pts], fill=v)
        differing += int((np.asarray(im) != m).sum())
        building += int((m > 0).sum())
    rows.append(
        {"name": "cv2 vs PIL: pixels differing / building pixels", "share": differing / building}
    )
    return rows


def _timed(fn: Any) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


# ------------------------------------------------------------------------ measurement


def _descendants(pid: int) -> list[int]:
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
    page, total = os.sysconf("SC_PAGE_SIZE"), 0
    for p in _descendants(pid):
        try:
            with open(f"/proc/{p}/statm") as fh:
                total += int(fh.read().split()[1]) * page
        except OSError:
            continue
    return total


def run_child(args: list[str]) -> dict[str, Any]:
    """Run this script in a child mode; its report plus wall time and peak tree RSS."""
    started = time.perf_counter()
    proc = subprocess.Popen([sys.executable, __file__, *args], stdout=subprocess.PIPE, text=True)
    peak = 0
    stop = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not stop.is_set():
            peak = max(peak, _tree_rss(proc.pid))
            stop.wait(0.025)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    out, _ = proc.communicate()
    stop.set()
    sampler.join()
    if proc.returncode:
        raise SystemExit(f"child {args[:2]} failed with exit code {proc.returncode}")
    result: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    result["wall"] = time.perf_counter() - started
    result["rss_mb"] = peak / 1e6
    return result


def same_masks(root: Path, loop_out: Path, sample: int = 300) -> int:
    """How many of a sample of targets differ between the two (decoded, pixel by pixel)."""
    import cv2
    import numpy as np

    names = sorted(os.listdir(loop_out))[:: max(1, len(os.listdir(loop_out)) // sample)]
    differing = 0
    for name in names:
        a = cv2.imread(str(loop_out / name), cv2.IMREAD_UNCHANGED)
        b = cv2.imread(str(root / "tier3" / "targets" / name), cv2.IMREAD_UNCHANGED)
        differing += not np.array_equal(a, b)
    return differing


# ------------------------------------------------------------------------ report


def render(
    info: dict[str, str],
    data: dict[str, str],
    rows: list[dict[str, Any]],
    verdict: str,
    command: str,
    parts: list[dict[str, Any]],
) -> str:
    lines = [
        "# Benchmark: targets",
        "",
        "`make_targets` against the plain per-image loop public solutions use",
        "(`json.load`, `shapely.wkt.loads`, `cv2.fillPoly`, `cv2.imwrite`), each in its own",
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
        "| run | images | time in process (s) | images/s | ratio | whole process (s) | "
        "peak RSS, sum over processes (MB) |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['name']} | {r['images']:,} | {r['seconds']:.2f} | {r['rate']:.0f} | "
            f"{r['ratio']:.2f}x | {r['wall']:.2f} | {r['rss_mb']:.0f} |"
        )
    lines += [
        "",
        verdict,
        "",
        "## The parts, per 1024 x 1024 mask",
        "",
        "Best of 3 over the first 200 labels, in one process: the reason for the choices",
        "in `prepare/raster.py` (OpenCV to fill, the project's own PNG writer to encode).",
        "",
        "| step | ms per mask |",
        "|---|---:|",
    ]
    for part in parts:
        if "ms" in part:
            lines.append(f"| {part['name']} | {part['ms']:.2f} |")
    share = next(p["share"] for p in parts if "share" in p)
    lines += [
        "",
        f"OpenCV and PIL disagree on {100 * share:.2f} % of the building pixels (all within",
        "one pixel of a polygon edge, as `tests/test_prepare.py` checks on every pixel).",
        "",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="500 pairs, no document")
    parser.add_argument("--pairs", type=int, default=None, help="label pairs (default 6,369)")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--doc", default="docs/benchmarks-targets.md")
    parser.add_argument("--no-doc", action="store_true")
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        mode, *rest = args.child
        result = child_loop(*rest) if mode == "loop" else child_targets(rest[0], int(rest[1]))
        print(json.dumps(result))
        return

    from xview2_ingest.demo.synth import write_label_tree

    pairs = args.pairs or (500 if args.quick else TIER3_PAIRS)
    root = WORK / f"targets-{pairs}"
    marker = root / "synth.json"
    if not marker.exists():
        shutil.rmtree(root, ignore_errors=True)
        print(f"generating {2 * pairs:,} label files ...", flush=True)
        stats = write_label_tree(root, {"tier3": pairs}, buildings_per_pair=BUILDINGS)
        buildings = sum(n for (_, phase, _), n in stats.buildings.items() if phase == "post")
        marker.write_text(json.dumps({"pairs": pairs, "buildings_per_phase": buildings}))
    buildings = json.loads(marker.read_text())["buildings_per_phase"]
    parts = micro(root)
    for part in parts:
        print(
            f"  {part['name']}: "
            + (f"{part['ms']:.2f} ms" if "ms" in part else f"{part['share']:.4f}")
        )
    loop_out = WORK / f"targets-loop-{pairs}"
    runs: dict[str, list[dict[str, Any]]] = {"loop": [], "targets": []}
    for i in range(args.repeat):
        for name in ("loop", "targets"):
            if name == "loop":
                shutil.rmtree(loop_out, ignore_errors=True)
                loop_out.mkdir(parents=True)
                r = run_child(["--child", "loop", str(root), str(loop_out)])
            else:
                shutil.rmtree(root / "tier3" / "targets", ignore_errors=True)
                (root / "index" / "targets" / "tier3.json").unlink(missing_ok=True)
                r = run_child(["--child", "targets", str(root), str(args.workers)])
            runs[name].append(r)
            print(
                f"  run {i + 1} {name:8s} {r['images']:,} images in {r['seconds']:6.2f}s "
                f"({r['images'] / r['seconds']:5.0f}/s), peak RSS {r['rss_mb']:4.0f} MB",
                flush=True,
            )
    differing = same_masks(root, loop_out)
    print(f"  sampled targets differing between the two: {differing}")

    def median(name: str, key: str) -> float:
        return float(statistics.median(r[key] for r in runs[name]))

    base = median("loop", "seconds")
    rows = []
    for name, label in (
        ("loop", "plain loop (json, shapely, cv2.fillPoly, cv2.imwrite), 1 process"),
        ("targets", f"make_targets, {args.workers} worker processes"),
    ):
        seconds = median(name, "seconds")
        images = runs[name][0]["images"]
        rows.append(
            {
                "name": label,
                "images": images,
                "seconds": seconds,
                "rate": images / seconds,
                "ratio": base / seconds,
                "wall": median(name, "wall"),
                "rss_mb": max(r["rss_mb"] for r in runs[name]),
            }
        )
    ratio, rss = rows[1]["ratio"], rows[1]["rss_mb"]
    verdict = (
        f"Throughput {ratio:.2f}x the plain loop (goal >= {TARGET_RATIO:.0f}x: "
        f"{'met' if ratio >= TARGET_RATIO else 'NOT met'}); peak RSS {rss:.0f} MB summed over "
        f"all processes (goal <= {TARGET_RSS_MB} MB: "
        f"{'met' if rss <= TARGET_RSS_MB else 'NOT met'}).  Sampled targets identical to the "
        f"loop's: {'all' if not differing else f'{differing} differ'}."
    )
    print(verdict)
    if args.quick or args.no_doc:
        return
    info = {
        **machine_basics(),
        "OpenCV": package_version("opencv-python-headless"),
        "shapely": package_version("shapely"),
        "Pillow": package_version("pillow"),
        "isal": package_version("isal"),
    }
    data = {
        "label files": f"{2 * pairs:,} (tier3 scale: {pairs:,} pairs)",
        "image size": "1024 x 1024",
        "buildings per post label": f"{buildings / pairs:.1f} on average ({buildings:,} in all)",
        "runs": f"{args.repeat} of each, alternating",
    }
    command = f"python bench/bench_targets.py --repeat {args.repeat} --workers {args.workers}"
    doc = Path(__file__).resolve().parent.parent / args.doc
    doc.write_text(render(info, data, rows, verdict, command, parts))
    print(f"wrote {doc}")


if __name__ == "__main__":
    main()
