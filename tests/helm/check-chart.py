#!/usr/bin/env python3
"""Checks what `helm template` rendered from helm/ballast against the values it
was given. Used by tests/helm/test-chart.sh.

Usage: check-chart.py RENDERED.yaml VALUES.yaml NAMESPACE [--location=STRING]
       check-chart.py --print-args RENDERED.yaml KIND [VAR=VALUE...]

Prints one "ok"/"FAILED" line per assertion and exits 1 if any failed.
VALUES.yaml is the -f file (merged here over the chart's values.yaml);
--location is the object-store string the operator and agents must get
(empty or absent: none).
"""

import copy
import glob
import hashlib
import json
import os
import posixpath
import re
import sys

import yaml

REPO = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "../.."))
CHART = os.path.join(REPO, "helm/ballast")

failures = 0
passes = 0


def check(cond, what):
    global failures, passes
    if cond:
        passes += 1
        print(f"ok      {what}")
    else:
        failures += 1
        print(f"FAILED  {what}")
    return cond


def one_line(text):
    return " ".join(text.split())


def merge(base, over):
    out = copy.deepcopy(base)
    for k, v in (over or {}).items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


def rules_of(role):
    """The (apiGroup, resource, verb, resourceNames) tuples a Role grants."""
    out = set()
    for r in role.get("rules") or []:
        names = tuple(sorted(r.get("resourceNames") or []))
        for g in r.get("apiGroups") or []:
            for res in r.get("resources") or []:
                for v in r.get("verbs") or []:
                    out.add((g, res, v, names))
    return out


def grants(tuples):
    out = set()
    for g, res, verbs, names in tuples:
        for v in verbs:
            out.add((g, res, v, tuple(sorted(names))))
    return out


def exported_metrics():
    """The metric names the daemons register (operator/, nodeagent/, lib/),
    with a histogram's _bucket, _sum and _count series."""
    names = set()
    for path in sorted(glob.glob(os.path.join(REPO, "*/*.c"))):
        if path.split(os.sep)[-2] not in ("operator", "nodeagent", "lib"):
            continue
        with open(path, encoding="utf-8") as f:
            text = f.read()
        for m in re.finditer(r'metric_register(_histogram)?\(\s*"([A-Za-z_:][A-Za-z0-9_:]*)"', text):
            names.add(m.group(2))
            if m.group(1):
                names.update(m.group(2) + s for s in ("_bucket", "_sum", "_count"))
    return names


PROMQL_KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "offset",
                   "bool", "and", "or", "unless", "inf", "nan"}


def promql_metrics(expr):
    """The metric names a PromQL expression selects: what is left once strings,
    label matchers, ranges, label lists and function names are gone."""
    e = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    e = re.sub(r"\{[^}]*\}", "", e)
    e = re.sub(r"\[[^\]]*\]", "", e)
    e = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", e)
    names = set()
    for m in re.finditer(r"(?<![\w.$])[A-Za-z_:][A-Za-z0-9_:]*", e):
        if e[m.end():].lstrip().startswith("(") or m.group(0).lower() in PROMQL_KEYWORDS:
            continue
        names.add(m.group(0))
    return names


def doc_alerts():
    """The alert table of docs/operations.md ("Metrics to alert on"):
    [(name, expression, for, severity)] in the table's order."""
    with open(os.path.join(REPO, "docs/operations.md"), encoding="utf-8") as f:
        text = f.read()
    section = text.split("## Metrics to alert on", 1)[1].split("\n## ", 1)[0]
    out = []
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split(" | ")]
        if len(cells) >= 4 and re.fullmatch(r"`[A-Za-z]+`", cells[0]):
            out.append((cells[0].strip("`"), cells[1].strip("`"), cells[2], cells[3]))
    return out


def load_defaults():
    with open(os.path.join(CHART, "values.yaml"), encoding="utf-8") as f:
        return yaml.safe_load(f)


def hook_of(d):
    return (d["metadata"].get("annotations") or {}).get("helm.sh/hook")


# Pod Security Standards, "restricted" profile (v1.27+), as far as a pod
# template shows it.
RESTRICTED_VOLUMES = {
    "configMap", "csi", "downwardAPI", "emptyDir", "ephemeral",
    "persistentVolumeClaim", "projected", "secret",
}


