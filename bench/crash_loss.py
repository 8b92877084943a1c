"""What crashes cost: SIGKILL a download several times, resume it each time with a fresh
link, and measure how much of the file was fetched more than once.

The scenario of the resume promise: a large file from a server that caps each connection
(20 MB/s by default), ``--connections 4``, three kills at seeded random moments, each run
resumed with a fresh link, then a last run to the end; for a local folder and for S3
(a private ``moto_server``).  Prints the bytes fetched again as a share of the file::

    python bench/crash_loss.py                   # 1 GiB, 3 kills, 4 connections, 20 MB/s
    python bench/crash_loss.py --size-mib 256 --seed 7 --only s3
    python bench/crash_loss.py --sigint-at 11    # one Ctrl-C at 11 s, default settings

``--sigint-at T`` measures a graceful stop instead: the command runs with its default
settings, gets SIGINT after T seconds, says what it kept, and a rerun fetches the rest;
the figure is what the stop kept and what the rerun fetched again.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from common import S3_ENV, WORK, MiB, Moto, byte_compiled, fresh_dir, make_file
from xview2_ingest.demo.server import Faults, SignedLinkServer

PROBE_BYTES = 2  # every run's probe asks for two bytes


def run_once(argv: list[str], env: dict[str, str], kill_after: float | None) -> int | None:
    proc = subprocess.Popen(
        argv, env={**os.environ, **env}, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    if kill_after is None:
        _, err = proc.communicate(timeout=3600)
        if proc.returncode != 0:
            sys.exit(f"the last run failed ({proc.returncode}): {err.decode()[-2000:]}")
        return proc.returncode
    time.sleep(kill_after)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    return None if proc.returncode == -signal.SIGKILL else proc.returncode


def scenario(store: str, args: argparse.Namespace, moto: Moto | None) -> float:
    f = make_file(args.size_mib * MiB, f"crash-{args.size_mib}.bin")
    catalog = WORK / "crash-catalog.json"
    catalog.write_text(json.dumps({f.name: {"size": f.size, "sha1": f.sha1}}))
    env = {"XVIEW2_STATE_DIR": str(fresh_dir(WORK / "crash-state"))}
    if moto is not None:
        import boto3

        env |= {**S3_ENV, "AWS_ENDPOINT_URL": moto.endpoint}
        bucket = f"crash-{int(time.time())}"
        boto3.client("s3", endpoint_url=moto.endpoint, **_creds()).create_bucket(Bucket=bucket)
        dest = f"s3://{bucket}/x"
    else:
        dest = str(fresh_dir(WORK / "crash-dest"))
    rng = random.Random(args.seed)
    rate = int(args.rate_mb * 1_000_000)
    command = [sys.executable, "-m", "xview2_ingest.cli"]
    if args.python_path:
        env["PYTHONPATH"] = args.python_path
    with SignedLinkServer(f.path.parent, faults=Faults(rate=rate)) as srv:
        runs = 0
        for kill in range(args.kills + 1):
            argv = [
                *command, "download", srv.url_for(f.name), "--dest", dest,
                "--catalog", str(catalog), "--quiet", "--connections", str(args.connections),
                *(["--part-size-mb", str(args.part_size_mb)] if args.part_size_mb else []),
            ]  # fmt: skip
            left = max(0.0, f.size - (srv.bytes_served - runs * PROBE_BYTES))
            expected = left / (args.connections * rate)
            last = kill == args.kills
            at = None if last else rng.uniform(0.15, 0.85) * expected
            began = time.monotonic()
            code = run_once(argv, env, at)
            runs += 1
            if code is not None and not last:
                print(f"  run {kill + 1} ended ({code}) before its kill at {at:.1f}s")
            print(
                f"  run {kill + 1}: {'killed' if at else 'finished'} after "
                f"{time.monotonic() - began:.1f}s, {srv.bytes_served / MiB:,.1f} MiB served so far"
            )
        again = srv.bytes_served - f.size - runs * PROBE_BYTES
    share = again / f.size
    print(
        f"{store}: fetched again {again / MiB:,.1f} MiB of {f.size / MiB:,.0f} MiB "
        f"({share:.1%}) over {args.kills} kills (seed {args.seed})"
    )
    return share


def graceful(store: str, args: argparse.Namespace, moto: Moto | None) -> None:
    """One SIGINT after ``args.sigint_at`` seconds with default settings, then a rerun."""
    f = make_file(args.size_mib * MiB, f"crash-{args.size_mib}.bin")
    catalog = WORK / "crash-catalog.json"
    catalog.write_text(json.dumps({f.name: {"size": f.size, "sha1": f.sha1}}))
    env = {"XVIEW2_STATE_DIR": str(fresh_dir(WORK / "crash-state"))}
    if moto is not None:
        import boto3

        env |= {**S3_ENV, "AWS_ENDPOINT_URL": moto.endpoint}
        bucket = f"stop-{int(time.time())}"
        boto3.client("s3", endpoint_url=moto.endpoint, **_creds()).create_bucket(Bucket=bucket)
        dest = f"s3://{bucket}/x"
    else:
        dest = str(fresh_dir(WORK / "crash-dest"))
    rate = int(args.rate_mb * 1_000_000)
    with SignedLinkServer(f.path.parent, faults=Faults(rate=rate)) as srv:
        argv = [
            sys.executable, "-m", "xview2_ingest.cli", "download", srv.url_for(f.name),
            "--dest", dest, "--catalog", str(catalog), "--no-prompt",
        ]  # fmt: skip
        proc = subprocess.Popen(
            argv, env={**os.environ, **env}, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        time.sleep(args.sigint_at)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=120)
        before = settled(srv) - PROBE_BYTES
        said = [line for line in err.decode().splitlines() if "kept" in line]
        run_once(argv, env, None)
        rerun = srv.bytes_served - before - 2 * PROBE_BYTES
    print(
        f"{store}: SIGINT at {args.sigint_at:g}s: exit {proc.returncode}; the server sent "
        f"{before / MiB:,.1f} MiB before the stop; the rerun fetched {rerun / MiB:,.1f} MiB, "
        f"so {(f.size - rerun) / MiB:,.1f} MiB were kept"
    )
    for line in said:
        print(f"  the command said: {line.strip()}")


def settled(srv: SignedLinkServer) -> int:
    """The server's byte count once it stops moving.  After the client is gone, the
    server's threads still pace out a chunk or two per connection into the closed
    sockets before a write fails; those bytes never reached the client, and counting
    them as the rerun's would make the rerun seem to fetch kept bytes again."""
    last, still = srv.bytes_served, 0.0
    while still < 1.5:
        time.sleep(0.25)
        now = srv.bytes_served
        still, last = (still + 0.25, last) if now == last else (0.0, now)
    return last


