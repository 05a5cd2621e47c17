"""``make bench``: every benchmark of the platform, unattended, then one table.

Runs each bench script as its own process (output shown as it goes), picks its figures
out of what it printed, and ends with a table of figure, value and the command behind
it, headed with the date and the machine. Bounded: each step has a time limit and the
whole run stays under twenty minutes on a 2-core machine.
"""

from __future__ import annotations

import datetime as dt
import os
import platform
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PYTHON = str(ROOT / ".venv" / "bin" / "python")


@dataclass(frozen=True)
class Step:
    title: str
    args: tuple[str, ...]
    timeout_s: float


STEPS = (
    Step(
        "CPS ramp",
        ("bench/cps.py", "--start", "100", "--step", "100", "--max", "700", "--step-seconds", "10"),
        180,
    ),
    Step(
        "held calls",
        ("bench/held_calls.py", "--calls", "2000", "--rate", "100", "--hold-s", "60"),
        200,
    ),
    Step("API action lookup", ("bench/api.py", "--requests", "2000"), 90),
    Step(
        "CDR page over 1M rows, SQLite",
        ("bench/records.py", "--database", "sqlite", "--runs", "100"),
        180,
    ),
    Step(
        "CDR page over 1M rows, PostgreSQL",
        ("bench/records.py", "--database", "postgresql", "--runs", "100"),
        240,
    ),
    Step("webhooks", ("bench/webhooks.py", "--events", "10000"), 120),
    Step(
        "sessions",
        ("bench/sessions.py", "--pool", "1000", "--sessions", "100000", "--runs", "1000"),
        600,
    ),
    Step(
        "cluster",
        ("bench/cluster.py", "--start", "100", "--step", "100", "--max", "1000"),
        720,
    ),
)


def run(step: Step) -> str:
    command = " ".join([".venv/bin/python", *step.args])
    print(f"\n== {step.title}: {command}", flush=True)
    started = time.monotonic()
    try:
        done = subprocess.run(
            [PYTHON, *step.args],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=step.timeout_s,
            check=False,
        )
        output = done.stdout + done.stderr
        if done.returncode != 0:
            output += f"\n(exit status {done.returncode})"
    except subprocess.TimeoutExpired as exc:
        output = (exc.stdout or b"").decode() if isinstance(exc.stdout, bytes) else exc.stdout or ""
        output += f"\n(stopped after {step.timeout_s:.0f} s)"
    print(output.rstrip(), flush=True)
    print(f"   ({time.monotonic() - started:.0f} s)", flush=True)
    return output


def find(pattern: str, text: str) -> list[tuple[str, ...]]:
    return [m.groups() for m in re.finditer(pattern, text, re.MULTILINE)]


def figures(step: Step, output: str) -> list[tuple[str, str]]:
    match step.title:
        case "CPS ramp":
            rate = find(r"highest sustained rate: (\d+)", output)
            steps = find(r"^ +(\d+) +\d+ +\d+ +[\d.]+% +([\d.na]+) +([\d.na]+)$", output)
            return [
                ("sustained CPS (>= 99.9 % success)", rate[0][0] if rate else "n/a"),
                *(
                    (f"post-dial delay added p50 / p99 at {cps} CPS", f"{p50} / {p99} ms")
                    for cps, p50, p99 in steps
                ),
            ]
        case "held calls":
            done = find(r"completed: (\d+), failed: (\d+)", output)
            peak = find(r"peak concurrent calls in callmask: (\d+)", output)
            value = (
                f"{peak[0][0]} up at once, {done[0][0]} completed, {done[0][1]} failed"
                if done and peak
                else "n/a"
            )
            return [("concurrent 60 s calls held", value)]
        case "API action lookup":
            return [
                (f"action lookup p50 / p99, {store}", f"{p50} / {p99} ms")
                for store, p50, p99 in find(
                    r"action lookup, (\w+): p50 ([\d.]+) ms, p99 ([\d.]+) ms", output
                )
            ] or [("action lookup", "n/a")]
        case "CDR page over 1M rows, SQLite" | "CDR page over 1M rows, PostgreSQL":
            database = step.title.rsplit(", ", 1)[1]
            return [(f"filtered CDR page over 1M rows, {database}", records_p99(output))]
        case "webhooks":
            rates = find(r"-> (\d+) deliveries/s", output)
            latency = find(
                r"(\w+) enqueue->delivered latency ms: p50 ([\d.]+) .*p99 ([\d.]+)", output
            )
            out = [("webhook deliveries/s (burst)", rates[0][0] if rates else "n/a")]
            out += [
                (f"webhook enqueue->delivered p50 / p99 ({name})", f"{p50} / {p99} ms")
                for name, p50, p99 in latency
            ]
            return out
        case "sessions":
            out = [
                (f"{what} p50 / p99, {store} (100k open sessions)", f"{p50} / {p99} ms")
                for what, store, p50, p99 in find(
                    r"^(session create|inbound session lookup), (\w+): p50 ([\d.]+) ms, "
                    r"p99 ([\d.]+) ms",
                    output,
                )
            ]
            rate = find(r"highest sustained rate: (\d+)", output)
            out.append(("session-routed CPS (>= 99.9 % success)", rate[0][0] if rate else "n/a"))
            return out
        case "cluster":
            return cluster_figures(output)
    return []


