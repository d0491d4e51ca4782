"""The Kubernetes deployment in ``deploy/k8s/`` (issue 15, item 4), checked without a cluster.

Every file parses as the kinds a platform team applies and refers only to objects the
deployment defines; the instance's ``dagster.yaml`` passes Dagster's own schema, keeps the
project's concurrency settings and names the PostgreSQL storage exactly as
``python -m assets.platform.instance`` writes it; and the Kubernetes Job of a ``trained_model`` step
is built with dagster-k8s's own API from the run launcher's config and the op's tags: with
``RECS_K8S_GPU=1`` the step's pod asks for one GPU and lands on a GPU node, without it nothing
changes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from dagster._config import validate_config
from dagster._core.instance.config import dagster_instance_config
from dagster_k8s import K8sRunLauncher
from dagster_k8s.job import (
    DagsterK8sJobConfig,
    construct_dagster_k8s_job,
    get_user_defined_k8s_config,
)

from assets.platform.instance import storage_config, write_storage
from assets.platform.kubernetes import (
    GPU_NODE_SELECTOR,
    GPU_RESOURCE,
    GPU_TOLERATIONS,
    K8S_CONFIG_TAG,
)

ROOT = Path(__file__).resolve().parents[1]
K8S = ROOT / "deploy" / "k8s"
EXPECTED = {
    ("Namespace", "recs"),
    ("ServiceAccount", "recs-dagster"),
    ("Role", "recs-dagster"),
    ("RoleBinding", "recs-dagster"),
    ("ConfigMap", "recs-env"),
    ("ConfigMap", "dagster-instance"),
    ("ConfigMap", "dagster-workspace"),
    ("Secret", "recs-postgres"),
    ("Secret", "recs-object-store"),
    ("RayCluster", "recs-ray"),
    ("PersistentVolumeClaim", "recs-data"),
    ("Deployment", "recs-code-location"),
    ("Service", "recs-code-location"),
    ("Deployment", "recs-webserver"),
    ("Service", "recs-webserver"),
    ("Deployment", "recs-daemon"),
}


@pytest.fixture(scope="module")
def objects() -> dict[tuple[str, str], dict]:
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    found = {}
    for name in kustomization["resources"]:
        for doc in yaml.safe_load_all((K8S / name).read_text()):
            assert {"apiVersion", "kind", "metadata"} <= set(doc), (name, doc)
            key = (doc["kind"], doc["metadata"]["name"])
            assert key not in found, key
            found[key] = doc
    # Every file of the folder is applied.
    assert {p.name for p in K8S.glob("*.yaml")} == {
        *kustomization["resources"],
        "kustomization.yaml",
    }
    return found


def instance_yaml(objects) -> dict:
    return yaml.safe_load(objects["ConfigMap", "dagster-instance"]["data"]["dagster.yaml"])


def pod_specs(objects) -> dict[str, dict]:
    return {
        name: doc["spec"]["template"]["spec"]
        for (kind, name), doc in objects.items()
        if kind == "Deployment"
    }


def test_the_files_are_the_expected_objects(objects):
    assert set(objects) == EXPECTED
    namespaces = {doc["metadata"].get("namespace") for (kind, _), doc in objects.items()}
    assert namespaces == {None, "recs"}  # the Namespace itself has none


def test_pods_refer_only_to_objects_the_deployment_defines(objects):
    names = {(kind, name) for kind, name in objects}
    images = set()
    for deployment, spec in pod_specs(objects).items():
        assert ("ServiceAccount", spec["serviceAccountName"]) in names, deployment
        for volume in spec["volumes"]:
            if "configMap" in volume:
                assert ("ConfigMap", volume["configMap"]["name"]) in names
            if "persistentVolumeClaim" in volume:
                claim = volume["persistentVolumeClaim"]["claimName"]
                assert ("PersistentVolumeClaim", claim) in names
        volumes = {volume["name"] for volume in spec["volumes"]}
        for container in spec.get("initContainers", []) + spec["containers"]:
            images.add(container["image"])
            assert {m["name"] for m in container["volumeMounts"]} <= volumes
            refs = container["envFrom"]
            assert {"configMapRef": {"name": "recs-env"}} in refs, deployment
            assert {"secretRef": {"name": "recs-postgres"}} in refs, deployment
            assert {"secretRef": {"name": "recs-object-store"}} in refs, deployment
    env = objects["ConfigMap", "recs-env"]["data"]
    # Run and step pods start from the code server's image.
    assert images == {env["DAGSTER_CURRENT_IMAGE"]}
    # Services select their Deployment's pods.
    for name in ("recs-code-location", "recs-webserver"):
        labels = objects["Deployment", name]["spec"]["template"]["metadata"]["labels"]
        assert objects["Service", name]["spec"]["selector"].items() <= labels.items()
    assert objects["Deployment", "recs-daemon"]["spec"]["replicas"] == 1


def test_the_webserver_and_daemon_load_the_code_server(objects):
    workspace = yaml.safe_load(objects["ConfigMap", "dagster-workspace"]["data"]["workspace.yaml"])
    (entry,) = workspace["load_from"]
    server = entry["grpc_server"]
    service = objects["Service", server["host"]]
    assert server["port"] in {port["port"] for port in service["spec"]["ports"]}
    (code,) = pod_specs(objects)["recs-code-location"]["containers"]
    assert code["command"][:3] == ["dagster", "api", "grpc"]
    assert code["command"][code["command"].index("-m") + 1] == "assets.definitions"
    assert str(server["port"]) == code["command"][code["command"].index("-p") + 1]
    specs = pod_specs(objects)
    for name, command in (
        ("recs-webserver", "dagster-webserver"),
        ("recs-daemon", "dagster-daemon"),
    ):
        (container,) = specs[name]["containers"]
        assert container["command"][0] == command
        assert "/opt/dagster/workspace/workspace.yaml" in container["command"]
        # The instance's storage is created by one command before the server opens it.
        (setup,) = specs[name]["initContainers"]
        assert setup["command"] == ["python", "-m", "assets.platform.instance"]


def test_the_instance_is_postgres_with_the_projects_settings(objects, tmp_path):
    config = instance_yaml(objects)
    assert config["storage"] == storage_config("postgres")
    project = yaml.safe_load((ROOT / "dagster_home" / "dagster.yaml").read_text())
    for key in ("concurrency", "run_coordinator"):
        assert config[key] == project[key], key
    env = objects["ConfigMap", "recs-env"]["data"]
    assert env["RECS_INSTANCE"] == "postgres"
    secret = objects["Secret", "recs-postgres"]["stringData"]
    assert {"DAGSTER_PG_HOST", "DAGSTER_PG_PORT", "DAGSTER_PG_USER", "DAGSTER_PG_DB"} <= set(env)
    assert "DAGSTER_PG_PASSWORD" in secret and "DAGSTER_PG_PASSWORD" not in env
    # The file passes Dagster's instance schema.
    (tmp_path / "dagster.yaml").write_text(
        objects["ConfigMap", "dagster-instance"]["data"]["dagster.yaml"]
    )
    dagster_instance_config(str(tmp_path))
    # The set-up container finds nothing to write (the file is a read-only ConfigMap mount).
    assert write_storage(tmp_path, "postgres") is False
    launcher = config["run_launcher"]
    assert (launcher["module"], launcher["class"]) == ("dagster_k8s", "K8sRunLauncher")
    result = validate_config(K8sRunLauncher.config_type(), launcher["config"])
    assert result.success, result.errors
    assert launcher["config"]["instance_config_map"] == "dagster-instance"
    assert launcher["config"]["env_config_maps"] == ["recs-env"]
    assert launcher["config"]["env_secrets"] == ["recs-postgres", "recs-object-store"]


def trained_model_tags(env: dict[str, str]) -> tuple[dict, str]:
    """``trained_model``'s op tags and the code location's executor, as a code server with
    ``env`` loads them (a fresh process: the tags are fixed at import)."""
    code = (
        "import json; from assets.definitions import defs; from assets.model import trained_model;"
        " print(json.dumps([dict(trained_model.op.tags), defs.executor.name]))"
    )
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("RECS_K8S", "RECS_EXEC"))}
    ran = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env=clean | env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert ran.returncode == 0, ran.stderr[-3000:]
    tags, executor = json.loads(ran.stdout.strip().splitlines()[-1])
    return tags, executor


def step_job(objects, tags: dict) -> dict:
    """The Kubernetes Job of a ``trained_model`` step, as dagster-k8s's step handler builds it:
    the run launcher's job config, the op's ``dagster-k8s/config`` tag."""
    launcher = instance_yaml(objects)["run_launcher"]["config"]
    image = objects["ConfigMap", "recs-env"]["data"]["DAGSTER_CURRENT_IMAGE"]
    job_config = DagsterK8sJobConfig(
        job_image=image,
        dagster_home=launcher["dagster_home"],
        image_pull_policy=launcher["image_pull_policy"],
        service_account_name=launcher["service_account_name"],
        instance_config_map=launcher["instance_config_map"],
        env_config_maps=launcher["env_config_maps"],
        env_secrets=launcher["env_secrets"],
        volume_mounts=launcher["volume_mounts"],
        volumes=launcher["volumes"],
    )
    job = construct_dagster_k8s_job(
        job_config,
        args=["dagster", "api", "execute_step"],
        job_name="dagster-step-trained-model",
        user_defined_k8s_config=get_user_defined_k8s_config(tags),
        component="step_worker",
        labels={"dagster/op": "trained_model"},
    )
    return job.to_dict()


def test_trained_model_lands_on_a_gpu_node_when_the_deployment_asks(objects):
    env = objects["ConfigMap", "recs-env"]["data"]
    tags, executor = trained_model_tags(
        {"RECS_K8S_GPU": env["RECS_K8S_GPU"], "RECS_EXECUTOR": env["RECS_EXECUTOR"]}
    )
    assert executor == "k8s"  # one Job per step, so the op's tags shape its pod
    assert K8S_CONFIG_TAG in tags
    pod = step_job(objects, tags)["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    # Kubernetes quantities: "1".
    assert container["resources"]["limits"] == {GPU_RESOURCE: "1"}
    assert container["resources"]["requests"] == {GPU_RESOURCE: "1"}
    assert pod["node_selector"] == GPU_NODE_SELECTOR
    assert [
        {"key": t["key"], "operator": t["operator"], "effect": t["effect"]}
        for t in pod["tolerations"]
    ] == GPU_TOLERATIONS
    # The rest of the pod is the run launcher's: the instance, the environment, the data volume.
    assert pod["service_account_name"] == "recs-dagster"
    assert [m["mount_path"] for m in container["volume_mounts"]] == ["/data"]
    # The instance reaches the pod in the step's arguments (its instance ref, env: values
    # unresolved), resolved there from recs-env and the Secret.
    assert {"name": "DAGSTER_HOME", "value": "/opt/dagster/dagster_home"} in [
        {"name": e["name"], "value": e["value"]} for e in container["env"]
    ]
    sources = [s.get("config_map_ref") or s.get("secret_ref") for s in container["env_from"]]
    assert {s["name"] for s in sources} == {"recs-env", "recs-postgres", "recs-object-store"}
    assert container["image"] == env["DAGSTER_CURRENT_IMAGE"]


def test_without_the_setting_nothing_changes():
    tags, executor = trained_model_tags({})
    assert K8S_CONFIG_TAG not in tags
    assert executor == "multiprocess_forkserver"


def deployment_resources(env: dict[str, str]) -> dict:
    """The resources' config and the ``duckdb`` pool's limit as a pod with ``env`` (recs-env
    and the Secrets) loads them: the project's own loading, in a fresh process."""
    code = (
        "import json; from assets.definitions import defs; from assets.platform.instance import"
        " warehouse_pool_limit; r = defs.resources; print(json.dumps({"
        "'warehouse': [r['warehouse'].catalog, r['warehouse'].data_path],"
        " 'artifacts': r['artifacts'].root, 'engine': [r['engine'].kind, r['engine'].address,"
        " r['engine'].workers], 'pool': warehouse_pool_limit()}))"
    )
    clean = {k: v for k, v in os.environ.items() if not k.startswith("RECS_")}
    ran = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env=clean | env | {"RECS_CONFIG": ""},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert ran.returncode == 0, ran.stderr[-3000:]
    return json.loads(ran.stdout.strip().splitlines()[-1])


