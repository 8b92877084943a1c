"""Where an upload to the GCS or Azure emulator spends its time: parts, then publish.

Each configuration runs on a fresh emulator (started as ``bench/transfer.py`` starts it,
in memory) and goes through xview2's own store code: ``open_upload``, the parts written
from one buffer by a thread pool (no download, no hashing), then ``publish`` (GCS: one
compose call over at most 32 part objects; Azure: the block-list commit).  Wall time of
each phase, and the CPU seconds the emulator spent in it (from ``/proc``), which is what
a busy two-core machine runs short of::

    python bench/cloud_phases.py                 # 1 GiB; GCS and Azure; writes the docs
    python bench/cloud_phases.py --size-gib 0.25 --no-docs

A second table times a single resumable upload of the whole file (the SDK's
``upload_from_file``) in chunks of a few sizes: the one way to a GCS object that needs
no compose, and what the emulator's re-hashing at every chunk costs.

Writes the "cloud-phases" section of ``docs/benchmarks.md``.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import Emulator, GiB, MiB, load_average, write_section

# (store, part MiB, threads): 128 / 64 / 32 parts of a 1 GiB file
CONFIGS = [("gcs", 8, 16), ("gcs", 16, 8), ("gcs", 32, 4), ("azure", 8, 16), ("azure", 32, 4)]
RESUMABLE_CHUNKS_MIB = [8, 32, 100]


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _cpu_of_tree(pid: int) -> float:
    """CPU seconds of ``pid`` and its children (Azurite's launcher runs node as a child)."""
    total = _cpu_seconds(pid)
    for child in Path(f"/proc/{pid}/task").glob("*/children"):
        for kid in child.read_text().split():
            total += _cpu_of_tree(int(kid))
    return total


def one(kind: str, size: int, part_mib: int, threads: int) -> dict[str, float | str]:
    from xview2_ingest.stores import GroupedParts, open_store

    part = part_mib * MiB
    buf = memoryview(bytearray(os.urandom(part)))
    with Emulator(kind) as emu:
        emu.create("phases")
        os.environ.update(emu.env())
        store = open_store(f"{'gs' if kind == 'gcs' else 'az'}://phases/p")
        upload = store.open_upload("one.bin", size, part)
        count = -(-size // part)
        pid = emu.proc.pid  # type: ignore[union-attr]
        cpu0, t0 = _cpu_of_tree(pid), time.perf_counter()
        with ThreadPoolExecutor(threads) as pool:
            list(pool.map(lambda i: upload.write_part(i, buf[: min(part, size - i * part)]),
                          range(count)))  # fmt: skip
        cpu1, t1 = _cpu_of_tree(pid), time.perf_counter()
        upload.publish()
        cpu2, t2 = _cpu_of_tree(pid), time.perf_counter()
        assert store.size_of("one.bin") == size
    group = upload.group_parts if isinstance(upload, GroupedParts) else 1
    objects = f" as {-(-count // group)} objects" if group > 1 else ""
    return {
        "store": kind,
        "parts": f"{count} x {part_mib} MiB{objects}, {threads} threads",
        "parts_s": t1 - t0,
        "parts_cpu": cpu1 - cpu0,
        "publish_s": t2 - t1,
        "publish_cpu": cpu2 - cpu1,
    }


def resumable(size: int, chunk_mib: int) -> dict[str, float | str]:
    """One resumable upload of ``size`` bytes in ``chunk_mib`` chunks, from memory."""
    import io

    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage

    data = (os.urandom(MiB) * -(-size // MiB))[:size]
    with Emulator("gcs") as emu:
        emu.create("phases")
        client = storage.Client(
            project="bench",
            credentials=AnonymousCredentials(),
            client_options={"api_endpoint": emu.endpoint},
        )
        blob = client.bucket("phases").blob("one.bin", chunk_size=chunk_mib * MiB)
        pid = emu.proc.pid  # type: ignore[union-attr]
        cpu0, t0 = _cpu_of_tree(pid), time.perf_counter()
        blob.upload_from_file(io.BytesIO(data), size=size, checksum=None)
        cpu1, t1 = _cpu_of_tree(pid), time.perf_counter()
        blob.reload()
        assert blob.size == size
    return {"chunk": f"{chunk_mib} MiB", "seconds": t1 - t0, "cpu": cpu1 - cpu0}


def markdown(rows: list[dict[str, float | str]], size: int, command: str, load: str) -> str:
    lines = [
        "## Where a GCS or Azure upload spends its time (emulators)",
        "",
        f"Command: `{command}` (one run per row, each on a fresh emulator; load average at"
        f" start {load}; generated {time.strftime('%Y-%m-%d %H:%M %Z')}).",
        "",
        f"A {size / GiB:g} GiB file through xview2's store code: parts written from one"
        " buffer by threads (no download, no hashing), then `publish` (GCS: one compose"
        " call, a file of more than 32 parts having gone up as at most 32 part objects, each"
        " a resumable upload of consecutive parts; Azure: one block-list commit). Emulator"
        " CPU is what the emulator's process used in that phase.",
        "",
        "| store | parts | writing parts | emulator CPU | publish | emulator CPU |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['store']} | {r['parts']} | {r['parts_s']:.2f} s | {r['parts_cpu']:.1f} s"
            f" | {r['publish_s']:.2f} s | {r['publish_cpu']:.1f} s |"
        )
    return "\n".join(lines)


def resumable_markdown(rows: list[dict[str, float | str]], size: int) -> str:
    lines = [
        f"The same {size / GiB:g} GiB as one resumable upload to fake-gcs-server (the SDK's"
        " `upload_from_file` from memory, one chunk per request, no compose):",
        "",
        "| chunk | upload | emulator CPU |",
        "|---|---:|---:|",
    ]
    for r in rows:
        lines.append(f"| {r['chunk']} | {r['seconds']:.2f} s | {r['cpu']:.1f} s |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size-gib", type=float, default=1.0)
    parser.add_argument("--no-docs", action="store_true")
    args = parser.parse_args()
    size = int(args.size_gib * GiB)
    load = load_average()
    rows = []
    for kind, part_mib, threads in CONFIGS:
        row = one(kind, size, part_mib, threads)
        print(
            f"{row['store']:6} {row['parts']:28} parts {row['parts_s']:6.2f} s"
            f" (emulator CPU {row['parts_cpu']:5.1f} s)  publish {row['publish_s']:6.2f} s"
            f" (emulator CPU {row['publish_cpu']:5.1f} s)",
            flush=True,
        )
        rows.append(row)
    chunked = []
    for chunk_mib in RESUMABLE_CHUNKS_MIB:
        r = resumable(size, chunk_mib)
        print(f"gcs    one resumable upload, {r['chunk']} chunks: {r['seconds']:.2f} s", flush=True)
        chunked.append(r)
    command = "python bench/cloud_phases.py" + (
        f" --size-gib {args.size_gib:g}" if args.size_gib != 1.0 else ""
    )
    if not args.no_docs:
        body = markdown(rows, size, command, load) + "\n\n" + resumable_markdown(chunked, size)
        write_section("cloud-phases", body)
        print("wrote docs/benchmarks.md (cloud-phases section)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
