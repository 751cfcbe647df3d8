"""Offline checks of k8s/, the Dockerfile and .dockerignore.

Every manifest is validated against the Kubernetes API schema of K8S_VERSION with
kubernetes-validate in strict mode (unknown fields fail), then against the deployment policy:
namespace, resources, probes, pod security, blue/green selectors, no secrets in the repository.
"""

from __future__ import annotations

import copy
import re
import shlex
import subprocess
from fnmatch import fnmatch
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import kubernetes_validate as kv  # dev extra: a missing package fails, never skips
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "k8s"
K8S_VERSION = "1.37.0"
NAMESPACE = "trading"
PORT = 9108
ARGS = ["run", "--feed", "exchange", "--metrics-port", "9108", "--log-format", "json",
        "--no-live"]
DEPLOYMENTS = {
    "deployment.yaml": ("supreme-system-v5", "blue", 1),
    "bluegreen/deployment-blue.yaml": ("supreme-system-v5-blue", "blue", 1),
    "bluegreen/deployment-green.yaml": ("supreme-system-v5-green", "green", 0),
}
EXPECTED = {
    ("Namespace", "trading"), ("ConfigMap", "supreme-config"), ("Secret", "supreme-secrets"),
    ("Deployment", "supreme-system-v5"), ("Deployment", "supreme-system-v5-blue"),
    ("Deployment", "supreme-system-v5-green"), ("Service", "supreme-system"),
    ("Ingress", "supreme-system-ingress"), ("Job", "supreme-validate-extended"),
    ("CronJob", "supreme-daily-report"),
}
SECRET_KEYS = {"EXCHANGE_API_KEY", "EXCHANGE_SECRET", "SUPREME_API_TOKEN"}
PLACEHOLDER = re.compile(r"^(REPLACE_ME|CHANGE_ME|<[a-z0-9_ -]+>)?$", re.I)

MANIFESTS = sorted(K8S.rglob("*.yaml"))


def load(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d is not None]


def all_docs() -> list[dict[str, Any]]:
    return [d for p in MANIFESTS for d in load(p)]


def one(kind: str, name: str) -> dict[str, Any]:
    found = [d for d in all_docs() if d["kind"] == kind and d["metadata"]["name"] == name]
    assert len(found) == 1, f"{kind}/{name}: {len(found)} definitions"
    return found[0]


