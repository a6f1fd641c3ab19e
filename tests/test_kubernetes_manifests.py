"""deploy/kubernetes, checked without a cluster: parsed with PyYAML, held against the code.

Images, commands (against the real ``celery`` and ``startproc`` command trees),
probes, environment names (settings, or ``${VAR}``s of the mounted targets
file), the targets file itself (validated as a worker would), the queue KEDA
measures, and the grace period a worker gets to finish its jobs. Each check
is a function of the parsed manifests, so a test can show it failing on a
broken copy.
"""

from __future__ import annotations

import copy
import re
import shlex
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.test_deploy_files import URL_CREDENTIALS, check_celery, check_startproc
from worker import __version__
from worker.config import Settings
from worker.targets import Targets

REPO = Path(__file__).resolve().parents[1]
K8S = REPO / "deploy" / "kubernetes"
IMAGE = f"process-start-worker:{__version__}"
VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
KINDS = {
    ("v1", "ConfigMap"),
    ("v1", "Secret"),
    ("v1", "Service"),
    ("apps/v1", "Deployment"),
    ("policy/v1", "PodDisruptionBudget"),
    ("keda.sh/v1alpha1", "ScaledObject"),
    ("keda.sh/v1alpha1", "TriggerAuthentication"),
}
Manifests = dict[tuple[str, str], dict[str, Any]]
"""(kind, name) -> the object; several files may define one (the two KEDA variants)."""


