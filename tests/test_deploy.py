"""deploy/, the Dockerfile and the install step, checked offline in a few seconds (no cluster, no
container runtime).

Schema validation of deploy/k8s/*.yaml (every YAML document):
- Deployment, Service, Ingress, HorizontalPodAutoscaler (autoscaling/v2) and Job: validated
  against the Kubernetes 1.31 JSON schemas bundled with the `kubernetes-validate` package, in
  strict mode (a field the API does not know is an error). Its schemas are package files, so
  nothing is downloaded.
- ServiceMonitor (monitoring.coreos.com/v1, a Prometheus Operator CRD that package has no schema
  for): only checked for structure, against SERVICE_MONITOR_SCHEMA below (the fields we use and
  their types), not against the operator's full CRD.
- Any other kind fails the test: a new kind needs a decision here.
On top of the schemas: the references between the manifests (selectors, Service and port names,
autoscaler targets), the probes and the security settings of the Deployments, the TPU Job's
shape; the Grafana dashboard's queries against METRIC_NAMES; the Dockerfile; and
scripts/install.sh as the README, .ci/run and the Dockerfile call it (with pip replaced by a
recorder).
"""

import json
import math
import os
import re
import shlex
import subprocess
from pathlib import Path

import pytest
import yaml

from jaxgenre.serve import metrics as metrics_lib

ROOT = Path(__file__).resolve().parent.parent
K8S = ROOT / "deploy" / "k8s"
DASHBOARD = ROOT / "deploy" / "grafana" / "jaxgenre.json"
KUBERNETES_VERSION = "1.31"
PORT = 8000  # the service's --port in the image and the manifests
UID = 10001  # the image's user

# The Prometheus metrics `python -m jaxgenre.serve` registers, as exposed on /metrics (counters
# with their _total): the dashboard may use these and nothing else.
_METRICS = metrics_lib.create()
METRIC_NAMES = tuple(sorted(metrics_lib.names(_METRICS)))
# Histograms exist in PromQL only as NAME_bucket, NAME_sum and NAME_count.
HISTOGRAMS = tuple(sorted(m.name for m in _METRICS.registry.collect() if m.type == "histogram"))
METRIC_LABELS = {
    "jaxgenre_requests_total": {"endpoint", "status"},
    "jaxgenre_request_seconds": {"endpoint"},
    "jaxgenre_batch_size": {"model"},
    "jaxgenre_batch_seconds": {"model"},
    "jaxgenre_queue_depth": {"model"},
    "jaxgenre_audio_seconds_total": {"endpoint"},
    "jaxgenre_conversion_realtime_factor": set(),
    "jaxgenre_model_info": {"role", "workdir", "step", "dataset", "sample_rate"},
    "jaxgenre_ready": set(),
}
# Labels Prometheus adds to every series it scrapes through a ServiceMonitor.
TARGET_LABELS = {"job", "instance", "namespace", "pod", "service", "container", "endpoint"}