def cluster_figures(output: str) -> list[tuple[str, str]]:
    skipped = find(r"^cluster bench SKIPPED: (.*)$", output)
    if skipped:
        return [("cluster (Kamailio + nodes on PostgreSQL)", f"skipped: {skipped[0][0]}")]
    out = [
        (f"CPS through Kamailio, {nodes} (>= 99.9 % success, PostgreSQL)", value)
        for nodes, value in find(
            r"^sustained CPS through Kamailio, (one node|two nodes) \(.*\): (.*)$", output
        )
    ]
    out += [
        (f"post-dial delay at the carrier p50 / p99, {path}", f"{p50} / {p99} ms")
        for path, p50, p99 in find(
            r"^post-dial delay at the carrier .*, (directly to a node|through Kamailio): "
            r"p50 ([\d.]+) ms, p99 ([\d.]+) ms",
            output,
        )
    ]
    added = find(r"^Kamailio's added delay .*: p50 (-?[\d.]+) ms, p99 (-?[\d.]+) ms", output)
    if added:
        out.append(("Kamailio's added delay p50 / p99", f"{added[0][0]} / {added[0][1]} ms"))
    machine = find(r"^machine: (.*)$", output)
    if machine:
        out.append(("cluster figures: what this machine limits", machine[0][0]))
    return out or [("cluster (Kamailio + nodes on PostgreSQL)", "n/a")]


def records_p99(output: str) -> str:
    """The median and the worst of the queries' p99 in bench/records.py's table."""
    rows = find(r"^(.{44}) +([\d.]+) +([\d.]+) +([\d.]+) +[\d,]+$", output)
    if not rows:
        return "n/a"
    worst = max(rows, key=lambda row: float(row[2]))
    median = sorted(float(row[2]) for row in rows)[len(rows) // 2]
    return (
        f"p99 median of {len(rows)} queries {median:.1f} ms, "
        f"worst {float(worst[2]):.1f} ms ({worst[0].strip()})"
    )


def machine() -> str:
    model = "unknown CPU"
    with open("/proc/cpuinfo") as cpuinfo:
        for line in cpuinfo:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    memory_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return f"{os.cpu_count()} cores ({model}), {memory_gib:.0f} GiB, {platform.platform()}"


def main() -> None:
    started = time.monotonic()
    table: list[tuple[str, str, str]] = []
    for step in STEPS:
        output = run(step)
        command = " ".join([".venv/bin/python", *step.args])
        table += [(name, value, command) for name, value in figures(step, output)]
    now = dt.datetime.now(dt.UTC)
    print(f"\ncallmask benchmarks, {now:%Y-%m-%d %H:%M} UTC, {machine()}")
    total_s = time.monotonic() - started
    print(f"load average at the end: {os.getloadavg()[0]:.2f}; total {total_s:.0f} s\n")
    width = max(len(name) for name, _, _ in table)
    print(f"| {'figure':<{width}} | value | command |")
    print(f"|{'-' * (width + 2)}|-------|---------|")
    for name, value, command in table:
        print(f"| {name:<{width}} | {value} | `{command}` |")


if __name__ == "__main__":
    sys.exit(main())
