"""`musicrec run`: materialise an experiment through Dagster, rerunning only what is missing or stale.

Runs left "in progress" by a process that died are marked failed and their concurrency slots freed first
(`pipelines.recovery`). A run has two Dagster runs: the `embed` job (catalog tables and every backbone
table: ingestion sees new files, and the embedding runner embeds only new or changed catalog batches), then
the assets of the main job that are missing or stale after it (`pipelines.staleness`). Both are recorded in
the Dagster instance of $DAGSTER_HOME, else of `<storage>/dagster`, so `dagster dev` shows them. Each step's
wall seconds go to `<storage>/reports/run_steps.md` (`pipelines.timings`).
"""
from __future__ import annotations

import os
import resource
import shutil
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import dagster as dg

from assets.experiment import REPO_ROOT, Experiment
from catalog.io import remove_orphan_temp_files
from pipelines.definitions import EXPERIMENT_VARIABLE, MAIN_JOB, build_definitions
from pipelines.recovery import pool_report, recover_dead_runs, run_tags, watching_pools
from pipelines.staleness import STORAGE_TAG, outdated_assets
from pipelines.timings import step_seconds, write_step_report


def instance_for(experiment: Experiment) -> dg.DagsterInstance:
    """The Dagster instance of $DAGSTER_HOME, else `<storage>/dagster` (created with the repository's
    dagster.yaml)."""
    home = Path(os.environ.get("DAGSTER_HOME") or experiment.storage / "dagster")
    home.mkdir(parents=True, exist_ok=True)
    if not (home / "dagster.yaml").exists():
        shutil.copyfile(REPO_ROOT / "dagster.yaml", home / "dagster.yaml")
    os.environ["DAGSTER_HOME"] = str(home)
    return dg.DagsterInstance.get()


def apply_memory_budget(experiment: Experiment) -> None:
    """Cap this process's data size at the experiment's `memory_budget_mb` (RLIMIT_DATA; the processes of a
    multiprocess executor inherit it): a step that would need more fails with MemoryError, which `_failure`
    names, instead of the machine swapping or the kernel killing the whole run."""
    if experiment.memory_budget_mb is not None:
        limit = experiment.memory_budget_mb * 2**20
        resource.setrlimit(resource.RLIMIT_DATA, (limit, resource.getrlimit(resource.RLIMIT_DATA)[1]))


def report_path(experiment: Experiment) -> Path:
    return experiment.storage / "reports" / "report.md"


def execute(defs: dg.Definitions, experiment: Experiment, experiment_file: Path | None, job: str,
            instance: dg.DagsterInstance, tags: dict[str, str], assets: list[dg.AssetKey] | None = None):
    """Run `job` (only `assets` when given) with the experiment's executor: in this process for `in_process`,
    else through Dagster's executor, whose workers rebuild the job from `experiment_file`. The run's result."""
    if experiment.executor == "in_process":
        return defs.resolve_job_def(job).execute_in_process(instance=instance, raise_on_error=False, tags=tags,
                                                            asset_selection=assets)
    if experiment_file is None:
        raise ValueError(f"executor {experiment.executor} needs the experiment file (its workers rebuild the job "
                         "from it)")
    path = str(Path(experiment_file).resolve())
    reconstructable = dg.build_reconstructable_job("pipelines.definitions", "job_of", reconstructable_args=(path, job))
    previous = os.environ.get(EXPERIMENT_VARIABLE)
    os.environ[EXPERIMENT_VARIABLE] = path  # the workers' pipelines.definitions then builds this experiment once
    try:
        return dg.execute_job(reconstructable, instance=instance, tags=tags, asset_selection=assets,
                              raise_on_error=False)
    finally:
        if previous is None:
            os.environ.pop(EXPERIMENT_VARIABLE)
        else:
            os.environ[EXPERIMENT_VARIABLE] = previous


def run_experiment(experiment: Experiment, instance: dg.DagsterInstance,
                   say: Callable[[str], None] = print, experiment_file: Path | None = None) -> set[dg.AssetKey]:
    """Materialise `experiment` in `instance` with the experiment's executor (any but `in_process` needs
    `experiment_file`); returns the asset keys materialised by the second run (empty when everything was up to
    date). RuntimeError when a run fails."""
    defs = build_definitions(experiment)
    recover_dead_runs(instance, say)
    orphans = remove_orphan_temp_files(experiment.storage) if experiment.storage.exists() else []
    if orphans:
        say(f"musicrec: removed {len(orphans)} temp file(s) left by killed runs, e.g. {orphans[0]}")
    for line in pool_report(instance):
        say(f"musicrec: {line}")
    tags = {**run_tags(), STORAGE_TAG: str(experiment.storage)}
    say(f"musicrec: experiment {experiment.name}: catalog and embeddings")
    steps, wall = {}, {}
    with watching_pools(instance, say), _timed("embed", wall):
        embed = execute(defs, experiment, experiment_file, "embed", instance, tags)
    steps["embed"] = step_seconds(instance, embed.run_id)
    write_step_report(steps_path(experiment), steps, wall)
    if not embed.success:
        raise RuntimeError(f"the embed run {embed.run_id} failed: {_failure(embed)}")
    outdated = outdated_assets(defs, instance, MAIN_JOB, tables=experiment.storage / "tables",
                               storage=str(experiment.storage))
    if not outdated:
        say("musicrec: every asset is up to date")
        return outdated
    say(f"musicrec: materialising {len(outdated)} missing or stale asset(s)")
    with watching_pools(instance, say), _timed(MAIN_JOB, wall):
        result = execute(defs, experiment, experiment_file, MAIN_JOB, instance, tags, sorted(outdated))
    steps[MAIN_JOB] = step_seconds(instance, result.run_id)
    write_step_report(steps_path(experiment), steps, wall)
    slowest = sorted(steps[MAIN_JOB].items(), key=lambda kv: -kv[1])[:3]
    say(f"musicrec: {len(steps[MAIN_JOB])} steps in {wall[MAIN_JOB]:.0f} s; slowest "
        + ", ".join(f"{key} {seconds:.0f} s" for key, seconds in slowest)
        + f" (every step: {steps_path(experiment)})")
    if not result.success:
        raise RuntimeError(f"run {result.run_id} failed: {_failure(result)}")
    return outdated


def steps_path(experiment: Experiment) -> Path:
    return experiment.storage / "reports" / "run_steps.md"


@contextmanager
def _timed(name: str, wall: dict[str, float]) -> Iterator[None]:
    """Store the wall seconds of the block under `name` in `wall` (also when it raises)."""
    start = time.perf_counter()
    try:
        yield
    finally:
        wall[name] = time.perf_counter() - start


def _failure(result) -> str:
    """The failed steps of a run and the messages of the errors that caused them (not Dagster's wrapper)."""
    lines = []
    for event in result.all_events:
        if event.is_step_failure:
            error = event.step_failure_data.error
            while error.cause is not None and (error.cls_name or "").startswith("Dagster"):
                error = error.cause
            budget = " (over the experiment's memory_budget_mb)" if error.cls_name == "MemoryError" else ""
            lines.append(f"step {event.step_key}: {error.message.strip()}{budget}")
    return "; ".join(lines) or "see the run log"
