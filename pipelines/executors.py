"""The executor every job of an experiment runs with, named by the experiment file's `executor` key:

- `in_process` (default): every step in the run's own process; the demo, CI and the web UI on one machine.
- `multiprocess`: one process per step; on a GPU box the `gpu` pool (dagster.yaml) keeps GPU steps one at a time.
- `k8s`: one Kubernetes job per step (`dagster_k8s.k8s_job_executor`, from `pip install -e '.[k8s]'`); GPU
  steps request `nvidia.com/gpu` through their `dagster-k8s/config` tags (assets/placement.py).
"""
import dagster as dg

EXECUTORS: tuple[str, ...] = ("in_process", "multiprocess", "k8s")


def executor_named(name: str) -> dg.ExecutorDefinition:
    """The executor called `name` (one of EXECUTORS). ValueError for an unknown name, RuntimeError when `k8s`
    is asked for and dagster-k8s is not installed."""
    if name == "in_process":
        return dg.in_process_executor
    if name == "multiprocess":
        return dg.multiprocess_executor
    if name == "k8s":
        try:
            from dagster_k8s import k8s_job_executor
        except ImportError as error:
            raise RuntimeError("executor k8s needs dagster-k8s: pip install -e '.[k8s]'") from error
        return k8s_job_executor
    raise ValueError(f"executor must be one of {list(EXECUTORS)}, got {name!r}")