def _creds() -> dict[str, str]:
    return {
        "aws_access_key_id": S3_ENV["AWS_ACCESS_KEY_ID"],
        "aws_secret_access_key": S3_ENV["AWS_SECRET_ACCESS_KEY"],
        "region_name": S3_ENV["AWS_DEFAULT_REGION"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--kills", type=int, default=3)
    parser.add_argument("--connections", type=int, default=4)
    parser.add_argument("--rate-mb", type=float, default=20.0, help="MB/s per connection")
    parser.add_argument("--seed", type=int, default=int(time.time()))
    parser.add_argument("--part-size-mb", type=int, help="pass --part-size-mb to xview2")
    parser.add_argument("--only", choices=["local", "s3"], nargs="*", default=["local", "s3"])
    parser.add_argument(
        "--python-path", help="import xview2_ingest from this folder (another checkout's src)"
    )
    parser.add_argument(
        "--sigint-at", type=float, help="measure one graceful stop after this many seconds"
    )
    args = parser.parse_args()
    if args.python_path is None:
        byte_compiled()
    run = scenario if args.sigint_at is None else graceful
    if "local" in args.only:
        run("local", args, None)
    if "s3" in args.only:
        with Moto() as moto:
            run("s3", args, moto)


if __name__ == "__main__":
    main()