def restricted_violations(pod):
    v = []
    psc = pod.get("securityContext") or {}
    for f in ("hostNetwork", "hostPID", "hostIPC"):
        if pod.get(f):
            v.append(f)
    for vol in pod.get("volumes") or []:
        kinds = set(vol) - {"name"}
        if not kinds <= RESTRICTED_VOLUMES:
            v.append(f"volume {vol['name']} is {sorted(kinds)}")
    for c in (pod.get("containers") or []) + (pod.get("initContainers") or []):
        sc = c.get("securityContext") or {}
        name = c["name"]
        if sc.get("privileged"):
            v.append(f"{name}: privileged")
        if sc.get("allowPrivilegeEscalation") is not False:
            v.append(f"{name}: allowPrivilegeEscalation not false")
        non_root = sc.get("runAsNonRoot", psc.get("runAsNonRoot"))
        if non_root is not True:
            v.append(f"{name}: runAsNonRoot not true")
        uid = sc.get("runAsUser", psc.get("runAsUser"))
        if uid == 0:
            v.append(f"{name}: runAsUser 0")
        seccomp = (sc.get("seccompProfile") or psc.get("seccompProfile") or {}).get("type")
        if seccomp not in ("RuntimeDefault", "Localhost"):
            v.append(f"{name}: seccompProfile {seccomp}")
        caps = sc.get("capabilities") or {}
        if "ALL" not in (caps.get("drop") or []):
            v.append(f"{name}: capabilities not dropping ALL")
        if set(caps.get("add") or []) - {"NET_BIND_SERVICE"}:
            v.append(f"{name}: adds capabilities {caps.get('add')}")
        for p in c.get("ports") or []:
            if p.get("hostPort"):
                v.append(f"{name}: hostPort")
    return v


def env_of(container):
    return {e["name"]: e for e in container.get("env") or []}


def probe_port(container, probe):
    port = container[probe]["httpGet"]["port"]
    if isinstance(port, int):
        return port
    for p in container.get("ports") or []:
        if p.get("name") == port:
            return p["containerPort"]
    return None


def arg_value(args, flag):
    for a in args:
        if a.startswith(flag + "="):
            return a[len(flag) + 1:]
    return None


