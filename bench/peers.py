"""Python contenders for the S3 benchmarks, each run as its own process (for its peak RSS).

``naive``    the obvious way: ``requests.get(url, stream=True)`` into boto3 ``upload_fileobj``
             (default transfer settings, no verification).
``ceiling``  the S3 server's own ceiling: boto3 ``upload_file`` of the same bytes from local
             disk, with the multipart chunk size and concurrency given.
``api``      xview2 through its Python API (used only when the ``xview2`` command is absent).
"""

from __future__ import annotations

import argparse
import os
import sys

MiB = 1 << 20


def _s3(endpoint: str, max_pool: int = 10):  # type: ignore[no-untyped-def]
    """A client with boto3's defaults (so its transfers send CRC32 part checksums)."""
    import boto3
    from botocore.config import Config

    return boto3.session.Session().client(
        "s3", endpoint_url=endpoint, config=Config(max_pool_connections=max_pool)
    )


def naive(args: argparse.Namespace) -> int:
    import requests

    s3 = _s3(args.endpoint)
    with requests.get(args.url, stream=True, timeout=60) as resp:
        resp.raise_for_status()
        s3.upload_fileobj(resp.raw, args.bucket, args.key)
    return 0


def ceiling(args: argparse.Namespace) -> int:
    from boto3.s3.transfer import TransferConfig

    s3 = _s3(args.endpoint, max_pool=max(10, args.concurrency))
    config = TransferConfig(
        multipart_threshold=8 * MiB,
        multipart_chunksize=args.chunk_mib * MiB,
        max_concurrency=args.concurrency,
    )
    s3.upload_file(args.file, args.bucket, args.key, Config=config)
    return 0


def api(args: argparse.Namespace) -> int:
    from xview2_ingest import Catalog, download

    catalog = Catalog().with_file(args.catalog) if args.catalog else None
    report = download(
        [args.url],
        args.dest,
        catalog=catalog,
        connections=args.connections,
        endpoint_url=args.endpoint_url,
    )
    if not report.ok:
        print(report.summary(), file=sys.stderr)
    return 0 if report.ok else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    sub = parser.add_subparsers(dest="cmd", required=True)

    p = sub.add_parser("naive")
    p.add_argument("url")
    p.add_argument("--endpoint", required=True)
    p.add_argument("--bucket", required=True)
    p.add_argument("--key", required=True)
    p.set_defaults(fn=naive)

    p = sub.add_parser("ceiling")
    p.add_argument("file")
    p.add_argument("--endpoint", required=True)
    p.add_argument("--bucket", required=True)
    p.add_argument("--key", required=True)
    p.add_argument("--chunk-mib", type=int, default=16)
    p.add_argument("--concurrency", type=int, default=8)
    p.set_defaults(fn=ceiling)

    p = sub.add_parser("api")
    p.add_argument("url")
    p.add_argument("--dest", required=True)
    p.add_argument("--connections", type=int, default=None)
    p.add_argument("--catalog")
    p.add_argument("--endpoint-url")
    p.set_defaults(fn=api)

    args = parser.parse_args()
    os.environ.setdefault("AWS_EC2_METADATA_DISABLED", "true")
    return int(args.fn(args))


if __name__ == "__main__":
    sys.exit(main())
