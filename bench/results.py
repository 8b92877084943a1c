"""Scenarios of the transfer benchmarks: their contenders' medians over interleaved
rounds, their targets, and the markdown tables ``bench/transfer.py`` and
``bench/transfer_cloud.py`` write."""

from __future__ import annotations

import statistics
from collections.abc import Callable
from dataclasses import dataclass, field

from common import MB, GiB, Measure, MiB, machine_markdown

RSS_LIMIT_MB = 256.0


@dataclass
class Target:
    label: str
    value: float | None
    limit: float
    unit: str = "x"

    @property
    def met(self) -> bool | None:
        return None if self.value is None else self.value <= self.limit


@dataclass
class Scenario:
    key: str
    title: str
    size: int
    results: list[Measure] = field(default_factory=list)
    targets: list[Target] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def get(self, tool: str) -> Measure | None:
        return next((m for m in self.results if m.tool == tool), None)

    def ratio(self, tool: str, peer: str) -> float | None:
        a, b = self.get(tool), self.get(peer)
        if not a or not b or not a.ok or not b.ok or b.seconds <= 0:
            return None
        return a.seconds / b.seconds


def rounds(contenders: list[Callable[[], Measure]], repeat: int) -> list[Measure]:
    """``repeat`` interleaved rounds (A B C, A B C, ...); each one's median
    time counts.

    Peak RSS is the largest seen; a contender fails if any of its runs failed.
    """
    runs: list[list[Measure]] = [[] for _ in contenders]
    for r in range(repeat):
        if repeat > 1:
            print(f"   -- round {r + 1} of {repeat}", flush=True)
        for i, run in enumerate(contenders):
            runs[i].append(run())
    out = []
    for ms in runs:
        times = [m.seconds for m in ms]
        rss = [m.peak_rss_mb for m in ms if m.peak_rss_mb]
        failed = [m for m in ms if not m.ok]
        merged = Measure(
            ms[0].tool,
            statistics.median(times),
            max(rss) if rss else None,
            not failed,
            failed[0].detail if failed else "",
        )
        merged.extra["runs"] = [round(t, 2) for t in times]
        for phase in ("receive_s", "complete_s", "publish_s"):
            values = [float(m.extra[phase]) for m in ms if phase in m.extra]  # type: ignore[arg-type]
            if values:
                merged.extra[phase] = statistics.median(values)
        out.append(merged)
    return out


def show(m: Measure, size: int) -> None:
    """One contender's run, as a line on the terminal."""
    rss = f"{m.peak_rss_mb:7.1f} MB" if m.peak_rss_mb else "      ?"
    state = "ok" if m.ok else "FAILED"
    print(
        f"   {m.tool:<44} {m.seconds:8.2f} s {size / MB / m.seconds:8.1f} MB/s "
        f"peak RSS {rss}  {state}",
        flush=True,
    )
    if not m.ok:
        print("      " + m.detail.strip().replace("\n", "\n      "), flush=True)


def size_label(size: int) -> str:
    return f"{size / GiB:g} GiB" if size >= GiB // 4 else f"{size / MiB:g} MiB"


def fmt_ratio(ratio: float | None) -> str:
    return "n/a" if ratio is None else f"{ratio:.2f}"


def table(sc: Scenario) -> str:
    x = sc.results[0]
    many = any(len(m.extra.get("runs", [])) > 1 for m in sc.results)  # type: ignore[arg-type]
    s3 = any("complete_s" in m.extra for m in sc.results)
    head = "| contender | wall time | throughput | peak RSS | xview2 time ÷ this |"
    rule = "|---|---:|---:|---:|---:|"
    if s3:
        head += " moto: receiving | moto: completing |"
        rule += "---:|---:|"
    if many:
        head, rule = head + " every run |", rule + "---|"
    rows = [f"**{sc.title}**", "", head, rule]
    for m in sc.results:
        mbps = f"{sc.size / MB / m.seconds:.0f} MB/s" if m.ok else "—"
        rss = f"{m.peak_rss_mb * MiB / MB:.0f} MB" if m.peak_rss_mb else "?"
        ratio = "—" if m is x or sc.key == "rss" else fmt_ratio(sc.ratio(x.tool, m.tool))
        status = "" if m.ok else " (FAILED)"
        row = f"| {m.tool}{status} | {m.seconds:.2f} s | {mbps} | {rss} | {ratio} |"
        if s3:
            for phase in ("receive_s", "complete_s"):
                value = m.extra.get(phase)
                row += f" {value:.2f} s |" if isinstance(value, float) else " ? |"
        if many:
            runs = m.extra.get("runs", [])
            row += " " + ", ".join(f"{t:.2f}" for t in runs) + " |"  # type: ignore[attr-defined]
        rows.append(row)
    for note in sc.notes:
        rows += ["", note]
    return "\n".join(rows)


def targets_table(scenarios: list[Scenario]) -> str:
    rows = ["| target | measured | limit | met |", "|---|---:|---:|:---:|"]
    for sc in scenarios:
        for t in sc.targets:
            value = (
                "n/a"
                if t.value is None
                else (
                    f"{t.value:.0f}{t.unit}" if t.unit.strip() == "MB" else f"{t.value:.2f}{t.unit}"
                )
            )
            limit = f"{t.limit:.0f}{t.unit}" if t.unit.strip() == "MB" else f"{t.limit:g}{t.unit}"
            met = {True: "yes", False: "**no**", None: "n/a"}[t.met]
            rows.append(f"| {t.label} | {value} | {limit} | {met} |")
    return "\n".join(rows)


def section_head(heading: str, command_line: str, info: dict[str, str]) -> list[str]:
    """The opening lines of a generated section: its heading, the command that made it,
    the machine, and the start of the "How it is measured" list."""
    return [
        heading,
        "",
        command_line,
        "",
        "Machine:",
        "",
        machine_markdown(info),
        "",
        "How it is measured:",
        "",
    ]
