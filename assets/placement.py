"""Where a step runs. GPU-heavy steps (the classes that declare `needs_gpu`: pretrained audio backbones,
neural training) carry the `gpu` pool, so
that a single-GPU machine runs one of them at a time (the limit is set in dagster.yaml, `concurrency.pools`),
and a Kubernetes GPU request, which `k8s_job_executor` turns into the step pod's resource limits. The same
definitions run on a laptop, a GPU box and a cluster; only the executor differs (pipelines/executors.py)."""

GPU_POOL = "gpu"
K8S_GPU_REQUEST = {"dagster-k8s/config": {"container_config": {"resources": {"limits": {"nvidia.com/gpu": "1"}}}}}


def placement(gpu: bool) -> dict:
    """Keyword arguments for `dg.asset` / `dg.multi_asset`: the `gpu` pool and the Kubernetes GPU request when
    `gpu`, nothing otherwise. Callers pass `needs_gpu and experiment.uses_gpu_pool()`: on a machine without a
    GPU nothing joins the pool, so no step ever waits for a GPU slot there."""
    return {"pool": GPU_POOL, "op_tags": K8S_GPU_REQUEST} if gpu else {}


def op_placement(gpu: bool) -> dict:
    """`placement` for `dg.op` (whose tag argument is `tags`)."""
    return {"pool": GPU_POOL, "tags": K8S_GPU_REQUEST} if gpu else {}
