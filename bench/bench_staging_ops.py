"""What publishing staged members costs on an S3 server, per operation.

Extraction to an object store stages every member (one PUT) and publishes it only after
the archive was verified.  This measures, on moto (``ThreadedMotoServer`` on 127.0.0.1),
the operations a deferred publish can be built from, for ``--objects`` objects of
``--size`` bytes on ``--threads`` threads, so that the design choices in
``docs/benchmarks-extract.md`` can be compared with the plain PUT::

    python bench/bench_staging_ops.py [--objects 400] [--size 330000] [--threads 8]

Prints one line per operation; nothing is written to the docs.
"""

from __future__ import annotations

import argparse
import logging
import os
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

HOST = "127.0.0.1"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--objects", type=int, default=400)
    parser.add_argument("--size", type=int, default=330_000)
    parser.add_argument("--threads", type=int, default=8)
    args = parser.parse_args()
    os.environ.update(
        AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing", AWS_DEFAULT_REGION="us-east-1"
    )
    import boto3
    from botocore.config import Config
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = ThreadedMotoServer(ip_address=HOST, port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        client = boto3.client(
            "s3",
            endpoint_url=f"http://{host}:{port}",
            config=Config(
                max_pool_connections=4 * args.threads,
                request_checksum_calculation="when_required",
                response_checksum_validation="when_required",
            ),
        )
        bucket, n, blob = "bench", args.objects, os.urandom(args.size)
        client.create_bucket(Bucket=bucket)

        def phase(label: str, fn: Callable[[int], object]) -> list[object]:
            started = time.perf_counter()
            with ThreadPoolExecutor(args.threads) as pool:
                out = list(pool.map(fn, range(n)))
            print(f"  {label:<44} {time.perf_counter() - started:6.2f} s", flush=True)
            return out

        print(f"{n} objects of {args.size:,} bytes, {args.threads} threads:")
        phase(
            "put_object (stage, or the plain write)",
            lambda i: client.put_object(Bucket=bucket, Key=f"s/{i}", Body=blob),
        )
        src = {"Bucket": bucket}
        phase(
            "managed copy (HEAD + CopyObject)",
            lambda i: client.copy({**src, "Key": f"s/{i}"}, bucket, f"f/{i}"),
        )
        phase(
            "copy_object (one request)",
            lambda i: client.copy_object(
                Bucket=bucket, Key=f"g/{i}", CopySource={**src, "Key": f"s/{i}"}
            ),
        )
        phase(
            "delete_object, one per key",
            lambda i: client.delete_object(Bucket=bucket, Key=f"g/{i}"),
        )
        started = time.perf_counter()
        for first in range(0, n, 1000):
            keys = [{"Key": f"f/{i}"} for i in range(first, min(n, first + 1000))]
            client.delete_objects(Bucket=bucket, Delete={"Objects": keys})
        print(
            f"  {'delete_objects, 1000 keys a request':<44} {time.perf_counter() - started:6.2f} s"
        )

        def start(i: int) -> tuple[str, str]:
            upload = client.create_multipart_upload(Bucket=bucket, Key=f"m/{i}")["UploadId"]
            etag = client.upload_part(
                Bucket=bucket, Key=f"m/{i}", UploadId=upload, PartNumber=1, Body=blob
            )["ETag"]
            return upload, etag

        uploads = phase("multipart: create + one part (stage)", start)
        phase(
            "multipart: complete (publish)",
            lambda i: client.complete_multipart_upload(
                Bucket=bucket,
                Key=f"m/{i}",
                UploadId=uploads[i][0],  # type: ignore[index]
                MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": uploads[i][1]}]},
            ),
        )  # type: ignore[index]
    finally:
        server.stop()


if __name__ == "__main__":
    main()