def load(directory: Path = K8S) -> dict[str, list[dict[str, Any]]]:
    return {
        path.name: [doc for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")) if doc]
        for path in sorted(directory.glob("*.yaml"))
    }


FILES = load()


def objects(files: dict[str, list[dict[str, Any]]], *names: str) -> Manifests:
    return {
        (doc["kind"], doc["metadata"]["name"]): doc
        for name, docs in files.items()
        if name != "kustomization.yaml" and (not names or name in names)
        for doc in docs
    }


def deployments(found: Manifests) -> dict[str, dict[str, Any]]:
    return {name: doc for (kind, name), doc in found.items() if kind == "Deployment"}


def container(deployment: dict[str, Any]) -> dict[str, Any]:
    [only] = deployment["spec"]["template"]["spec"]["containers"]
    return only


def config_env(found: Manifests) -> dict[str, str]:
    return {k: str(v) for k, v in found[("ConfigMap", "startproc-env")]["data"].items()}


def setting_default(name: str) -> Any:
    return Settings.model_fields[name.removeprefix("STARTPROC_").lower()].default


def setting(found: Manifests, name: str) -> str:
    """What the pods get for ``name``: the ConfigMap's value, else the setting's default."""
    return config_env(found).get(name, str(setting_default(name)))


def targets_vars(found: Manifests) -> set[str]:
    return set(VAR.findall(found[("ConfigMap", "startproc-files")]["data"]["targets.toml"]))


def secret_keys(found: Manifests, name: str) -> set[str]:
    return set(found[("Secret", name)]["stringData"])


def settings_names() -> set[str]:
    return {f"STARTPROC_{name.upper()}" for name in Settings.model_fields}


def readme_settings() -> set[str]:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    table = readme.split("| variable | meaning | default |", 1)[1].split("\n\n", 1)[0]
    return set(re.findall(r"`(STARTPROC_[A-Z0-9_]+)`", table))


# ---------------------------------------------------------------- checks


def check_images(found: Manifests) -> None:
    for name, deployment in deployments(found).items():
        assert container(deployment)["image"] == IMAGE, f"{name}: not the project's image"


def check_env_names(found: Manifests) -> None:
    """Every variable a pod gets is a setting (documented in the README) or a ${VAR} of
    the targets file: a misspelt name would be silently ignored."""
    allowed = settings_names() | targets_vars(found)
    names = set(config_env(found)) | secret_keys(found, "startproc-secrets")
    for deployment in deployments(found).values():
        names |= {e["name"] for e in container(deployment).get("env", [])}
    assert names - allowed == set(), "not settings"
    assert {n for n in names if n.startswith("STARTPROC_")} - readme_settings() == set()


def check_env_sources(found: Manifests) -> None:
    for name, deployment in deployments(found).items():
        sources = container(deployment)["envFrom"]
        refs = {(k, v["name"]) for s in sources for k, v in s.items()}
        assert refs == {("configMapRef", "startproc-env"), ("secretRef", "startproc-secrets")}, name


def check_targets_file(found: Manifests) -> None:
    """Mounted where STARTPROC_TARGETS points; valid; every ${VAR} comes from the Secret."""
    files = found[("ConfigMap", "startproc-files")]["data"]
    placeholders = {var: "placeholder" for var in targets_vars(found)}
    Targets.from_dict(tomllib.loads(files["targets.toml"]), env=placeholders)
    tomllib.loads(files["schedules.toml"])
    assert targets_vars(found) <= secret_keys(found, "startproc-secrets")
    for key in ("STARTPROC_TARGETS", "STARTPROC_SCHEDULES"):
        path = Path(setting(found, key))
        assert path.name in files, key
        for name, deployment in deployments(found).items():
            pod = deployment["spec"]["template"]["spec"]
            mounts = {m["name"]: m["mountPath"] for m in container(deployment)["volumeMounts"]}
            volumes = {v["name"]: v for v in pod["volumes"]}
            [mounted] = [
                n
                for n, v in volumes.items()
                if v.get("configMap", {}).get("name") == "startproc-files"
            ]
            assert Path(mounts[mounted]) == path.parent, f"{name}: {key} is not where it is mounted"


def jobs_queue(found: Manifests) -> str:
    return setting(found, "STARTPROC_JOBS_QUEUE")


def check_worker(found: Manifests) -> None:
    worker = found[("Deployment", "startproc-worker")]
    argv = container(worker)["command"]
    check_celery(argv)
    assert argv[:4] == ["celery", "-A", "worker", "worker"]
    assert argv[argv.index("-Q") + 1] == jobs_queue(found)
    assert argv[argv.index("--pool") + 1] == setting(found, "STARTPROC_WORKER_POOL")
    assert argv[argv.index("--concurrency") + 1] == setting(found, "STARTPROC_WORKER_CONCURRENCY")
    grace = worker["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
    limit = int(setting(found, "STARTPROC_TASK_TIME_LIMIT"))
    assert grace > limit and grace > setting_default("STARTPROC_TASK_TIME_LIMIT"), (
        f"grace period {grace}s does not outlast a job ({limit}s)"
    )
    probe = container(worker)["livenessProbe"]["exec"]["command"]
    assert probe[:2] == ["sh", "-c"]
    inner = shlex.split(probe[2])
    check_celery(inner)
    assert inner[inner.index("--destination") + 1] == "celery@$HOSTNAME"  # its own node
    port = int(setting(found, "STARTPROC_METRICS_PORT"))
    assert {p["containerPort"] for p in container(worker)["ports"]} == {port}
    annotations = worker["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/port"] == str(port)


def check_beat(found: Manifests) -> None:
    beat = found[("Deployment", "startproc-beat")]
    assert beat["spec"]["replicas"] == 1
    assert beat["spec"]["strategy"]["type"] == "Recreate"
    argv = container(beat)["command"]
    check_celery(argv)
    assert argv[3] == "beat"
    schedule = argv[argv.index("--schedule") + 1]
    probe = container(beat)["livenessProbe"]["exec"]["command"]
    check_startproc(probe)
    assert probe[:3] == ["startproc", "health", "beat"]
    assert probe[probe.index("--schedule") + 1] == schedule
    mounts = [m["mountPath"] for m in container(beat)["volumeMounts"]]
    assert str(Path(schedule).parent) in mounts, "beat's schedule file is on no volume"


def check_intake(found: Manifests) -> None:
    intake = found[("Deployment", "startproc-intake")]
    argv = container(intake)["command"]
    context = check_startproc(argv)
    assert argv[1] == "serve" and context.params["host"] == "0.0.0.0"
    ports = {p["name"]: p["containerPort"] for p in container(intake)["ports"]}
    assert ports == {"http": context.params["port"]}
    ready = container(intake)["readinessProbe"]["httpGet"]
    assert (ready["path"], ready["port"]) == ("/healthz", "http")
    assert container(intake)["livenessProbe"]["tcpSocket"]["port"] == "http"
    service = found[("Service", "startproc-intake")]
    assert [p["targetPort"] for p in service["spec"]["ports"]] == ["http"]
    pod_labels = intake["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= pod_labels.items()


def check_selectors(found: Manifests) -> None:
    """Deployments select their own pods; each PDB selects one Deployment's pods."""
    for name, deployment in deployments(found).items():
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        assert deployment["spec"]["selector"]["matchLabels"].items() <= labels.items(), name
    pdbs = [doc for (kind, _), doc in found.items() if kind == "PodDisruptionBudget"]
    assert {p["metadata"]["name"] for p in pdbs} == {"startproc-worker", "startproc-intake"}
    for pdb in pdbs:
        wanted = pdb["spec"]["selector"]["matchLabels"].items()
        matched = [
            name
            for name, d in deployments(found).items()
            if wanted <= d["spec"]["template"]["metadata"]["labels"].items()
        ]
        assert matched == [pdb["metadata"]["name"]]


def check_keda(found: Manifests, keda: Manifests, trigger: str, queue_key: str) -> None:
    """KEDA scales the worker Deployment on the queue the workers consume."""
    [scaled] = [doc for (kind, _), doc in keda.items() if kind == "ScaledObject"]
    assert scaled["spec"]["scaleTargetRef"]["name"] == "startproc-worker"
    assert ("Deployment", "startproc-worker") in found
    [spec] = scaled["spec"]["triggers"]
    assert spec["type"] == trigger
    assert spec["metadata"][queue_key] == jobs_queue(found), "KEDA measures another queue"
    auth = keda[("TriggerAuthentication", spec["authenticationRef"]["name"])]
    for ref in auth["spec"]["secretTargetRef"]:
        assert ref["key"] in secret_keys(found, ref["name"])


def run_checks(files: dict[str, list[dict[str, Any]]]) -> None:
    found = objects(files, *(n for n in files if not n.startswith("keda-")))
    for check in CHECKS:
        check(found)
    check_keda(found, objects(files, "keda-redis.yaml"), "redis", "listName")
    check_keda(found, objects(files, "keda-rabbitmq.yaml"), "rabbitmq", "queueName")


CHECKS: list[Callable[[Manifests], None]] = [
    check_images,
    check_env_names,
    check_env_sources,
    check_targets_file,
    check_worker,
    check_beat,
    check_intake,
    check_selectors,
]


# ---------------------------------------------------------------- tests


def test_every_file_parses_into_known_objects() -> None:
    assert set(FILES) >= {
        "kustomization.yaml", "configmap.yaml", "secret.example.yaml", "worker.yaml",
        "beat.yaml", "intake.yaml", "pdb.yaml", "keda-redis.yaml", "keda-rabbitmq.yaml",
    }  # fmt: skip
    for name, docs in FILES.items():
        assert docs, name
        for doc in docs:
            if name == "kustomization.yaml":
                assert doc["kind"] == "Kustomization"
                continue
            assert (doc["apiVersion"], doc["kind"]) in KINDS, f"{name}: {doc.get('kind')}"
            assert doc["metadata"]["name"].startswith("startproc-"), name


def test_the_kustomization_applies_everything_but_the_secret_and_keda() -> None:
    [kustomization] = FILES["kustomization.yaml"]
    listed = set(kustomization["resources"])
    assert all((K8S / name).is_file() for name in listed)
    optional = {
        "secret.example.yaml",
        "keda-redis.yaml",
        "keda-rabbitmq.yaml",
        "kustomization.yaml",
    }
    assert listed == set(FILES) - optional


def test_the_manifests_agree_with_the_code() -> None:
    run_checks(FILES)


def test_no_manifest_carries_a_secret() -> None:
    for name, docs in FILES.items():
        for doc in docs:
            if doc.get("kind") == "Secret":
                assert all(value == "" for value in doc["stringData"].values()), name
        assert not URL_CREDENTIALS.search((K8S / name).read_text(encoding="utf-8")), name


def _broken(change: Callable[[dict[str, list[dict[str, Any]]]], None]) -> Any:
    files = copy.deepcopy(FILES)
    change(files)
    return files


def _worker(files: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    return files["worker.yaml"][0]


def _set_grace(files: dict[str, list[dict[str, Any]]]) -> None:
    _worker(files)["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] = 60


def _rename_queue(files: dict[str, list[dict[str, Any]]]) -> None:
    files["keda-redis.yaml"][0]["spec"]["triggers"][0]["metadata"]["listName"] = "celery"


def _misspell_env(files: dict[str, list[dict[str, Any]]]) -> None:
    files["configmap.yaml"][0]["data"]["STARTPROC_JOB_QUEUE"] = "startproc.jobs"


def _move_config(files: dict[str, list[dict[str, Any]]]) -> None:
    container(_worker(files))["volumeMounts"][0]["mountPath"] = "/etc/startproc"


def _second_beat(files: dict[str, list[dict[str, Any]]]) -> None:
    files["beat.yaml"][0]["spec"]["strategy"] = {"type": "RollingUpdate"}


def _other_image(files: dict[str, list[dict[str, Any]]]) -> None:
    container(files["intake.yaml"][0])["image"] = "process-start-worker:latest"


def _unset_var(files: dict[str, list[dict[str, Any]]]) -> None:
    del files["secret.example.yaml"][0]["stringData"]["ORDERS_C8_CLIENT_SECRET"]


def _bad_option(files: dict[str, list[dict[str, Any]]]) -> None:
    container(_worker(files))["command"].append("--concurency=4")


@pytest.mark.parametrize(
    "change",
    [_set_grace, _rename_queue, _misspell_env, _move_config, _second_beat, _other_image,
     _unset_var, _bad_option],
)  # fmt: skip
def test_each_check_fails_on_a_broken_copy(change: Callable[..., None]) -> None:
    with pytest.raises(AssertionError):
        run_checks(_broken(change))
