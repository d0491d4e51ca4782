"""What a Kubernetes deployment changes in the code location (``deploy/k8s/``,
docs/deploying.md), chosen from the environment of the code server; unset, nothing changes.

- ``RECS_EXECUTOR=k8s``: every run's steps execute in Kubernetes Jobs of their own
  (``dagster_k8s.k8s_job_executor``) instead of forked processes inside the run's pod (the
  project's ``assets.platform.executor``). Each step pod then takes its own op's
  ``dagster-k8s/config``.
- ``RECS_K8S_GPU=1``: ``trained_model``'s step pod asks for one GPU and lands on a GPU node
  (``nvidia.com/gpu: 1`` as its limit, the node selector and toleration below). It takes
  effect with the step executor above (with one pod per run, op tags are not applied).
"""

from __future__ import annotations

import os

from recs_pipeline.infra.project_config import EnvironmentSettingError

EXECUTOR_ENV = "RECS_EXECUTOR"
GPU_ENV = "RECS_K8S_GPU"
K8S_CONFIG_TAG = "dagster-k8s/config"
GPU_RESOURCE = "nvidia.com/gpu"
# The label NVIDIA's GPU feature discovery (GPU operator) puts on GPU nodes, and the taint GPU
# node pools commonly carry so that only pods asking for a GPU land there.
GPU_NODE_SELECTOR = {"nvidia.com/gpu.present": "true"}
GPU_TOLERATIONS = [{"key": GPU_RESOURCE, "operator": "Exists", "effect": "NoSchedule"}]


_TRUE = ("1", "true", "yes", "on")
_FALSE = ("", "0", "false", "no", "off")


def _flag(name: str) -> bool:
    value = os.environ.get(name, "").strip().lower()
    if value not in _TRUE + _FALSE:
        # Not read as "off": a typo would silently schedule training without its GPU.
        raise EnvironmentSettingError(
            f"{name}={os.environ[name]!r} is not allowed: it must be one of"
            f" {', '.join(_TRUE)} (on) or {', '.join(_FALSE[1:])} (off), or unset"
        )
    return value in _TRUE


def gpu_op_tags() -> dict:
    """Op tags of ``trained_model``: the GPU node's pod config when ``RECS_K8S_GPU`` asks for
    it, none otherwise."""
    if not _flag(GPU_ENV):
        return {}
    return {
        K8S_CONFIG_TAG: {
            "container_config": {
                "resources": {
                    "requests": {GPU_RESOURCE: 1},
                    "limits": {GPU_RESOURCE: 1},
                }
            },
            "pod_spec_config": {
                "node_selector": GPU_NODE_SELECTOR,
                "tolerations": GPU_TOLERATIONS,
            },
        }
    }


def deployment_executor():
    """The code location's executor: the project's primed forkserver executor, or one
    Kubernetes Job per step with ``RECS_EXECUTOR=k8s``."""
    value = os.environ.get(EXECUTOR_ENV, "").strip().lower()
    if value in ("", "forkserver", "multiprocess"):
        from assets.platform.executor import forkserver_executor

        return forkserver_executor
    if value == "k8s":
        from dagster_k8s import k8s_job_executor

        return k8s_job_executor
    raise EnvironmentSettingError(
        f"{EXECUTOR_ENV}={value!r} is not allowed: it must be one of forkserver (the default), k8s"
    )