def test_the_pods_use_the_shared_warehouse_artifacts_and_ray_cluster(objects):
    env = objects["ConfigMap", "recs-env"]["data"]
    secrets = {
        **objects["Secret", "recs-postgres"]["stringData"],
        **objects["Secret", "recs-object-store"]["stringData"],
    }
    loaded = deployment_resources({**env, **secrets})
    assert loaded["warehouse"] == [env["RECS_WAREHOUSE_CATALOG"], env["RECS_WAREHOUSE_DATA_PATH"]]
    assert env["RECS_WAREHOUSE_CATALOG"].startswith("postgres:")
    assert loaded["artifacts"] == env["RECS_ARTIFACTS"]
    assert env["RECS_ARTIFACTS"].startswith("s3://")
    # The lake's writers commit side by side: the pool no longer serialises them.
    assert loaded["pool"] > 1
    # libpq reads the catalog's password from the Secret, never from the ConfigMap.
    assert "PGPASSWORD" in secrets and "password" not in env["RECS_WAREHOUSE_CATALOG"]
    # The engine is the Ray cluster of raycluster.yaml, at KubeRay's head Service client port.
    kind, address, workers = loaded["engine"]
    assert (kind, workers) == ("ray", int(env["RECS_WORKERS"]))
    cluster = objects["RayCluster", "recs-ray"]
    service = f"{cluster['metadata']['name']}-head-svc.{cluster['metadata']['namespace']}"
    assert address == f"ray://{service}.svc.cluster.local:10001"
    (head,) = cluster["spec"]["headGroupSpec"]["template"]["spec"]["containers"]
    assert {"name": "client", "containerPort": 10001} in head["ports"]


def test_the_ray_cluster_runs_this_project_with_the_pinned_ray(objects):
    cluster = objects["RayCluster", "recs-ray"]
    env = objects["ConfigMap", "recs-env"]["data"]
    pods = [cluster["spec"]["headGroupSpec"]["template"]["spec"]] + [
        group["template"]["spec"] for group in cluster["spec"]["workerGroupSpecs"]
    ]
    pinned = {
        line.strip().strip('",')
        for line in (ROOT / "pyproject.toml").read_text().splitlines()
        if line.strip().startswith('"ray==')
    }
    assert {f"ray=={cluster['spec']['rayVersion']}"} == pinned
    for pod in pods:
        for container in pod["containers"]:
            # The tasks are this project's functions: the same image as every step pod.
            assert container["image"] == env["DAGSTER_CURRENT_IMAGE"]
            sources = {next(iter(ref.values()))["name"] for ref in container["envFrom"]}
            assert sources == {"recs-env", "recs-postgres", "recs-object-store"}
    # Enough worker slots for RECS_WORKERS shards (or training ranks) at once.
    workers = cluster["spec"]["workerGroupSpecs"]
    assert sum(g["maxReplicas"] for g in workers) >= int(env["RECS_WORKERS"])
