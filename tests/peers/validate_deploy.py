#!/usr/bin/env python3
"""Validate dashboards/ and deploy/ without a Docker engine or Grafana.

- every dashboard validates against Grafana's dashboard JSON Schema (draft-07,
  vendored in tests/vendor/grafana/ with its source and licence), and a deliberately
  broken copy does not (so the validator is really checking);
- dashboards/*.json are what dashboards/build.py builds;
- every YAML file parses; docker-compose.yml has the four services, bind
  mounts that exist, and no literal secrets; the Grafana datasource uid is
  the one the dashboards use;
- the scale-out deploy: the compose profile's shards cover 0..N-1 once with
  a data volume each; the Kubernetes StatefulSet has a headless Service, a
  replica count equal to the N of `--shard $(POD_NAME)/N`, POD_NAME from the
  pod's name, non-root pods and a volume claim per pod (the shard arguments
  go to the Rust test, which parses them with meterflow's own parser);
- the Dockerfile is multi-stage, copies from a named stage, and runs as a
  non-root user; the systemd unit has its sections, an absolute ExecStart and
  a non-root User.

Prints a JSON object on stdout for the Rust test: the InfluxQL queries of the
provisioned Grafana alert rules. Exit 1 with the reasons on any failure.
"""

import copy
import json
import pathlib
import re
import subprocess
import sys

import jsonschema
import yaml

ROOT = pathlib.Path(__file__).resolve().parents[2]
SCHEMA = ROOT / "tests" / "vendor" / "grafana" / "dashboard.jsonschema.json"
errors = []


def fail(msg):
    errors.append(msg)


def dashboards():
    schema = json.loads(SCHEMA.read_text(encoding="utf-8"))
    v = jsonschema.Draft7Validator(schema)
    files = sorted((ROOT / "dashboards").glob("*.json"))
    if len(files) < 8:
        fail(f"expected at least 8 dashboards, found {len(files)}")
    uids = set()
    for f in files:
        d = json.loads(f.read_text(encoding="utf-8"))
        for e in v.iter_errors(d):
            fail(f"{f.name}: {list(e.absolute_path)}: {e.message[:200]}")
        if d.get("uid") in uids:
            fail(f"{f.name}: duplicate uid {d.get('uid')}")
        uids.add(d.get("uid"))
        for p in d.get("panels", []):
            for t in p.get("targets", []):
                q = t.get("query", "")
                for banned in ("SLIMIT", "SOFFSET", "SHOW DATABASES", "SHOW SERIES", " INTO ", "sample(", "holt_winters", "integral("):
                    if banned.lower() in q.lower():
                        fail(f"{f.name}: panel {p.get('title')!r} uses {banned.strip()}, which InfluxDB 3 does not run")
    # Negative control: a panel 30 columns wide must be refused.
    if files:
        bad = json.loads(files[0].read_text(encoding="utf-8"))
        bad = copy.deepcopy(bad)
        bad["panels"][0]["gridPos"]["w"] = 30
        if not list(v.iter_errors(bad)):
            fail("the schema accepted a panel 30 columns wide: the validator is not checking")
    r = subprocess.run([sys.executable, str(ROOT / "dashboards" / "build.py"), "--check"], capture_output=True, text=True)
    if r.returncode != 0:
        fail(f"dashboards/build.py --check: {r.stderr.strip()}")
    return {json.loads(f.read_text(encoding="utf-8"))["panels"][0]["datasource"]["uid"] for f in files}


SECRET_KEY = re.compile(r"(PASSWORD|TOKEN|SECRET)", re.I)