# The ServiceMonitor's structure: the fields deploy/k8s/servicemonitor.yaml uses, with the types
# and duration pattern of the Prometheus Operator's CRD; unknown fields in spec and endpoints fail.
_DURATION = r"^(0|(([0-9]+)y)?(([0-9]+)w)?(([0-9]+)d)?(([0-9]+)h)?(([0-9]+)m)?(([0-9]+)s)?(([0-9]+)ms)?)$"
_LABEL_SELECTOR = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "matchLabels": {"type": "object", "additionalProperties": {"type": "string"}},
        "matchExpressions": {"type": "array", "items": {
            "type": "object", "additionalProperties": False, "required": ["key", "operator"],
            "properties": {"key": {"type": "string"},
                           "operator": {"enum": ["In", "NotIn", "Exists", "DoesNotExist"]},
                           "values": {"type": "array", "items": {"type": "string"}}}}},
    },
}
SERVICE_MONITOR_SCHEMA = {
    "type": "object",
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "properties": {
        "apiVersion": {"const": "monitoring.coreos.com/v1"},
        "kind": {"const": "ServiceMonitor"},
        "metadata": {"type": "object", "required": ["name"], "properties": {
            "name": {"type": "string", "pattern": r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"},
            "labels": {"type": "object", "additionalProperties": {"type": "string"}}}},
        "spec": {
            "type": "object",
            "additionalProperties": False,
            "required": ["selector", "endpoints"],
            "properties": {
                "selector": _LABEL_SELECTOR,
                "namespaceSelector": {"type": "object"},
                "jobLabel": {"type": "string"},
                "endpoints": {"type": "array", "minItems": 1, "items": {
                    "type": "object",
                    "additionalProperties": False,
                    "required": ["port"],
                    "properties": {"port": {"type": "string"},
                                   "path": {"type": "string", "pattern": "^/"},
                                   "scheme": {"enum": ["http", "https"]},
                                   "interval": {"type": "string", "pattern": _DURATION},
                                   "scrapeTimeout": {"type": "string", "pattern": _DURATION},
                                   "honorLabels": {"type": "boolean"}}}},
            },
        },
    },
}


# --------------------------------------------------------------------------------------------
# Helpers


def _documents():
    """(file name, document) for every non-empty YAML document in deploy/k8s."""
    docs = []
    for path in sorted(K8S.glob("*.yaml")):
        docs += [(path.name, d) for d in yaml.safe_load_all(path.read_text()) if d]
    return docs


def _of_kind(kind):
    return {d["metadata"]["name"]: d for _, d in _documents() if d["kind"] == kind}


def _matches(selector, labels):
    """Whether a Kubernetes label selector (matchLabels / matchExpressions) selects `labels`."""
    if any(labels.get(k) != v for k, v in selector.get("matchLabels", {}).items()):
        return False
    for e in selector.get("matchExpressions", []):
        present, value = e["key"] in labels, labels.get(e["key"])
        ok = {"In": present and value in e.get("values", []),
              "NotIn": not present or value not in e.get("values", []),
              "Exists": present, "DoesNotExist": not present}[e["operator"]]
        if not ok:
            return False
    return True


def _container(deployment):
    containers = deployment["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1, deployment["metadata"]["name"]
    return containers[0]


def _flag(args, name):
    """The value after `--name` in an argument list, or None."""
    return args[args.index(name) + 1] if name in args else None


def _dockerfile():
    """The Dockerfile's instructions as (INSTRUCTION, rest), continuation lines joined."""
    instructions, pending = [], ""
    for line in (ROOT / "Dockerfile").read_text().splitlines():
        if line.lstrip().startswith("#") or not line.strip():
            continue
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1] + " "
            continue
        word, _, rest = (pending + line).strip().partition(" ")
        instructions.append((word.upper(), rest.strip()))
        pending = ""
    return instructions


def _quick_start_lines():
    """The README's one-line quick-start commands (a fresh venv, the install, then the work)."""
    return [line for line in (ROOT / "README.md").read_text().splitlines()
            if line.startswith("python3 -m venv .venv")]


def _install_segment(command):
    """The `... sh scripts/install.sh ...` part of an `a && b && c` command line."""
    segments = [s.strip() for s in command.split("&&") if "scripts/install.sh" in s]
    assert len(segments) == 1, command
    return segments[0]


def _run_install(segment, tmp_path, **env):
    """Runs an install command line from the repository root with `python3` replaced by a script
    that records its arguments (one line per call); returns (exit status, recorded calls)."""
    bin_dir, log = tmp_path / "bin", tmp_path / "calls.log"
    bin_dir.mkdir(exist_ok=True)
    fake = bin_dir / "python3"
    fake.write_text('#!/bin/sh\n{ printf "%s" "$PWD"; for a in "$@"; do printf " %s" "$a"; done; echo; }'
                    ' >> "$PYTHON3_LOG"\n')
    fake.chmod(0o755)
    log.write_text("")
    full_env = {k: v for k, v in os.environ.items()
                if k not in ("JAX_ACCELERATOR", "INSTALL_MODE")}
    full_env.update(env, PATH=f"{bin_dir}{os.pathsep}{os.environ['PATH']}", PYTHON3_LOG=str(log))
    proc = subprocess.run(["sh", "-c", segment], cwd=ROOT, env=full_env, capture_output=True, text=True,
                          timeout=30)
    return proc.returncode, log.read_text().splitlines()


# --------------------------------------------------------------------------------------------
# Kubernetes manifests


def test_every_manifest_validates_against_the_kubernetes_schemas():
    import kubernetes_validate
    docs = _documents()
    kinds = sorted({d["kind"] for _, d in docs})
    assert kinds == ["Deployment", "HorizontalPodAutoscaler", "Ingress", "Job", "Service",
                     "ServiceMonitor"]
    schema_validated = set()
    for name, doc in docs:
        where = f"{name}: {doc['kind']} {doc['metadata']['name']}"
        if doc["kind"] == "ServiceMonitor":
            # No schema in kubernetes-validate: checked in test_service_monitor below.
            with pytest.raises(kubernetes_validate.SchemaNotFoundError):
                kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
            continue
        try:
            version = kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
        except kubernetes_validate.ValidationError as e:
            pytest.fail(f"{where}: {'.'.join(map(str, e.path))}: {e.message}")
        assert version == KUBERNETES_VERSION, where
        schema_validated.add(doc["kind"])
    assert schema_validated == {"Deployment", "Service", "Ingress", "HorizontalPodAutoscaler", "Job"}


def test_schema_validation_rejects_a_misspelt_field():
    """The strict schemas catch a typo, so the test above is not passing vacuously."""
    import kubernetes_validate
    deployment = json.loads(json.dumps(_of_kind("Deployment")["jaxgenre-classify"]))
    probe = _container(deployment)["readinessProbe"]
    probe["httpGett"] = probe.pop("httpGet")
    with pytest.raises(kubernetes_validate.ValidationError, match="httpGett"):
        kubernetes_validate.validate(deployment, KUBERNETES_VERSION, strict=True)


def test_service_monitor():
    import jsonschema
    monitors = _of_kind("ServiceMonitor")
    assert list(monitors) == ["jaxgenre"]
    monitor = monitors["jaxgenre"]
    jsonschema.validate(monitor, SERVICE_MONITOR_SCHEMA)
    # It selects the two serving Services and nothing else, and scrapes their port `http`.
    services = _of_kind("Service")
    selected = sorted(n for n, s in services.items() if _matches(monitor["spec"]["selector"],
                                                                   s["metadata"].get("labels", {})))
    assert selected == ["jaxgenre-classify", "jaxgenre-convert"]
    for endpoint in monitor["spec"]["endpoints"]:
        assert endpoint["path"] == "/metrics"
        for name in selected:
            assert endpoint["port"] in [p.get("name") for p in services[name]["spec"]["ports"]], name
    # A broken monitor fails the structure check.
    broken = json.loads(json.dumps(monitor))
    broken["spec"]["endpoints"][0]["interval"] = "15 seconds"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(broken, SERVICE_MONITOR_SCHEMA)


def test_deployments_probes_security_and_models():
    deployments = _of_kind("Deployment")
    assert sorted(deployments) == ["jaxgenre-classify", "jaxgenre-convert"]
    images = set()
    for name, d in deployments.items():
        pod = d["spec"]["template"]["spec"]
        c = _container(d)
        images.add(c["image"])
        args = c["args"]
        # The service listens on the port the container declares as `http`.
        ports = {p["name"]: p["containerPort"] for p in c["ports"]}
        assert ports == {"http": PORT}, name
        assert _flag(args, "--port") == str(PORT) and _flag(args, "--host") == "0.0.0.0", name

        for probe, path in (("startupProbe", "/healthz"), ("livenessProbe", "/healthz"),
                            ("readinessProbe", "/readyz")):
            assert c[probe]["httpGet"]["path"] == path, (name, probe)
            assert c[probe]["httpGet"]["port"] in ("http", PORT), (name, probe)
        # The startup probe outlasts a slow start (imports, model loading): at least 300 s.
        startup = c["startupProbe"]
        assert startup["failureThreshold"] * startup.get("periodSeconds", 10) >= 300, name

        # Not root: the pod's (or the container's) security context says so, with the image's uid.
        security = {**pod.get("securityContext", {}), **c.get("securityContext", {})}
        assert security.get("runAsNonRoot") is True and security.get("runAsUser") == UID, name
        assert c["securityContext"].get("allowPrivilegeEscalation") is False, name
        assert c["securityContext"].get("privileged", False) is False, name
        volumes = {v["name"]: v for v in pod.get("volumes", [])}
        mounts = {m["mountPath"]: m for m in c.get("volumeMounts", [])}
        if c["securityContext"].get("readOnlyRootFilesystem"):
            assert "emptyDir" in volumes[mounts["/tmp"]["name"]], name

        # CPU requests: what the autoscaler's utilization is a share of.
        resources = c["resources"]
        for key in ("cpu", "memory"):
            assert key in resources["requests"] and key in resources["limits"], (name, key)

        # The models come read-only from /models; every model flag points below it.
        models = mounts["/models"]
        assert models.get("readOnly") is True, name
        claim = volumes[models["name"]].get("persistentVolumeClaim")
        assert claim is None or claim.get("readOnly") is True, name
        model_flags = {f: _flag(args, f) for f in ("--classifier", "--generator") if f in args}
        assert all(v.startswith("/models/") for v in model_flags.values()), name
        expected = {"jaxgenre-classify": {"--classifier"},
                    "jaxgenre-convert": {"--classifier", "--generator"}}[name]
        assert set(model_flags) == expected, name
    assert images == {"ghcr.io/jaxgenre/jaxgenre:latest"}


def test_services_ingress_and_autoscalers_point_at_what_exists():
    deployments, services = _of_kind("Deployment"), _of_kind("Service")
    for name, d in deployments.items():
        service = services[name]  # each Deployment has its Service of the same name
        pod_labels = d["spec"]["template"]["metadata"]["labels"]
        assert _matches({"matchLabels": service["spec"]["selector"]}, pod_labels), name
        assert _matches(d["spec"]["selector"], pod_labels), name
        # The Deployment's pods only: the other Deployment's pods do not match.
        for other_name, other in deployments.items():
            if other_name != name:
                other_labels = other["spec"]["template"]["metadata"]["labels"]
                assert not _matches({"matchLabels": service["spec"]["selector"]}, other_labels)
        container_ports = [p["name"] for p in _container(d)["ports"]]
        (port,) = service["spec"]["ports"]
        assert port["name"] == "http" and port["targetPort"] in container_ports, name

    (ingress,) = _of_kind("Ingress").values()
    routes = {}
    for rule in ingress["spec"]["rules"]:
        for p in rule["http"]["paths"]:
            backend = p["backend"]["service"]
            assert backend["port"]["name"] in [x["name"] for x in services[backend["name"]]["spec"]["ports"]]
            routes[p["path"]] = (p["pathType"], backend["name"])
    assert routes == {"/v1/classify": ("Prefix", "jaxgenre-classify"),
                      "/v1": ("Prefix", "jaxgenre-convert"), "/": ("Exact", "jaxgenre-convert")}

    autoscalers = _of_kind("HorizontalPodAutoscaler")
    targets = sorted(h["spec"]["scaleTargetRef"]["name"] for h in autoscalers.values())
    assert targets == sorted(deployments)
    for h in autoscalers.values():
        assert h["apiVersion"] == "autoscaling/v2"
        assert h["spec"]["scaleTargetRef"]["kind"] == "Deployment"
        assert 1 <= h["spec"]["minReplicas"] <= h["spec"]["maxReplicas"]
        (metric,) = h["spec"]["metrics"]
        assert metric["resource"]["name"] == "cpu"
        assert metric["resource"]["target"]["type"] == "Utilization"


def test_tpu_training_job():
    (job,) = _of_kind("Job").values()
    spec, pod = job["spec"], job["spec"]["template"]["spec"]
    assert spec["completionMode"] == "Indexed"
    assert spec["completions"] == spec["parallelism"]  # every host at once
    assert pod["restartPolicy"] == "Never"
    # The headless Service that names the pods: selected by the Job controller's job-name label.
    headless = _of_kind("Service")[pod["subdomain"]]
    assert headless["spec"]["clusterIP"] == "None"
    assert headless["spec"]["selector"] == {"job-name": job["metadata"]["name"]}
    # One pod per TPU VM: hosts x chips per host = the chips of the slice's topology.
    selector = pod["nodeSelector"]
    assert set(selector) == {"cloud.google.com/gke-tpu-accelerator", "cloud.google.com/gke-tpu-topology"}
    (c,) = pod["containers"]
    chips = int(c["resources"]["limits"]["google.com/tpu"])
    assert int(c["resources"]["requests"]["google.com/tpu"]) == chips
    topology = math.prod(int(n) for n in selector["cloud.google.com/gke-tpu-topology"].split("x"))
    assert spec["completions"] * chips == topology
    command = c["command"] + c["args"]
    assert command[:7] == ["python", "-m", "jaxgenre.train", "--config", "configs/mobilenet.py",
                           "--workdir", "gs://BUCKET/runs/mobilenet"]


# --------------------------------------------------------------------------------------------
# Grafana dashboard


def _queries():
    """(panel title, PromQL, legend) for every target of every panel."""
    dashboard = json.loads(DASHBOARD.read_text())
    return [(p["title"], t.get("expr", ""), t.get("legendFormat", ""))
            for p in dashboard["panels"] if p["type"] != "row" for t in p.get("targets", [])]


def _series(expr):
    return set(re.findall(r"\bjaxgenre_\w+", expr))


def test_dashboard_uses_only_the_service_metrics():
    assert set(HISTOGRAMS) <= set(METRIC_NAMES) and set(METRIC_LABELS) == set(METRIC_NAMES)
    allowed = {n for n in METRIC_NAMES if n not in HISTOGRAMS}
    allowed |= {h + suffix for h in HISTOGRAMS for suffix in ("_bucket", "_sum", "_count")}
    used = set()
    for title, expr, legend in _queries():
        series = _series(expr)
        assert series, (title, expr)
        assert series <= allowed, (title, sorted(series - allowed))
        used |= series
        # Labels in `by (...)` and in selectors `{label=...}` belong to the metrics queried.
        metrics = {re.sub(r"_(bucket|sum|count)$", "", s) if s not in METRIC_NAMES else s for s in series}
        labels = set().union(*(METRIC_LABELS[m] for m in metrics)) | TARGET_LABELS
        if any(s.endswith("_bucket") for s in series):
            labels.add("le")
        grouped = {x.strip() for g in re.findall(r"\bby \(([^)]*)\)", expr) for x in g.split(",")}
        selected = set(re.findall(r"[{,]\s*(\w+)\s*(?:=~|!~|!=|=)", expr))
        assert grouped | selected <= labels, (title, sorted((grouped | selected) - labels))
        # A quantile needs the buckets summed by `le`.
        if "histogram_quantile" in expr:
            assert "_bucket" in expr and "le" in grouped, title
        # The legend names only labels the result still has.
        legend_labels = set(re.findall(r"\{\{\s*(\w+)\s*\}\}", legend))
        assert legend_labels <= (grouped or labels), (title, legend)
        assert expr.count("(") == expr.count(")") and expr.count("{") == expr.count("}"), title
    # Every metric of the service is on the dashboard.
    on_dashboard = {re.sub(r"_(bucket|sum|count)$", "", s) if s not in METRIC_NAMES else s for s in used}
    assert on_dashboard == set(METRIC_NAMES)


def test_dashboard_panels_and_datasource():
    dashboard = json.loads(DASHBOARD.read_text())
    assert 36 <= dashboard["schemaVersion"] <= 41
    assert [i["name"] for i in dashboard["__inputs"]] == ["DS_PROMETHEUS"]
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["DS_PROMETHEUS"]["type"] == "datasource"
    assert variables["DS_PROMETHEUS"]["query"] == "prometheus"
    panels = dashboard["panels"]
    assert len({p["id"] for p in panels}) == len(panels)
    cells = set()
    for p in panels:
        g = p["gridPos"]
        assert 0 <= g["x"] and g["x"] + g["w"] <= 24, p["title"]
        area = {(x, y) for x in range(g["x"], g["x"] + g["w"]) for y in range(g["y"], g["y"] + g["h"])}
        assert not area & cells, f"{p['title']} overlaps another panel"
        cells |= area
        if p["type"] == "row":
            continue
        assert p["targets"], p["title"]
        for t in [p] + p["targets"]:
            assert t["datasource"] == {"type": "prometheus", "uid": "${DS_PROMETHEUS}"}, p["title"]
    titles = " | ".join(p["title"].lower() for p in panels)
    for topic in ("request rate", "error ratio", "latency", "batch size", "batch compute", "queue depth",
                  "audio processed", "real-time factor", "ready", "models served"):
        assert topic in titles, topic


# --------------------------------------------------------------------------------------------
# The image and the install step


def test_dockerfile_runs_as_non_root_and_installs_with_the_install_script():
    instructions = _dockerfile()
    words = [w for w, _ in instructions]
    assert instructions[0] == ("FROM", "python:3.11-slim")
    assert ("ARG", "ACCELERATOR=cpu") in instructions
    runs = [rest for w, rest in instructions if w == "RUN"]
    (install,) = [r for r in runs if "scripts/install.sh" in r]
    assert _install_segment(install) == (
        'JAX_ACCELERATOR="$ACCELERATOR" INSTALL_MODE=wheel sh scripts/install.sh serve')
    assert any("libsndfile1" in r and "ffmpeg" in r for r in runs)
    # The last USER is the uid 10001 user made by useradd, and it comes after every RUN.
    users = [rest for w, rest in instructions if w == "USER"]
    assert users and users[-1].split(":")[0] not in ("root", "0")
    assert int(users[-1].split(":")[0]) == UID
    assert any(f"useradd --uid {UID}" in r for r in runs)
    assert words.index("USER") > max(i for i, w in enumerate(words) if w == "RUN")
    assert ("EXPOSE", str(PORT)) in instructions
    health = next(rest for w, rest in instructions if w == "HEALTHCHECK")
    assert f"http://127.0.0.1:{PORT}/healthz" in health and "urllib" in health
    entrypoint = json.loads(next(rest for w, rest in instructions if w == "ENTRYPOINT"))
    cmd = json.loads(next(rest for w, rest in instructions if w == "CMD"))
    assert entrypoint == ["python", "-m", "jaxgenre.serve"]
    assert cmd == ["--classifier", "/models/classifier", "--host", "0.0.0.0", "--port", str(PORT)]


def _dockerignored(path, patterns):
    """Whether Docker's .dockerignore `patterns` exclude `path` (relative, /-separated): a pattern
    matches the path or one of its parent directories; `**` spans directories; `!` re-includes."""
    excluded = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        pattern = pattern.lstrip("!").strip("/")
        regex = re.escape(pattern).replace(r"\*\*/", "(.*/)?").replace(r"\*\*", ".*")
        regex = regex.replace(r"\*", "[^/]*").replace(r"\?", "[^/]")
        parts = path.split("/")
        if any(re.fullmatch(regex, "/".join(parts[:i])) for i in range(1, len(parts) + 1)):
            excluded = not negate
    return excluded


def test_dockerignore_keeps_what_pip_needs():
    patterns = [line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()
                if line.strip() and not line.lstrip().startswith("#")]
    needed = ["pyproject.toml", "README.md", "scripts/install.sh"]
    for top in ("jaxgenre", "configs", "tfds_fma"):
        for dirpath, dirnames, filenames in os.walk(ROOT / top):
            dirnames[:] = [d for d in dirnames if d != "__pycache__"]
            needed += [str(Path(dirpath, f).relative_to(ROOT).as_posix()) for f in filenames
                       if not f.endswith(".pyc")]
    assert len(needed) > 20
    kept_out = [p for p in needed if _dockerignored(p, patterns)]
    assert not kept_out
    for path in (".git/config", "runs/demo/checkpoints/1/x", ".venv/bin/python",
                 "jaxgenre/__pycache__/x.pyc", "jaxgenre.egg-info/PKG-INFO"):
        assert _dockerignored(path, patterns), path


def test_readme_and_ci_install_through_the_install_script():
    lines = _quick_start_lines()
    assert len(lines) == 2
    for line in lines:
        assert "sh scripts/install.sh" in line and "pip install" not in line, line
    ci = (ROOT / ".ci" / "run").read_text()
    assert "sh scripts/install.sh test" in ci and "pip install" not in ci
    # The README's test command is CI's fast tier, and CI runs the other four tiers too (the
    # sweep tier's tests spread over both workers: one module).
    (test_line,) = [line for line in lines if "pytest" in line]
    readme_pytest = test_line[test_line.index("python -m pytest"):]
    fast = '"not slow and not serve and not sweep and not transfer"'
    assert f"-m {fast}" in readme_pytest
    ci_pytest = [line[line.index("python -m pytest"):] for line in ci.splitlines()
                 if "python -m pytest" in line and not line.lstrip().startswith("#")]
    assert ci_pytest == [readme_pytest, readme_pytest.replace(fast, '"slow and not transfer"'),
                         readme_pytest.replace(fast, "transfer"),
                         readme_pytest.replace(fast, "serve"),
                         readme_pytest.replace(fast, "sweep").replace("loadscope", "load")]
    workflow = yaml.safe_load((ROOT / ".github" / "workflows" / "ci.yml").read_text())
    assert any(step.get("run") == ".ci/run" for step in workflow["jobs"]["test"]["steps"])


def test_install_script_parses():
    proc = subprocess.run(["sh", "-n", str(ROOT / "scripts" / "install.sh")], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


@pytest.mark.parametrize("where, env, expected", [
    ("README demo", {}, "-m pip install -e ."),
    ("README test", {}, "-m pip install -e .[test]"),
    (".ci/run", {}, "-m pip install -e .[test]"),
    ("Dockerfile", {"ACCELERATOR": "cpu"}, "-m pip install .[serve]"),
    ("Dockerfile", {"ACCELERATOR": "cuda12"}, "-m pip install .[serve] jax[cuda12]"),
    ("Dockerfile", {"ACCELERATOR": "tpu"}, "-m pip install .[serve] jax[tpu]"),
], ids=["readme-demo", "readme-test", "ci", "docker-cpu", "docker-cuda12", "docker-tpu"])
def test_install_commands_as_called(where, env, expected, tmp_path):
    """Each caller's install command, run as written (pip recorded, not run): from the repository
    root, pip upgraded first, then one pip command with the package and the accelerator's JAX."""
    if where == "Dockerfile":
        (command,) = [r for w, r in _dockerfile() if w == "RUN" and "scripts/install.sh" in r]
    elif where == ".ci/run":
        (command,) = [line for line in (ROOT / ".ci" / "run").read_text().splitlines()
                      if "scripts/install.sh" in line and not line.lstrip().startswith("#")]
    else:
        (command,) = [line for line in _quick_start_lines() if ("pytest" in line) == (where == "README test")]
    status, calls = _run_install(_install_segment(command), tmp_path, **env)
    assert status == 0
    assert calls == [f"{ROOT} -m pip install -q --upgrade pip", f"{ROOT} {expected}"]


def test_install_script_refuses_unknown_settings(tmp_path):
    script = shlex.quote(str(ROOT / "scripts" / "install.sh"))
    for env in ({"JAX_ACCELERATOR": "rocm"}, {"INSTALL_MODE": "zip"}):
        status, calls = _run_install(f"sh {script} serve", tmp_path, **env)
        assert status == 2 and calls == [], env
    # Called from elsewhere, it still installs the repository it belongs to.
    status, calls = _run_install(f"cd / && sh {script} beam,test", tmp_path, INSTALL_MODE="wheel")
    assert status == 0 and calls[-1] == f"{ROOT} -m pip install .[beam,test]"