def container(dep: dict[str, Any]) -> dict[str, Any]:
    containers = dep["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    return containers[0]


def looks_secret(value: str) -> bool:
    """True for a value that is not an obvious placeholder (a possibly real credential)."""
    return not PLACEHOLDER.match(value.strip())


# --- schema ---------------------------------------------------------------------------------

def test_schema_version_is_bundled_and_current() -> None:
    versions = kv.utils.all_versions()
    assert K8S_VERSION in versions
    assert tuple(int(x) for x in K8S_VERSION.split(".")[:2]) >= (1, 33)


def test_every_expected_object_is_defined_once() -> None:
    assert len(MANIFESTS) >= 8
    got = [(d["kind"], d["metadata"]["name"]) for d in all_docs()]
    assert sorted(got) == sorted(EXPECTED)


@pytest.mark.parametrize("path", MANIFESTS, ids=lambda p: str(p.relative_to(K8S)))
def test_manifest_validates_against_kubernetes_schema(path: Path) -> None:
    docs = load(path)
    assert docs, f"{path} holds no object"
    for doc in docs:
        assert kv.validate(doc, K8S_VERSION, strict=True) == "1.37"


@pytest.mark.parametrize("mutate", [
    lambda d: d["spec"].__setitem__("replicaz", 1),                        # unknown field
    lambda d: d["spec"].__setitem__("replicas", "one"),                    # wrong type
    lambda d: container(d)["livenessProbe"]["httpGet"].pop("port"),        # missing required
    lambda d: d["spec"]["template"]["spec"]["securityContext"].__setitem__("runAsUser", "x"),
])
def test_validator_rejects_broken_deployment(mutate: Any) -> None:
    doc = copy.deepcopy(one("Deployment", "supreme-system-v5"))
    mutate(doc)
    with pytest.raises(kv.ValidationError):
        kv.validate(doc, K8S_VERSION, strict=True)


# --- policy ---------------------------------------------------------------------------------

def test_everything_namespaced_lives_in_trading() -> None:
    for doc in all_docs():
        if doc["kind"] == "Namespace":
            assert doc["metadata"]["name"] == NAMESPACE
        else:
            assert doc["metadata"].get("namespace") == NAMESPACE, doc["metadata"]["name"]


def test_configmap_holds_the_guide_environment_without_credentials() -> None:
    data = one("ConfigMap", "supreme-config")["data"]
    assert data["SYMBOL_FOCUS"] == "ETH-USDT"
    assert data["TRADING_MODE"] == "paper"
    assert data["INTERVAL_SECONDS"] == "45"
    assert data["SUPREME_METRICS_PORT"] == str(PORT)
    assert data["SUPREME_METRICS_ADDR"] == "0.0.0.0"
    assert data["SUPREME_DATA_DIR"] == "/data"
    assert urlsplit(data["REDIS_URL"]).hostname.split(".")[0] == "redis"
    assert urlsplit(data["POSTGRES_URL"]).hostname.split(".")[0] == "postgres"
    for key in ("REDIS_URL", "POSTGRES_URL"):
        assert urlsplit(data[key]).password is None, f"{key} carries a password"
    assert not SECRET_KEYS & data.keys()
    assert not [k for k in data if re.search(r"SECRET|TOKEN|PASSWORD|API_KEY", k)]


def test_secret_template_holds_placeholders_only() -> None:
    path = K8S / "secret-template.yaml"
    secret = one("Secret", "supreme-secrets")
    assert "data" not in secret, "use stringData with placeholders, never base64 data"
    assert set(secret["stringData"]) == SECRET_KEYS
    for key, value in secret["stringData"].items():
        assert not looks_secret(value), f"{key} looks like a real value"
    text = path.read_text()
    assert re.search(r"never commit", text, re.I)
    # nothing random-looking anywhere, comments included: no long word mixing letters and
    # digits, no URL with a password other than the placeholder
    for word in re.findall(r"[A-Za-z0-9+=_-]{16,}", text):
        assert not (re.search(r"\d", word) and re.search(r"[A-Za-z]", word)), word
    for url in re.findall(r"\w+://\S+", text):
        assert urlsplit(url.strip('"')).password in (None, "REPLACE_ME"), url


@pytest.mark.parametrize("value", ["sk_live_4eC39HqLyjWDarjtT1zdp7dc",
                                   "Zk3pQ9x", "hunter2"])
def test_secret_check_flags_real_looking_values(value: str) -> None:
    assert looks_secret(value)


@pytest.mark.parametrize("rel", sorted(DEPLOYMENTS))
def test_deployment_policy(rel: str) -> None:
    name, color, replicas = DEPLOYMENTS[rel]
    (dep,) = load(K8S / rel)
    assert dep["kind"] == "Deployment" and dep["metadata"]["name"] == name
    spec, pod = dep["spec"], dep["spec"]["template"]
    assert spec["replicas"] == replicas
    labels = pod["metadata"]["labels"]
    assert labels["app"] == "supreme-system"
    assert labels["color"] == color
    assert dep["metadata"]["labels"]["color"] == color
    for k, v in spec["selector"]["matchLabels"].items():
        assert labels[k] == v
    ann = pod["metadata"]["annotations"]
    assert ann["prometheus.io/scrape"] == "true"
    assert ann["prometheus.io/port"] == str(PORT)
    assert ann["prometheus.io/path"] == "/metrics"

    c = container(dep)
    assert c["args"] == ARGS
    assert "command" not in c, "the image's ENTRYPOINT is `supreme`"
    assert c["resources"] == {"requests": {"memory": "64Mi", "cpu": "100m"},
                              "limits": {"memory": "128Mi", "cpu": "500m"}}
    assert c["livenessProbe"]["httpGet"] == {"path": "/health", "port": PORT}
    assert c["readinessProbe"]["httpGet"] == {"path": "/ready", "port": PORT}
    assert {p["containerPort"] for p in c["ports"]} == {PORT}
    refs = [next(iter(src.values()))["name"] for src in c["envFrom"]]
    assert refs == ["supreme-config", "supreme-secrets"], "the Secret must come last"

    psc, csc = pod["spec"]["securityContext"], c["securityContext"]
    assert psc["runAsNonRoot"] is True and psc["runAsUser"] == 10001 and "fsGroup" in psc
    assert psc["seccompProfile"]["type"] == "RuntimeDefault"
    assert csc["readOnlyRootFilesystem"] is True
    assert csc["allowPrivilegeEscalation"] is False
    assert csc["capabilities"]["drop"] == ["ALL"]
    assert csc.get("runAsNonRoot", True) is True and csc.get("privileged", False) is False
    assert csc.get("runAsUser", 10001) != 0

    mounts = {m["mountPath"]: m["name"] for m in c["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["spec"]["volumes"]}
    for path in ("/data", "/tmp"):
        vol = volumes[mounts[path]]
        assert "emptyDir" in vol
        assert vol["emptyDir"].get("medium") != "Memory", "would count against the limit"
    env = {e["name"]: e.get("value") for e in c.get("env", [])}
    assert env.get("NUMBA_CACHE_DIR", "").startswith("/tmp/"), "site-packages is read-only"
    text = (K8S / rel).read_text()
    assert "BENCHMARKS.md" in text


def test_single_deployment_never_runs_two_engines() -> None:
    assert one("Deployment", "supreme-system-v5")["spec"]["strategy"]["type"] == "Recreate"


def _normalised(dep: dict[str, Any]) -> dict[str, Any]:
    d = copy.deepcopy(dep)
    d["metadata"] = {"namespace": d["metadata"]["namespace"]}
    d["spec"].pop("replicas")
    d["spec"].pop("selector")
    d["spec"]["template"]["metadata"].pop("labels")
    return d


def test_blue_and_green_run_the_same_pod_as_the_single_deployment() -> None:
    single = _normalised(one("Deployment", "supreme-system-v5"))
    for color in ("blue", "green"):
        dep = one("Deployment", f"supreme-system-v5-{color}")
        assert _normalised(dep) == single, color
        assert dep["spec"]["selector"]["matchLabels"]["color"] == color


def _selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in selector.items())


def test_service_selects_exactly_one_color() -> None:
    svc = one("Service", "supreme-system")
    selector = svc["spec"]["selector"]
    assert selector["app"] == "supreme-system"
    assert selector["color"] in {"blue", "green"}
    assert svc["spec"]["ports"][0]["port"] == PORT
    blue = one("Deployment", "supreme-system-v5-blue")
    green = one("Deployment", "supreme-system-v5-green")
    picked = [d for d in (blue, green)
              if _selects(selector, d["spec"]["template"]["metadata"]["labels"])]
    assert len(picked) == 1
    target = svc["spec"]["ports"][0]["targetPort"]
    names = {p.get("name") for p in container(picked[0])["ports"]}
    assert target in names or target == PORT
    # flipping the color selects the other Deployment and only it
    flipped = dict(selector, color="green" if selector["color"] == "blue" else "blue")
    assert [d for d in (blue, green)
            if _selects(flipped, d["spec"]["template"]["metadata"]["labels"])] \
        == [d for d in (blue, green) if d is not picked[0]]


def test_ingress_routes_root_to_the_service() -> None:
    ing = one("Ingress", "supreme-system-ingress")
    assert ing["apiVersion"] == "networking.k8s.io/v1"
    paths = [p for r in ing["spec"]["rules"] for p in r["http"]["paths"]]
    assert [(p["path"], p["pathType"]) for p in paths] == [("/", "Prefix")]
    backend = paths[0]["backend"]["service"]
    assert backend == {"name": "supreme-system", "port": {"number": PORT}}
    assert ing["spec"].get("tls"), "the bearer token must travel over TLS"
    assert "/api/cache/reset" in (K8S / "ingress.yaml").read_text()


def test_readme_scale_out_snippet_produces_a_valid_per_symbol_deployment(
        tmp_path: Path) -> None:
    readme = (K8S / "README.md").read_text()
    block = re.search(r"```sh\n(SYM=BTC-USDT.*?)```", readme, re.S)
    assert block, "scale-out snippet missing from k8s/README.md"
    script = "\n".join(line for line in block.group(1).splitlines()
                       if not line.startswith("kubectl "))
    (tmp_path / "k8s").mkdir()
    (tmp_path / "k8s" / "deployment.yaml").write_text((K8S / "deployment.yaml").read_text())
    subprocess.run(["bash", "-euc", script], cwd=tmp_path, check=True, timeout=10)
    (dep,) = load(tmp_path / "supreme-btc-usdt.yaml")
    kv.validate(dep, K8S_VERSION, strict=True)
    assert dep["metadata"]["name"] == "supreme-system-v5-btc-usdt"
    labels = dep["spec"]["template"]["metadata"]["labels"]
    assert "color" not in labels and labels["symbol"] == "btc-usdt"
    env = {e["name"]: e.get("value") for e in container(dep)["env"]}
    assert env["SYMBOL_FOCUS"] == "BTC-USDT"
    assert env["SUPREME_CACHE__ENV"] == "prod-btc-usdt"
    assert not _selects(one("Service", "supreme-system")["spec"]["selector"], labels)


# --- Dockerfile -----------------------------------------------------------------------------

def dockerfile_instructions() -> list[tuple[str, str]]:
    text = re.sub(r"\\\n", " ", (ROOT / "Dockerfile").read_text())
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def test_dockerfile_is_multi_stage_non_root_and_runs_supreme() -> None:
    ins = dockerfile_instructions()
    args = dict(re.findall(r"^(\w+)=(\S+)", "\n".join(r for w, r in ins if w == "ARG"), re.M))
    froms = [rest for w, rest in ins if w == "FROM"]
    assert len(froms) >= 2, "multi-stage build expected"
    images = [re.sub(r"\$\{(\w+)\}", lambda m: args[m.group(1)], f.split()[0]) for f in froms]
    assert images[0] == images[-1] == "python:3.11-slim"
    assert re.search(r"\bAS builder\b", froms[0], re.I)

    final_start = max(i for i, (w, _) in enumerate(ins) if w == "FROM")
    final = ins[final_start:]
    users = [rest for w, rest in final if w == "USER"]
    assert users, "the final stage needs a USER"
    assert users[-1].split(":")[0] not in {"0", "root"}
    assert users[-1].split(":")[0] == "10001"
    assert any(w == "COPY" and "--from=builder" in rest and "/opt/venv" in rest
               for w, rest in final)
    assert any(w == "RUN" and "pip install" in rest and "/opt/venv" in rest
               for w, rest in ins[:final_start])
    assert ("ENTRYPOINT", '["supreme"]') in final
    cmd = [rest for w, rest in final if w == "CMD"][-1]
    assert cmd == '["run", "--feed", "exchange", "--metrics-port", "9108", "--no-live"]'
    assert ("EXPOSE", "9108") in final
    env_text = " ".join(rest for w, rest in final if w == "ENV")
    assert "PYTHONDONTWRITEBYTECODE=1" in env_text
    assert "NUMBA_CACHE_DIR=/tmp/" in env_text


def test_dockerfile_bakes_no_secret() -> None:
    for word, rest in dockerfile_instructions():
        if word in {"ENV", "ARG", "LABEL"}:
            for name in re.findall(r"([A-Za-z_][A-Za-z0-9_.-]*)=", rest):
                assert not re.search(r"KEY|SECRET|TOKEN|PASSW", name, re.I), name
        if word in {"COPY", "ADD"}:
            assert not re.search(r"\.env\b|secret|\.pem|id_rsa", rest, re.I), rest
        assert not re.search(r"(?i)(api[_-]?key|secret|token)\s*[=:]\s*\S{8,}", rest), rest


def test_dockerignore_excludes_local_state_but_not_build_inputs() -> None:
    patterns = [p.strip() for p in (ROOT / ".dockerignore").read_text().splitlines()
                if p.strip() and not p.startswith("#")]
    for must in (".venv", ".git", ".pytest_cache", "data", ".env"):
        assert must in patterns, must
    sources = []
    for word, rest in dockerfile_instructions():
        if word == "COPY" and "--from" not in rest:
            sources += shlex.split(rest)[:-1]
    assert {"pyproject.toml", "README.md", "engine", "supreme_cli"} <= set(sources)
    for src in sources:
        assert not any(fnmatch(src, p.removeprefix("**/")) for p in patterns), src


def test_the_deployment_args_are_real_cli_flags() -> None:
    import yaml

    from tests.cli.helpers import invoke

    help_text = invoke("run", "--help").stdout
    root = Path(__file__).resolve().parents[2]
    for path in [root / "k8s" / "deployment.yaml", *sorted((root / "k8s" / "bluegreen")
                                                            .glob("*.yaml"))]:
        for doc in yaml.safe_load_all(path.read_text()):
            if not doc or doc.get("kind") != "Deployment":
                continue
            for container in doc["spec"]["template"]["spec"]["containers"]:
                args = container.get("args", [])
                assert args[0] == "run"
                for flag in (a for a in args if a.startswith("--")):
                    assert flag in help_text, f"{path.name}: {flag} is not a `supreme run` flag"


def test_the_validation_job_runs_the_extended_profile_with_real_flags() -> None:
    import yaml

    from tests.cli.helpers import invoke

    job = next(d for d in yaml.safe_load_all((K8S / "job-validate.yaml").read_text()) if d)
    assert job["kind"] == "Job" and job["metadata"]["namespace"] == "trading"
    args = job["spec"]["template"]["spec"]["containers"][0]["args"]
    assert args[:3] == ["validate", "--profile", "extended"]
    help_text = invoke("validate", "--help").stdout
    for flag in (a for a in args if a.startswith("--")):
        assert flag in help_text


def test_the_report_cronjob_runs_yesterdays_daily_report_with_real_flags() -> None:
    import yaml

    from tests.cli.helpers import invoke

    cron = next(d for d in yaml.safe_load_all((K8S / "cronjob-report.yaml").read_text()) if d)
    assert cron["kind"] == "CronJob" and cron["spec"]["schedule"] == "5 0 * * *"
    container = cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]
    assert container["args"][:2] == ["report", "--daily"]
    help_text = invoke("report", "--help").stdout
    for flag in (a for a in container["args"] if a.startswith("--")):
        assert flag in help_text