def main(argv):
    rendered, values_file, ns = argv[:3]
    location = ""
    for a in argv[3:]:
        if a.startswith("--location="):
            location = a[len("--location="):]
    defaults = load_defaults()
    with open(values_file, encoding="utf-8") as f:
        values = merge(defaults, yaml.safe_load(f) or {})
    with open(rendered, encoding="utf-8") as f:
        docs = [d for d in yaml.safe_load_all(f) if d]

    by_kind = {}
    for d in docs:
        by_kind.setdefault(d["kind"], []).append(d)
    o, a = values["operator"], values["agent"]
    cluster_scoped = {"ClusterRole", "ClusterRoleBinding", "CustomResourceDefinition"}

    # ---- every object
    for d in docs:
        md = d["metadata"]
        where = f"{d['kind']}/{md['name']}"
        labels = md.get("labels") or {}
        check(labels.get("app.kubernetes.io/part-of") == "ballast"
              and labels.get("app.kubernetes.io/managed-by") == "Helm", f"{where} has the chart's labels")
        for k, v in (values.get("commonLabels") or {}).items():
            check(labels.get(k) == v, f"{where} has commonLabel {k}")
        if d["kind"] not in cluster_scoped:
            want = ns
            if d["kind"] in ("Role", "RoleBinding") and md["name"].endswith("-bundles"):
                want = o["watchNamespace"]
            if d["kind"] == "ConfigMap" and "ballast.json" in (d.get("data") or {}):
                want = values["monitoring"]["grafanaDashboard"]["namespace"] or ns
            check(md.get("namespace") == want, f"{where} is in namespace {want}")
        check(len(md["name"]) <= 63 or d["kind"] in cluster_scoped, f"{where}: name fits 63 characters")

    # ---- RBAC: exact grants, no wildcards, no Secrets
    roles = {(d["kind"], d["metadata"]["name"]): d for d in by_kind.get("Role", []) + by_kind.get("ClusterRole", [])}
    for key, role in roles.items():
        rs = rules_of(role)
        check(not any("*" in (g, r, v) for g, r, v, _ in rs), f"{key[0]}/{key[1]} has no wildcard")
        check(not any(r == "secrets" for _, r, _, _ in rs), f"{key[0]}/{key[1]} grants nothing on Secrets")

    def subject_grants(sa):
        """Everything bound to ServiceAccount sa: {namespace-or-*: tuples}."""
        out = {}
        for b in by_kind.get("RoleBinding", []) + by_kind.get("ClusterRoleBinding", []):
            if not any(s.get("kind") == "ServiceAccount" and s["name"] == sa and s["namespace"] == ns
                       for s in b.get("subjects") or []):
                continue
            ref = b["roleRef"]
            role = roles.get((ref["kind"], ref["name"]))
            check(role is not None, f"{b['kind']}/{b['metadata']['name']} refers to a rendered {ref['kind']}")
            if role is None:
                continue
            scope = "*" if b["kind"] == "ClusterRoleBinding" else b["metadata"]["namespace"]
            out.setdefault(scope, set()).update(rules_of(role))
        return out

    sas = {d["metadata"]["name"] for d in by_kind.get("ServiceAccount", [])}
    op_sa = o["serviceAccount"]["name"] or None
    ag_sa = a["serviceAccount"]["name"] or None
    deploy = by_kind.get("Deployment", [])
    ds = by_kind.get("DaemonSet", [])
    check(len(deploy) == 1 and len(ds) == 1, "one operator Deployment and one agent DaemonSet")
    if not (deploy and ds):
        return
    deploy, ds = deploy[0], ds[0]
    op_sa = deploy["spec"]["template"]["spec"]["serviceAccountName"]
    ag_sa = ds["spec"]["template"]["spec"]["serviceAccountName"]
    check(op_sa in sas and ag_sa in sas and op_sa != ag_sa, "operator and agent run as their own ServiceAccounts")

    agent_want = {
        "*": grants([("", "nodes", ["get", "list", "watch"], [])]),
        ns: grants([("", "configmaps", ["get", "list", "watch"], [])]),
    }
    check(subject_grants(ag_sa) == agent_want,
          "agent RBAC is exactly: get/list/watch Nodes, get/list/watch ConfigMaps in its namespace")

    bundles = grants([
        ("ballast.dev", "configbundles", ["get", "list", "watch", "update", "patch"], []),
        ("ballast.dev", "configbundles/status", ["get", "update", "patch"], []),
        ("ballast.dev", "configbundles/finalizers", ["update", "patch"], []),
        ("", "events", ["create", "patch"], []),
    ])
    own = grants([("", "configmaps", ["get", "list", "watch", "create", "update", "patch", "delete"], [])])
    le = o["leaderElection"]
    if le["enabled"]:
        own |= grants([("coordination.k8s.io", "leases", ["create"], []),
                       ("coordination.k8s.io", "leases", ["get", "update", "patch"], [le["leaseName"]])])
    if o["watchNamespace"]:
        op_want = {o["watchNamespace"]: set(bundles)}
        op_want.setdefault(ns, set()).update(own)
    else:
        op_want = {"*": bundles, ns: own}
    check(subject_grants(op_sa) == op_want,
          "operator RBAC is exactly: its bundles (+status, finalizers) and Events "
          + (f"in {o['watchNamespace']}" if o["watchNamespace"] else "cluster-wide")
          + ", ConfigMaps" + (" and its Lease" if le["enabled"] else "") + f" in {ns}")

    # ---- operator Deployment
    pod = deploy["spec"]["template"]["spec"]
    c = pod["containers"][0]
    args = c.get("args") or []
    env = env_of(c)
    check(deploy["spec"]["replicas"] == o["replicas"], f"operator replicas = {o['replicas']}")
    check(restricted_violations(pod) == [],
          f"operator pod meets the restricted Pod Security Standard {restricted_violations(pod)}")
    check((c.get("securityContext") or {}).get("readOnlyRootFilesystem") is True, "operator root file system is read-only")
    check(arg_value(args, "--leader-elect") == str(le["enabled"]).lower(), "operator --leader-elect follows values")
    if le["enabled"]:
        check(arg_value(args, "--lease-name") == le["leaseName"], "operator --lease-name follows values")
    check(arg_value(args, "--namespace") == "$(POD_NAMESPACE)"
          and env.get("POD_NAMESPACE", {}).get("valueFrom", {}).get("fieldRef", {}).get("fieldPath") == "metadata.namespace",
          "operator --namespace comes from the downward API")
    check(arg_value(args, "--identity") == "$(POD_NAME)"
          and env.get("POD_NAME", {}).get("valueFrom", {}).get("fieldRef", {}).get("fieldPath") == "metadata.name",
          "operator leader identity is the pod name")
    check(arg_value(args, "--watch-namespace") == (o["watchNamespace"] or None), "operator --watch-namespace follows values")
    port = int(arg_value(args, "--health-addr").rsplit(":", 1)[1])
    check(port == o["healthPort"], "operator --health-addr uses healthPort")
    for probe, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")):
        check(c.get(probe, {}).get("httpGet", {}).get("path") == path and probe_port(c, probe) == port,
              f"operator {probe} is GET {path} on the health port")
    check(bool(c.get("resources", {}).get("requests")) and bool(c.get("resources", {}).get("limits")),
          "operator has resource requests and limits")

    # ---- agent DaemonSet
    pod = ds["spec"]["template"]["spec"]
    c = pod["containers"][0]
    args = c.get("args") or []
    env = env_of(c)
    sc = c.get("securityContext") or {}
    check(pod.get("priorityClassName") == "system-node-critical", "agent priorityClassName is system-node-critical")
    tol = pod.get("tolerations") or []
    check({"operator": "Exists"} in tol, "agent tolerates every taint (control-plane nodes included)")
    us = ds["spec"].get("updateStrategy") or {}
    check(us.get("type") == "RollingUpdate" and "maxUnavailable" in (us.get("rollingUpdate") or {}),
          "agent updateStrategy is RollingUpdate with maxUnavailable")
    check(arg_value(args, "--node-name") == "$(NODE_NAME)"
          and env.get("NODE_NAME", {}).get("valueFrom", {}).get("fieldRef", {}).get("fieldPath") == "spec.nodeName",
          "agent NODE_NAME comes from the downward API (spec.nodeName)")
    check(arg_value(args, "--namespace") == "$(BALLAST_NAMESPACE)"
          and env.get("BALLAST_NAMESPACE", {}).get("valueFrom", {}).get("fieldRef", {}).get("fieldPath") == "metadata.namespace",
          "agent --namespace is the release (operator's) namespace")
    port = int(arg_value(args, "--health-addr").rsplit(":", 1)[1])
    check(port == a["healthPort"], "agent --health-addr uses healthPort")
    for probe, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")):
        check(c.get(probe, {}).get("httpGet", {}).get("path") == path and probe_port(c, probe) == port,
              f"agent {probe} is GET {path} on the health port")
    check(sc.get("readOnlyRootFilesystem") is True and sc.get("allowPrivilegeEscalation") is False
          and "ALL" in (sc.get("capabilities") or {}).get("drop", []) and not sc.get("privileged")
          and (sc.get("seccompProfile") or (pod.get("securityContext") or {}).get("seccompProfile") or {}).get("type") == "RuntimeDefault",
          "agent: read-only root, no privilege escalation, no capabilities, RuntimeDefault seccomp")
    check(bool(pod.get("hostNetwork")) == bool(a["hostNetwork"]), "agent hostNetwork follows values")
    vols = {v["name"]: v for v in pod.get("volumes") or []}
    mounts = {m["name"]: m for m in c.get("volumeMounts") or []}
    for name, key in (("cache", "cacheDir"), ("root", "rootDir")):
        want = posixpath.normpath(a[key])
        hp = vols.get(name, {}).get("hostPath", {})
        check(hp.get("path") == want and hp.get("type") == "DirectoryOrCreate" and mounts.get(name, {}).get("mountPath") == want,
              f"agent {key} is hostPath {want}, mounted at the same path")
    uses_unit = any("systemdUnit" in (act or {}) for act in (a["reloadActions"] or {}).values())
    want_bus = a["systemdBus"]["mount"] == "always" or (a["systemdBus"]["mount"] == "auto" and uses_unit)
    check(("system-bus" in vols) == want_bus and ("system-bus" in mounts) == want_bus
          and (not want_bus or (vols["system-bus"]["hostPath"]["path"] == a["systemdBus"]["socketPath"]
                                and mounts["system-bus"]["mountPath"] == "/run/dbus/system_bus_socket")),
          f"agent mounts the host's system bus: {want_bus}")
    # Everything else the agent mounts is one of ours or the values' extras.
    extra = {v["name"] for v in a["extraVolumes"]}
    check(set(vols) - extra <= {"cache", "root", "config", "tmp", "system-bus"}, "agent has no unexpected volumes")

    # ---- the agents' config
    cms = [d for d in by_kind.get("ConfigMap", []) if d["metadata"]["name"] == vols.get("config", {}).get("configMap", {}).get("name")]
    check(len(cms) == 1, "agent config volume is the chart's ConfigMap")
    if cms:
        text = cms[0]["data"]["config.yaml"]
        try:
            cfg = yaml.safe_load(text)
        except yaml.YAMLError as e:
            cfg = {}
            print(f"        {one_line(str(e))}")
        check(isinstance(cfg, dict) and cfg != {}, "agent config is valid YAML")
        cfg = cfg if isinstance(cfg, dict) else {}
        check(cfg.get("rootDir") == posixpath.normpath(a["rootDir"]) and cfg.get("cacheDir") == posixpath.normpath(a["cacheDir"]),
              "agent config carries rootDir and cacheDir")
        check(cfg.get("pollInterval") == a["pollInterval"] and cfg.get("heartbeatInterval") == a["heartbeatInterval"]
              and cfg.get("cacheKeep") == a["cacheKeep"], "agent config carries the intervals and cacheKeep")
        want_actions = {str(k): v for k, v in (a["reloadActions"] or {}).items()}
        check(cfg.get("reloadActions") == want_actions,
              f"agent config's reloadActions equal the values' ({len(want_actions)} actions, exact strings)")
        checksum = ds["spec"]["template"]["metadata"].get("annotations", {}).get("checksum/config")
        check(checksum == hashlib.sha256(text.rstrip("\n").encode()).hexdigest(),
              "agent pods carry the config's checksum (a new config rolls them)")
        check(arg_value(args, "--config") == "/etc/ballast-agent/config.yaml"
              and mounts.get("config", {}).get("mountPath") == "/etc/ballast-agent",
              "agent --config points into the mounted ConfigMap")
        check(arg_value(args, "--api-resume-window") == (a.get("apiResumeWindow") or None),
              f"agent --api-resume-window is {a.get('apiResumeWindow') or 'the default (unset)'}")

    # ---- object store
    for what, cont in (("operator", deploy["spec"]["template"]["spec"]["containers"][0]), ("agent", c)):
        check(arg_value(cont.get("args") or [], "--object-store") == (location or None),
              f"{what} --object-store is {location or 'unset'}")
    creds = values["objectStore"]["credentials"]
    secrets = {d["metadata"]["name"]: d for d in by_kind.get("Secret", [])}
    if creds["accessKeyId"]:
        check(len(secrets) == 1, "the chart creates the object-store Secret")
        s = next(iter(secrets.values()), {"stringData": {}, "metadata": {"name": ""}})
        check(s["stringData"].get(creds["accessKeyIdKey"]) == creds["accessKeyId"]
              and s["stringData"].get(creds["secretAccessKeyKey"]) == creds["secretAccessKey"],
              "object-store Secret holds the credentials verbatim")
        op_secret = s["metadata"]["name"]
    else:
        check(not secrets, "the chart creates no Secret")
        op_secret = creds["existingSecret"]
    ag_secret = values["objectStore"]["agentExistingSecret"] or op_secret
    for what, cont, want in (("operator", deploy["spec"]["template"]["spec"]["containers"][0], op_secret), ("agent", c, ag_secret)):
        e = env_of(cont)
        if want:
            ok = all(e.get(n, {}).get("valueFrom", {}).get("secretKeyRef", {}).get("name") == want
                     for n in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"))
            ok = ok and e["AWS_ACCESS_KEY_ID"]["valueFrom"]["secretKeyRef"]["key"] == creds["accessKeyIdKey"]
            ok = ok and e["AWS_SESSION_TOKEN"]["valueFrom"]["secretKeyRef"].get("optional") is True
            check(ok, f"{what} gets AWS_* from Secret {want}")
        else:
            check(not any(n.startswith("AWS_") for n in e), f"{what} gets no AWS_* variables")
        check(not any("value" in v and n.startswith("AWS_") for n, v in e.items()),
              f"{what}: no credential is inlined in the pod spec")

    pdb = by_kind.get("PodDisruptionBudget", [])
    check(bool(pdb) == (o["podDisruptionBudget"]["enabled"] and o["replicas"] > 1),
          "operator PodDisruptionBudget exists exactly when enabled with replicas > 1")

    check_helm_test(values, by_kind, docs, deploy, ds, ns)
    check_monitoring(values, by_kind, deploy, ds, ns)


def check_helm_test(values, by_kind, docs, deploy, ds, ns):
    """The `helm test` hook: a Pod running check-release on the release's own
    Deployment and DaemonSet, as a ServiceAccount that may only get those two,
    its RBAC made first; every hook is a test hook."""
    t, o = values["helmTest"], values["operator"]
    hooks = [d for d in docs if hook_of(d)]
    check(all(hook_of(d) == "test" for d in hooks), "every hook is a test hook")
    pods = by_kind.get("Pod", [])
    if not t["enabled"]:
        check(not hooks and not pods, "helmTest.enabled=false: no test hook")
        return
    check(len(pods) == 1 and hook_of(pods[0]) == "test", "one test Pod, a helm test hook")
    if not pods:
        return
    pod = pods[0]
    name = pod["metadata"]["name"]
    kinds = {d["kind"]: d for d in hooks if d["metadata"]["name"] == name}
    check(set(kinds) == {"Pod", "ServiceAccount", "Role", "RoleBinding"} and len(hooks) == 4,
          "the test hooks are its Pod, ServiceAccount, Role and RoleBinding, of one name")
    weight = {k: int(d["metadata"]["annotations"].get("helm.sh/hook-weight", "0")) for k, d in kinds.items()}
    check(weight.get("ServiceAccount", 0) < weight.get("Role", 0) < weight.get("RoleBinding", 0) < weight.get("Pod", 0),
          f"hook weights make the ServiceAccount, Role and RoleBinding before the Pod {weight}")
    policy = {k: set(d["metadata"]["annotations"].get("helm.sh/hook-delete-policy", "").split(","))
              for k, d in kinds.items()}
    check(all(p == {"before-hook-creation", "hook-succeeded"} for k, p in policy.items() if k != "Pod"),
          "the test's RBAC is deleted before the next test and when it passes (kept when it fails)")
    check(policy.get("Pod") == {"before-hook-creation"},
          "the test Pod is kept until the next test, so `helm test --logs` can read it after it passed")

    dname, dsname = deploy["metadata"]["name"], ds["metadata"]["name"]
    role = kinds.get("Role", {})
    check(rules_of(role) == {("apps", "deployments", "get", (dname,)), ("apps", "daemonsets", "get", (dsname,))},
          f"test Role is exactly: get Deployment {dname} and DaemonSet {dsname}")
    rb = kinds.get("RoleBinding", {})
    check(rb.get("roleRef", {}).get("name") == name and rb.get("roleRef", {}).get("kind") == "Role"
          and rb.get("subjects") == [{"kind": "ServiceAccount", "name": name, "namespace": ns}],
          "test RoleBinding binds the test Role to the test ServiceAccount only")

    spec = pod["spec"]
    c = spec["containers"][0]
    check(spec.get("serviceAccountName") == name and spec.get("restartPolicy") == "Never",
          "test Pod runs once as the test ServiceAccount")
    check(restricted_violations(spec) == [],
          f"test Pod meets the restricted Pod Security Standard {restricted_violations(spec)}")
    check((c.get("securityContext") or {}).get("readOnlyRootFilesystem") is True, "test Pod root file system is read-only")
    check(c["image"] == deploy["spec"]["template"]["spec"]["containers"][0]["image"], "test Pod runs the operator's image")
    check(c.get("args") == ["check-release", f"--namespace={ns}", f"--deployment={dname}",
                            f"--daemonset={dsname}", f"--timeout={t['timeout']}"],
          f"test Pod runs check-release on {dname} and {dsname} with --timeout={t['timeout']}")
    check(bool(c.get("resources", {}).get("requests")) and bool(c.get("resources", {}).get("limits")),
          "test Pod has resource requests and limits")


def labels_match(selector, labels):
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def check_monitoring(values, by_kind, deploy, ds, ns):
    """The optional Prometheus Operator and Grafana objects: each exactly when
    enabled, scraping what the chart runs, the alerts of docs/operations.md,
    and a dashboard that queries only metrics the daemons export."""
    m, o = values["monitoring"], values["operator"]
    exported = exported_metrics()
    sms = by_kind.get("ServiceMonitor", [])
    pms = by_kind.get("PodMonitor", [])
    rules = by_kind.get("PrometheusRule", [])
    g = m["grafanaDashboard"]
    dashboards = [d for d in by_kind.get("ConfigMap", []) if "ballast.json" in (d.get("data") or {})]
    for what, objs, enabled in (("ServiceMonitor", sms, m["serviceMonitor"]["enabled"]),
                                ("PodMonitor", pms, m["podMonitor"]["enabled"]),
                                ("PrometheusRule", rules, m["prometheusRule"]["enabled"]),
                                ("dashboard ConfigMap", dashboards, g["enabled"])):
        check(len(objs) == (1 if enabled else 0), f"{what} rendered exactly when enabled ({enabled})")
    services = by_kind.get("Service", [])
    check(bool(services) == bool(o["metricsService"]["enabled"] or m["serviceMonitor"]["enabled"]),
          "operator metrics Service exists when enabled or a ServiceMonitor needs it")

    for sm in sms:
        spec = sm["spec"]
        targets = [sv for sv in services if labels_match(spec["selector"].get("matchLabels"), sv["metadata"].get("labels") or {})]
        check(len(targets) == 1, "ServiceMonitor selects the operator's metrics Service, and nothing else")
        pod_labels = deploy["spec"]["template"]["metadata"]["labels"]
        check(all(labels_match(sv["spec"]["selector"], pod_labels)
                  and any(p["name"] == ep["port"] for p in sv["spec"]["ports"] for ep in spec["endpoints"])
                  for sv in targets),
              "ServiceMonitor's port is a port of that Service, which selects the operator's pods")
        check(spec.get("namespaceSelector") == {"matchNames": [ns]}, f"ServiceMonitor looks in {ns} only")
        check(all(ep.get("path") == "/metrics" for ep in spec["endpoints"]), "ServiceMonitor scrapes /metrics")
        check_extra_labels(sm, m["serviceMonitor"]["labels"])
    for pm in pms:
        spec = pm["spec"]
        agent = ds["spec"]["template"]
        ports = {p["name"] for p in agent["spec"]["containers"][0].get("ports") or []}
        check(labels_match(spec["selector"].get("matchLabels"), agent["metadata"]["labels"])
              and not labels_match(spec["selector"].get("matchLabels"), deploy["spec"]["template"]["metadata"]["labels"]),
              "PodMonitor selects the agents' pods, not the operator's")
        check(all(ep.get("port") in ports and ep.get("path") == "/metrics" for ep in spec["podMetricsEndpoints"]),
              f"PodMonitor scrapes /metrics on a port the agent declares {sorted(ports)}")
        check(spec.get("namespaceSelector") == {"matchNames": [ns]}, f"PodMonitor looks in {ns} only")
        check_extra_labels(pm, m["podMonitor"]["labels"])

    table = doc_alerts()
    alert_metrics = set()
    for _, expr, _, _ in table:
        alert_metrics |= promql_metrics(expr)
    check(len(table) >= 1 and alert_metrics <= exported,
          f"every metric docs/operations.md's alerts use is exported by the daemons (not: {sorted(alert_metrics - exported)})")
    for rule in rules:
        r = m["prometheusRule"]
        got = [x for grp in rule["spec"]["groups"] for x in grp["rules"]]
        check([x.get("alert") for x in got] == [a[0] for a in table],
              f"PrometheusRule's alerts are docs/operations.md's, in order ({len(table)})")
        default_age = str(load_defaults()["monitoring"]["prometheusRule"]["configAgeSeconds"])
        for name, expr, duration, severity in table:
            x = next((x for x in got if x.get("alert") == name), {})
            if name == "BallastAgentConfigStale":
                expr = expr.replace(default_age, str(r["configAgeSeconds"]))
            check(x.get("expr") == expr and x.get("for") == duration
                  and (x.get("labels") or {}).get("severity") == severity,
                  f"alert {name}: `{expr}` for {duration}, {severity}, as the table says")
            check(all((x.get("labels") or {}).get(k) == v for k, v in (r["alertLabels"] or {}).items() if k != "severity"),
                  f"alert {name} carries monitoring.prometheusRule.alertLabels")
            check(bool((x.get("annotations") or {}).get("summary")) and bool((x.get("annotations") or {}).get("description")),
                  f"alert {name} has a summary and a description")
        check_extra_labels(rule, r["labels"])

    for cm in dashboards:
        md = cm["metadata"]
        check((md.get("labels") or {}).get(g["label"]) == g["labelValue"],
              f"dashboard ConfigMap carries the sidecar label {g['label']}={g['labelValue']!r}")
        check(md.get("namespace") == (g["namespace"] or ns), f"dashboard ConfigMap is in {g['namespace'] or ns}")
        check(all(md.get("annotations", {}).get(k) == v for k, v in (g["annotations"] or {}).items()),
              "dashboard ConfigMap carries grafanaDashboard.annotations")
        try:
            dash = json.loads(cm["data"]["ballast.json"])
        except ValueError as e:
            dash = {}
            print(f"        {one_line(str(e))}")
        check(bool(dash.get("uid")) and bool(dash.get("panels")), "dashboard JSON parses, with a uid and panels")
        exprs = [tg["expr"] for p in dash.get("panels", []) for tg in p.get("targets") or [] if "expr" in tg]
        queried = set()
        for e in exprs:
            queried |= promql_metrics(e)
        for v in (dash.get("templating") or {}).get("list") or []:
            q = v.get("query")
            q = q.get("query", "") if isinstance(q, dict) else str(q or "")
            queried |= set(re.findall(r"label_values\(\s*([A-Za-z_:][A-Za-z0-9_:]*)\s*,", q))
        check(bool(exprs) and queried <= exported | alert_metrics,
              f"every metric the dashboard queries is exported (not: {sorted(queried - exported - alert_metrics)})")
        check(alert_metrics <= queried, f"the dashboard graphs every metric the alerts use (missing: {sorted(alert_metrics - queried)})")


def check_extra_labels(obj, labels):
    md = obj["metadata"]
    check(all((md.get("labels") or {}).get(k) == v for k, v in (labels or {}).items()),
          f"{obj['kind']}/{md['name']} carries the values' extra labels {sorted((labels or {}))}")


def print_args(rendered, kind, env):
    """Prints the container's args of the rendered KIND (a workload, or the
    test Pod), one per line, with $(VAR) references expanded from env
    (NAME=VALUE strings)."""
    values = dict(e.split("=", 1) for e in env)
    with open(rendered, encoding="utf-8") as f:
        for d in yaml.safe_load_all(f):
            if d and d["kind"] == kind:
                pod = d["spec"] if kind == "Pod" else d["spec"]["template"]["spec"]
                for a in pod["containers"][0].get("args") or []:
                    for k, v in values.items():
                        a = a.replace(f"$({k})", v)
                    print(a)
                return 0
    return 1


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--print-args":
        sys.exit(print_args(sys.argv[2], sys.argv[3], sys.argv[4:]))
    if len(sys.argv) < 4:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    main(sys.argv[1:])
    print(f"check-chart: {passes} passed, {failures} failed")
    sys.exit(1 if failures else 0)