def compose(ds_uids):
    deploy = ROOT / "deploy"
    c = yaml.safe_load((deploy / "docker-compose.yml").read_text(encoding="utf-8"))
    services = c.get("services", {})
    for s in ("meterflow", "influxdb", "grafana", "mosquitto"):
        if s not in services:
            fail(f"docker-compose.yml: no service {s}")
    for name, svc in services.items():
        if "image" not in svc and "build" not in svc:
            fail(f"docker-compose.yml: {name} has neither image nor build")
        img = svc.get("image", "")
        if not img.startswith("meterflow:") and (":" not in img or img.endswith(":latest")):
            fail(f"docker-compose.yml: {name} image {img!r} is not pinned")
        for k, val in (svc.get("environment") or {}).items():
            if SECRET_KEY.search(k) and not str(val).startswith("${"):
                fail(f"docker-compose.yml: {name}.{k} holds a literal secret; use ${{VAR}} from .env")
        for vol in svc.get("volumes") or []:
            src = str(vol).split(":")[0]
            if src.startswith(".") and not (deploy / src).exists():
                fail(f"docker-compose.yml: {name} mounts {src}, which does not exist")
        for dep in svc.get("depends_on") or []:
            if dep not in services:
                fail(f"docker-compose.yml: {name} depends on unknown {dep}")
    for vol in (c.get("volumes") or {}):
        used = any(str(v).split(":")[0] == vol for s in services.values() for v in (s.get("volumes") or []))
        if not used:
            fail(f"docker-compose.yml: volume {vol} is declared but not used")
    ds = yaml.safe_load((deploy / "grafana/provisioning/datasources/influxdb.yaml").read_text(encoding="utf-8"))
    uids = {d.get("uid") for d in ds.get("datasources", [])}
    if not ds_uids <= uids:
        fail(f"dashboards use datasource {ds_uids - uids} that provisioning does not define")
    yaml.safe_load((deploy / "grafana/provisioning/dashboards/meterflow.yaml").read_text(encoding="utf-8"))
    rules = yaml.safe_load((deploy / "grafana/provisioning/alerting/meterflow.yaml").read_text(encoding="utf-8"))
    queries = []
    for g in rules.get("groups", []):
        for r in g.get("rules", []):
            cond = r.get("condition")
            refs = {d.get("refId") for d in r.get("data", [])}
            if cond not in refs:
                fail(f"alert rule {r.get('uid')}: condition {cond} is not one of {refs}")
            for d in r.get("data", []):
                if d.get("datasourceUid") == "__expr__":
                    continue
                if d.get("datasourceUid") not in uids:
                    fail(f"alert rule {r.get('uid')}: unknown datasource {d.get('datasourceUid')}")
                queries.append({"rule": r.get("uid"), "query": d["model"]["query"], "from_s": d["relativeTimeRange"]["from"]})
    return queries


INSTRUCTIONS = {"FROM", "RUN", "CMD", "LABEL", "EXPOSE", "ENV", "ADD", "COPY", "ENTRYPOINT", "VOLUME", "USER", "WORKDIR", "ARG", "ONBUILD", "STOPSIGNAL", "HEALTHCHECK", "SHELL"}


def dockerfile():
    lines = (ROOT / "deploy/Dockerfile").read_text(encoding="utf-8").splitlines()
    stages, user, cont = [], None, False
    for i, raw in enumerate(lines, 1):
        line = raw.strip()
        if cont:
            cont = line.endswith("\\")
            continue
        if not line or line.startswith("#"):
            continue
        word = line.split()[0].upper()
        if word not in INSTRUCTIONS:
            fail(f"Dockerfile:{i}: unknown instruction {word}")
        if word == "FROM":
            m = re.match(r"FROM\s+(\S+)(?:\s+AS\s+(\S+))?$", line, re.I)
            if not m:
                fail(f"Dockerfile:{i}: malformed FROM")
            else:
                stages.append(m.group(2))
                user = None
        if word == "COPY" and "--from=" in line:
            src = re.search(r"--from=(\S+)", line).group(1)
            if src not in stages[:-1]:
                fail(f"Dockerfile:{i}: COPY --from={src} names no earlier stage")
        if word == "USER":
            user = line.split()[1]
        cont = line.endswith("\\")
    if len(stages) < 2:
        fail("Dockerfile: not multi-stage")
    if user is None or user.split(":")[0] in ("root", "0"):
        fail("Dockerfile: the runtime stage does not switch to a non-root USER")


def unit(name, needed):
    text = (ROOT / "deploy/systemd" / name).read_text(encoding="utf-8")
    sections, cur = {}, None
    for i, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            cur = line.strip("[]")
            sections[cur] = {}
            continue
        if "=" not in line or cur is None:
            fail(f"{name}:{i}: not KEY=VALUE inside a section")
            continue
        k, v = line.split("=", 1)
        sections[cur][k] = v
    for s in needed:
        if s not in sections:
            fail(f"{name}: no [{s}]")
    return sections


def systemd():
    for name in ("meterflow.service", "meterflow-backup.service"):
        svc = unit(name, ("Unit", "Service", "Install")).get("Service", {})
        if not svc.get("ExecStart", "").startswith("/"):
            fail(f"{name}: ExecStart is not an absolute path")
        if svc.get("User", "root") == "root":
            fail(f"{name}: runs as root")
    timer = unit("meterflow-backup.timer", ("Unit", "Timer", "Install")).get("Timer", {})
    if not timer.get("OnCalendar"):
        fail("meterflow-backup.timer: no OnCalendar")


