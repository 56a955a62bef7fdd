"""How long each step of a Dagster run took, from the run's event log, and the run's step table in Markdown.

`musicrec run` writes `<storage>/reports/run_steps.md` after each run (the embed run, then the main run): one row
per step with its wall seconds, slowest first, and the peak resident memory of the run's processes.
"""
from __future__ import annotations

import resource
from pathlib import Path

import dagster as dg

from catalog.io import atomic_path


def step_seconds(instance: dg.DagsterInstance, run_id: str) -> dict[str, float]:
    """Wall seconds from each step's start to its success or failure (the last attempt's end, so a retried
    step counts its retries); steps that never ended are left out."""
    starts, ends = {}, {}
    for entry in instance.all_logs(run_id):
        event = entry.dagster_event
        if event is None or event.step_key is None:
            continue
        if event.event_type == dg.DagsterEventType.STEP_START:
            starts.setdefault(event.step_key, entry.timestamp)
        elif event.event_type in (dg.DagsterEventType.STEP_SUCCESS, dg.DagsterEventType.STEP_FAILURE):
            ends[event.step_key] = entry.timestamp
    return {key: ends[key] - starts[key] for key in starts if key in ends}


def peak_rss_mib() -> float:
    """Peak resident memory (MiB) of this process and, separately, its largest finished child process, the
    larger of the two (Linux reports ru_maxrss in KiB)."""
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return max(own, children) / 1024


def step_table(runs: dict[str, dict[str, float]], wall: dict[str, float]) -> str:
    """Markdown: per run (name -> step seconds) its steps slowest first, then the run's wall seconds."""
    lines = ["| run | step | wall s |", "|---|---|---|"]
    for name, steps in runs.items():
        for key, seconds in sorted(steps.items(), key=lambda kv: -kv[1]):
            lines.append(f"| {name} | {key} | {seconds:.1f} |")
        lines.append(f"| {name} | **whole run** | {wall[name]:.1f} |")
    return "\n".join(lines)


def write_step_report(path: Path, runs: dict[str, dict[str, float]], wall: dict[str, float]) -> None:
    """`path` (Markdown): the step table and the peak RSS of the process that ran `musicrec run`."""
    text = (f"# Steps of the last `musicrec run`\n\nPeak RSS of the run's process: {peak_rss_mib():.0f} MiB "
            f"(steps in worker processes: the largest finished worker).\n\n{step_table(runs, wall)}\n")
    with atomic_path(path) as tmp:
        tmp.write_text(text)
