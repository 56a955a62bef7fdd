"""Runs that recover: a run whose process died (kill -9, out of memory, a lost machine) must not keep its
concurrency slots, or every later run waits forever for the `gpu` pool.

Every run `musicrec run` starts carries the host, pid and start time of its process (`run_tags`). Before each
run, `recover_dead_runs` marks any run of this host that is still "in progress" but whose process is gone as
failed, and frees every slot held by a run that is no longer in progress. `pool_report` says who holds what;
`watching_pools` says in the run log which step waits for which holder, and recovers a holder that dies
while others wait.
Runs launched by the daemon are watched by Dagster's own run monitoring (dagster.yaml `run_monitoring`).
"""
from __future__ import annotations

import os
import socket
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import dagster as dg
import psutil

HOST_TAG, PID_TAG, STARTED_TAG = "musicrec/host", "musicrec/pid", "musicrec/process_started"
IN_PROGRESS = (dg.DagsterRunStatus.STARTED, dg.DagsterRunStatus.STARTING, dg.DagsterRunStatus.CANCELING)


def run_tags() -> dict[str, str]:
    """Tags identifying the process that executes a run in process (this one)."""
    return {HOST_TAG: socket.gethostname(), PID_TAG: str(os.getpid()),
            STARTED_TAG: f"{psutil.Process().create_time():.3f}"}


def process_alive(tags: dict[str, str]) -> bool | None:
    """Whether the process named by a run's tags still runs: None when the run is not ours to judge (no tags,
    another host); a pid reused by another process counts as dead (its start time differs)."""
    if tags.get(HOST_TAG) != socket.gethostname() or PID_TAG not in tags:
        return None
    try:
        started = psutil.Process(int(tags[PID_TAG])).create_time()
    except (psutil.NoSuchProcess, ValueError):
        return False
    return abs(started - float(tags.get(STARTED_TAG, started))) < 1.0


def recover_dead_runs(instance: dg.DagsterInstance, say: Callable[[str], None] = print) -> list[str]:
    """Mark this host's in-progress runs whose process is gone as failed and free the concurrency slots of
    every run that is not in progress any more; returns the ids of the runs marked failed."""
    failed = []
    for record in instance.get_run_records(dg.RunsFilter(statuses=list(IN_PROGRESS))):
        run = record.dagster_run
        if process_alive(run.tags) is False:
            instance.report_run_failed(run, f"musicrec: the process of this run (pid {run.tags[PID_TAG]} on "
                                            f"{run.tags[HOST_TAG]}) is gone; marked failed, its slots freed")
            failed.append(run.run_id)
            say(f"musicrec: run {run.run_id} died with its process (pid {run.tags[PID_TAG]}): marked failed")
    storage = instance.event_log_storage
    if storage.supports_global_concurrency_limits:
        for run_id in storage.get_concurrency_run_ids():
            run = instance.get_run_by_id(run_id)
            if run is None or run.status not in IN_PROGRESS:
                storage.free_concurrency_slots_for_run(run_id)
                say(f"musicrec: freed the concurrency slots of finished run {run_id}")
    return failed


def pool_report(instance: dg.DagsterInstance) -> list[str]:
    """One line per concurrency pool in use: slots claimed of the limit, and the runs holding them."""
    storage = instance.event_log_storage
    if not storage.supports_global_concurrency_limits:
        return []
    lines = []
    for pool in sorted(storage.get_concurrency_keys()):
        info = storage.get_concurrency_info(pool)
        holders = sorted({slot.run_id for slot in info.claimed_slots})
        if holders or info.pending_steps:
            lines.append(f"pool {pool}: {len(info.claimed_slots)}/{info.slot_count} slot(s) held by run(s) "
                         f"{', '.join(holders) or '-'}; {len(info.pending_steps)} step(s) waiting")
    return lines


@contextmanager
def watching_pools(instance: dg.DagsterInstance, say: Callable[[str], None] = print,
                   interval_s: float = 5.0) -> Iterator[None]:
    """While the block runs, every `interval_s`: a step waiting for a pool slot is said once, in its run's log
    (an engine event) and through `say`, naming the runs that hold the slots; and a holder whose process has
    died is marked failed and its slots freed, so a run never waits forever behind a dead one."""
    storage = instance.event_log_storage
    stop = threading.Event()
    told: set[tuple[str, str]] = set()

    def watch() -> None:
        while not stop.wait(interval_s):
            waiting = False
            for pool in storage.get_concurrency_keys():
                info = storage.get_concurrency_info(pool)
                holders = ", ".join(sorted({slot.run_id for slot in info.claimed_slots})) or "none"
                for step in info.pending_steps:
                    if step.assigned_timestamp is not None:  # it holds a slot: not waiting
                        continue
                    waiting = True
                    if (step.run_id, step.step_key) not in told:
                        told.add((step.run_id, step.step_key))
                        message = (f"step {step.step_key} of run {step.run_id} waits for a slot of pool {pool}, "
                                   f"held by run(s) {holders}")
                        run = instance.get_run_by_id(step.run_id)
                        if run is not None:
                            instance.report_engine_event(message, run, step_key=step.step_key)
                        say(f"musicrec: {message}")
            if waiting:
                recover_dead_runs(instance, say)

    if not storage.supports_global_concurrency_limits:
        yield
        return
    thread = threading.Thread(target=watch, name="musicrec-pool-watch", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=interval_s + 5)