def shard_arg(args, where):
    """The i/N after --shard in an argument list."""
    if "--shard" not in args:
        fail(f"{where}: no --shard argument")
        return None
    i = args.index("--shard")
    if i + 1 >= len(args):
        fail(f"{where}: --shard without a value")
        return None
    return args[i + 1]


def scale_out():
    """The compose scale-out profile and the Kubernetes StatefulSet."""
    shard_args = []
    c = yaml.safe_load((ROOT / "deploy/docker-compose.yml").read_text(encoding="utf-8"))
    shards = {n: s for n, s in c["services"].items() if "scale-out" in (s.get("profiles") or [])}
    if len(shards) < 2:
        fail(f"docker-compose.yml: the scale-out profile has {len(shards)} services, expected several shards")
    seen, counts, data_volumes = set(), set(), []
    for name, svc in shards.items():
        a = shard_arg(svc.get("command") or [], f"docker-compose.yml: {name}")
        if a is None:
            continue
        shard_args.append(a)
        i, n = a.split("/")
        seen.add(int(i))
        counts.add(int(n))
        data = [str(v).split(":")[0] for v in svc.get("volumes") or [] if str(v).split(":")[1:2] == ["/var/lib/meterflow"]]
        if len(data) != 1:
            fail(f"docker-compose.yml: {name} has no data volume of its own at /var/lib/meterflow")
        data_volumes += data
    if len(counts) != 1 or seen != set(range(next(iter(counts), 0))):
        fail(f"docker-compose.yml: scale-out shards {sorted(seen)} of N {sorted(counts)} do not cover 0..N-1 once")
    if len(set(data_volumes)) != len(data_volumes):
        fail("docker-compose.yml: two shards share a data volume")

    docs = [d for d in yaml.safe_load_all((ROOT / "deploy/kubernetes/meterflow.yaml").read_text(encoding="utf-8")) if d]
    by_kind = {d.get("kind"): d for d in docs}
    for d in docs:
        if "apiVersion" not in d or "metadata" not in d or "name" not in d["metadata"]:
            fail(f"kubernetes: a {d.get('kind')} without apiVersion or metadata.name")
    svc, sts = by_kind.get("Service"), by_kind.get("StatefulSet")
    if svc is None or sts is None:
        fail("kubernetes: expected a Service and a StatefulSet")
        return shard_args
    spec = sts["spec"]
    if svc["spec"].get("clusterIP") != "None":
        fail("kubernetes: the StatefulSet's governing Service is not headless")
    if spec.get("serviceName") != svc["metadata"]["name"]:
        fail("kubernetes: serviceName does not name the Service")
    labels = spec["template"]["metadata"].get("labels", {})
    for sel in (spec["selector"].get("matchLabels", {}), svc["spec"].get("selector", {})):
        if not sel or any(labels.get(k) != v for k, v in sel.items()):
            fail(f"kubernetes: selector {sel} does not match the pod labels {labels}")
    pod = spec["template"]["spec"]
    if not pod.get("securityContext", {}).get("runAsNonRoot"):
        fail("kubernetes: pods may run as root")
    (ctr,) = pod["containers"]
    a = shard_arg(ctr.get("args") or [], "kubernetes: container args")
    if a is not None:
        shard_args.append(a)
        if a.split("/")[1] != str(spec.get("replicas")):
            fail(f"kubernetes: --shard {a} but replicas {spec.get('replicas')}")
        if "$(POD_NAME)" in a:
            env = {e["name"]: e for e in ctr.get("env", [])}
            if env.get("POD_NAME", {}).get("valueFrom", {}).get("fieldRef", {}).get("fieldPath") != "metadata.name":
                fail("kubernetes: POD_NAME does not come from metadata.name")
    for e in ctr.get("env", []):
        if SECRET_KEY.search(e["name"]) and "value" in e:
            fail(f"kubernetes: {e['name']} holds a literal secret; use secretKeyRef")
    mounts = {m["name"]: m["mountPath"] for m in ctr.get("volumeMounts", [])}
    claims = [t["metadata"]["name"] for t in spec.get("volumeClaimTemplates", [])]
    if not any(mounts.get(n) == "/var/lib/meterflow" for n in claims):
        fail("kubernetes: /var/lib/meterflow is not on a per-pod volume claim")
    return shard_args


ds = dashboards()
queries = compose(ds)
shard_args = scale_out()
dockerfile()
systemd()
if errors:
    print("\n".join(errors), file=sys.stderr)
    sys.exit(1)
print(json.dumps({"alert_queries": queries, "shard_args": shard_args}))
