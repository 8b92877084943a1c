"""Python contenders for the GCS and Azure benchmarks, each run as its own process.

``naive-gcs``     ``requests.get(url, stream=True)`` into ``blob.upload_from_file`` (the
                  SDK's defaults: one resumable upload in 100 MiB chunks; no verification).
``naive-azure``   ``requests.get(url, stream=True)`` into ``upload_blob`` (SDK defaults).
``ceiling-gcs``   the emulator's own ceiling: the file from local disk as parallel SDK
                  uploads of chunks, composed in rounds of 32 (the SDK's own parallel
                  upload, ``transfer_manager``, needs the XML multipart API that
                  fake-gcs-server lacks).
``ceiling-azure`` ``upload_blob`` of the file from local disk, blocks and concurrency given.

The emulator is found as clients find it: ``STORAGE_EMULATOR_HOST`` or
``AZURE_STORAGE_CONNECTION_STRING``.
"""

from __future__ import annotations

import argparse
import os
import sys
from concurrent.futures import ThreadPoolExecutor

MiB = 1 << 20


def _gcs_bucket(name: str):  # type: ignore[no-untyped-def]
    from google.cloud import storage

    return storage.Client(project="bench").bucket(name)


def _azure_blob(container: str, key: str):  # type: ignore[no-untyped-def]
    from azure.storage.blob import BlobServiceClient

    service = BlobServiceClient.from_connection_string(
        os.environ["AZURE_STORAGE_CONNECTION_STRING"]
    )
    return service.get_blob_client(container, key)


def naive_gcs(args: argparse.Namespace) -> int:
    import requests

    with requests.get(args.url, stream=True, timeout=60) as resp:
        resp.raise_for_status()
        size = int(resp.headers["Content-Length"])
        _gcs_bucket(args.container).blob(args.key).upload_from_file(resp.raw, size=size)
    return 0


def naive_azure(args: argparse.Namespace) -> int:
    import requests

    with requests.get(args.url, stream=True, timeout=60) as resp:
        resp.raise_for_status()
        size = int(resp.headers["Content-Length"])
        _azure_blob(args.container, args.key).upload_blob(resp.raw, length=size, overwrite=True)
    return 0


def ceiling_gcs(args: argparse.Namespace) -> int:
    bucket = _gcs_bucket(args.container)
    size = os.path.getsize(args.file)
    part = args.chunk_mib * MiB  # 8 MiB and under go in one request (the SDK's multipart)

    def send(index: int) -> object:
        with open(args.file, "rb") as fh:
            fh.seek(index * part)
            data = fh.read(part)
        blob = bucket.blob(f"{args.key}.chunk{index:05d}")
        blob.upload_from_string(data)
        return blob

    with ThreadPoolExecutor(args.concurrency) as pool:
        chunks = list(pool.map(send, range(-(-size // part))))
    level = 0
    while len(chunks) > 1:  # compose in rounds of 32, the last one into the key
        groups = [chunks[i : i + 32] for i in range(0, len(chunks), 32)]
        names = (
            [args.key]
            if len(groups) == 1
            else [f"{args.key}.r{level}-{j}" for j in range(len(groups))]
        )
        targets = [bucket.blob(n) for n in names]
        with ThreadPoolExecutor(args.concurrency) as pool:
            list(pool.map(lambda t, g: t.compose(g), targets, groups))
        with ThreadPoolExecutor(16) as pool:
            list(pool.map(lambda b: b.delete(), [b for g in groups for b in g]))
        chunks, level = targets, level + 1
    return 0


def ceiling_azure(args: argparse.Namespace) -> int:
    from azure.storage.blob import BlobServiceClient

    service = BlobServiceClient.from_connection_string(
        os.environ["AZURE_STORAGE_CONNECTION_STRING"],
        max_block_size=args.chunk_mib * MiB,
        max_single_put_size=args.chunk_mib * MiB,
    )
    with open(args.file, "rb") as fh:
        service.get_blob_client(args.container, args.key).upload_blob(
            fh, length=os.path.getsize(args.file), overwrite=True, max_concurrency=args.concurrency
        )
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    sub = parser.add_subparsers(dest="cmd", required=True)
    for name, fn in (("naive-gcs", naive_gcs), ("naive-azure", naive_azure)):
        p = sub.add_parser(name)
        p.add_argument("url")
        p.add_argument("--container", required=True)
        p.add_argument("--key", required=True)
        p.set_defaults(fn=fn)
    for name, fn in (("ceiling-gcs", ceiling_gcs), ("ceiling-azure", ceiling_azure)):
        p = sub.add_parser(name)
        p.add_argument("file")
        p.add_argument("--container", required=True)
        p.add_argument("--key", required=True)
        p.add_argument("--chunk-mib", type=int, default=16)
        p.add_argument("--concurrency", type=int, default=8)
        p.set_defaults(fn=fn)
    args = parser.parse_args()
    return int(args.fn(args))


if __name__ == "__main__":
    sys.exit(main())
