"""``--json`` on every command: event lines while it runs, then one final object."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from xview2_ingest.demo.server import SignedLinkServer


def xview2(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "xview2_ingest.cli", *args],
        capture_output=True,
        text=True,
        timeout=180,
        env={**os.environ, **(env or {})},
        stdin=subprocess.DEVNULL,
    )


def lines(run: subprocess.CompletedProcess[str]) -> list[dict[str, Any]]:
    """Every stdout line parsed; exactly the last one is final, the others are events."""
    parsed = [json.loads(line) for line in run.stdout.splitlines()]
    assert parsed, run.stderr
    *events, final = parsed
    assert final["final"] is True and final["exit_code"] == run.returncode, final
    assert all(e["type"] == "event" and "final" not in e for e in events), events[:3]
    assert all({"kind", "name", "done", "total", "detail", "elapsed"} <= set(e) for e in events)
    return parsed


def report_of(run: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    final = lines(run)[-1]
    assert final["type"] == "report", final
    return final["report"]


def catalog(root: Path, path: Path) -> Path:
    import hashlib

    path.write_text(
        json.dumps(
            {
                p.name: {"size": p.stat().st_size, "sha1": hashlib.sha1(p.read_bytes()).hexdigest()}
                for p in root.iterdir()
            }
        )
    )
    return path


def test_every_command_writes_events_then_one_final_report(
    server: SignedLinkServer, dataset, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    root, stats = dataset
    cat = str(catalog(root, tmp_path / "cat.json"))
    links = tmp_path / "links.txt"
    links.write_text(server.links_text())
    dest = str(tmp_path / "dest")
    common = ["--dest", dest, "--json"]

    run = xview2("ingest", "--links", str(links), "--catalog", cat, *common)
    assert run.returncode == 0, run.stderr
    parsed = lines(run)
    kinds = {(e["kind"], e["name"]) for e in parsed[:-1]}
    assert ("stage", "extract") in kinds and ("stage", "index") in kinds
    assert ("published", "train_images_labels_targets.tar.gz") in kinds
    received = sum(
        e["done"] for e in parsed if e.get("kind") == "bytes" and e["name"].startswith("test_")
    )
    size = (root / "test_images_labels_targets.tar.gz").stat().st_size
    assert received >= size  # download bytes (and extraction bytes) are all accounted for
    final = parsed[-1]
    assert final["command"] == "ingest" and final["ok"] is True
    assert final["report"]["download"]["files"][0]["status"] == "verified"
    assert final["report"]["index"]["pairs"] == sum(stats.pairs.values())
    assert "Signature" not in run.stdout and "Signature" not in run.stderr
    assert run.stderr.strip()  # the human summary stays on stderr

    run = xview2("download", "--links", str(links), "--catalog", cat, *common)
    assert {f["status"] for f in report_of(run)["files"]} == {"skipped"}

    run = xview2("status", "--catalog", cat, *common)
    states = {f["name"]: f["state"] for f in report_of(run)["files"]}
    assert states["train_images_labels_targets.tar.gz"] == "verified"
    assert not run.stderr

    run = xview2("extract", "--catalog", cat, *common)
    assert {a["status"] for a in report_of(run)["archives"]} == {"skipped"}

    run = xview2("index", *common)
    assert report_of(run)["images"] == 2 * sum(stats.pairs.values())

    run = xview2("stats", *common)
    assert report_of(run)["total"]["pairs"] == sum(stats.pairs.values())

    run = xview2("clean", *common)
    assert report_of(run)["discarded"] == []


def test_errors_that_end_a_command_are_a_final_json_object(tmp_path: Path) -> None:
    run = xview2("download", "https://127.0.0.1:1/x.tar.gz", "--dest", "s3://", "--json")
    assert run.returncode == 2
    (final,) = lines(run)
    assert final["type"] == "error" and final["error"]["type"] == "UsageError"
    assert "names no bucket" in final["error"]["message"]

    run = xview2("status", "--json", "--no-such-option")
    assert run.returncode == 2
    (final,) = lines(run)
    assert "--no-such-option" in final["error"]["message"]

    run = xview2("stats", "--json", "--dest", str(tmp_path))
    assert run.returncode == 1  # no index there: a failure, not a usage error
    (final,) = lines(run)
    assert final["command"] == "stats" and "xview2 index" in final["error"]["hint"]


def test_expired_links_give_a_final_report_with_exit_3(
    server: SignedLinkServer, tmp_path: Path
) -> None:
    links = tmp_path / "links.txt"
    links.write_text(server.links_text(ttl=-60))
    run = xview2("download", "--links", str(links), "--dest", str(tmp_path / "d"), "--json")
    assert run.returncode == 3
    report = report_of(run)
    assert {f["status"] for f in report["files"]} == {"expired"}
    assert all(f["error"]["exit_code"] == 3 for f in report["files"])
    assert "Signature" not in run.stdout


def test_demo_json_carries_the_statistics(tmp_path: Path) -> None:
    run = xview2("demo", "--dest", str(tmp_path / "demo"), "--pairs", "3", "--json")
    assert run.returncode == 0, run.stderr
    parsed = lines(run)
    assert any(e.get("kind") == "info" for e in parsed[:-1])
    final = parsed[-1]
    assert final["command"] == "demo"
    assert final["stats"]["total"]["pairs"] == final["report"]["index"]["pairs"] > 0


def test_completion_has_no_json_output() -> None:
    run = xview2("completion", "bash", "--json")
    assert run.returncode == 2
    (final,) = lines(run)
    assert final["type"] == "error"
