"""S3 part size against the naive way, interleaved: 1 GiB from nginx (unthrottled) to a
fresh moto per run, xview2 with its default parts and with each ``--part-size-mb`` given,
another checkout's xview2 (``--before SRC``), and ``requests`` -> ``upload_fileobj``;
medians::

    python bench/s3_part_size.py --rounds 3 --sizes 8 16 --before OTHER_CHECKOUT/src
    python bench/s3_part_size.py --sizes --flags "--connections 4" \
        "--part-size-mb 8 --connections 4"
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import S3_ENV, WORK, GiB, Moto, Nginx, catalog_for, make_file, settle, warm

BUCKET = "part-size-bench"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--before", help="src folder of another checkout to compare")
    parser.add_argument("--sizes", type=int, nargs="*", default=[16], help="part sizes, MiB")
    parser.add_argument(
        "--flags",
        nargs="*",
        default=[],
        help='more xview2 variants, each one quoted string of flags: "--connections 4"',
    )
    args = parser.parse_args()
    f = make_file(GiB)
    warm(f.path)
    cat = catalog_for([f], WORK / "part-size-catalog.json")
    me = [sys.executable, "-m", "xview2_ingest.cli"]
    variants: dict[str, tuple[list[str] | None, dict[str, str]]] = {
        "xview2 (default parts)": (me, {}),
        **{f"xview2 --part-size-mb {n}": ([*me, "--part-size-mb", str(n)], {}) for n in args.sizes},
        **{f"xview2 {flags}": ([*me, *flags.split()], {}) for flags in args.flags},
        "naive": (None, {}),
    }
    if args.before:
        variants["xview2 before"] = (me, {"PYTHONPATH": args.before})
    times: dict[str, list[float]] = {k: [] for k in variants}
    with Nginx() as nginx:
        url = nginx.url(f.name)
        for rnd in range(args.rounds):
            for name, (cmd, extra) in variants.items():
                settle()
                with Moto() as moto:
                    s3 = moto.client()
                    s3.create_bucket(Bucket=BUCKET)
                    env = {**os.environ, **S3_ENV, "XVIEW2_STATE_DIR": str(WORK / "ps-state")}
                    if cmd is None:
                        argv = [
                            sys.executable, str(Path(__file__).with_name("peers.py")), "naive",
                            url, "--endpoint", moto.endpoint, "--bucket", BUCKET,
                            "--key", f"x/{f.name}",
                        ]  # fmt: skip
                    else:
                        flags = [a for a in cmd[3:]]
                        argv = [
                            *cmd[:3], "download", url, "--dest", f"s3://{BUCKET}/x",
                            "--catalog", str(cat), "--endpoint-url", moto.endpoint, "--quiet",
                            *flags,
                        ]  # fmt: skip
                    began = time.monotonic()
                    done = subprocess.run(argv, env={**env, **extra}, capture_output=True)
                    took = time.monotonic() - began
                    head = s3.head_object(Bucket=BUCKET, Key=f"x/{f.name}")
                    ok = done.returncode == 0 and head["ContentLength"] == f.size
                    times[name].append(took)
                    print(
                        f"round {rnd + 1} {name:40s} {took:6.2f}s {'ok' if ok else 'FAILED'} "
                        f"load {os.getloadavg()[0]:.1f}",
                        flush=True,
                    )
    naive = statistics.median(times["naive"])
    for name, runs in times.items():
        median = statistics.median(runs)
        print(f"{name:40s} median {median:.2f}s  / naive {median / naive:.2f}")


if __name__ == "__main__":
    main()
