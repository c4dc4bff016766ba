#!/usr/bin/env python3
"""Generates docs/crd-reference.md from the CRD's OpenAPI schema.

Usage: gen-crd-reference.py [--check] [CRD] [OUT]
  CRD  default crds/ballast.dev_configbundles.yaml
  OUT  default docs/crd-reference.md
  --check  don't write: exit 1 (with a diff) if OUT is not what would be
           generated.

Every field of the schema gets a row (path, type, constraints, description),
so the reference cannot drift from the CRD: tests/helm/test-chart.sh runs
this with --check.
"""

import difflib
import os
import sys

import yaml

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
GENERATOR = "tests/helm/gen-crd-reference.py"


def one_line(text):
    return " ".join(str(text).split())


def cell(text):
    """Markdown table cell: one line, pipes escaped."""
    return one_line(text).replace("|", "\\|")


def code(text):
    """Inline code that survives backticks and pipes inside a table."""
    s = str(text).replace("|", "\\|")
    fence = "``" if "`" in s else "`"
    pad = " " if s.startswith("`") or s.endswith("`") else ""
    return f"{fence}{pad}{s}{pad}{fence}"


def type_of(s):
    t = s.get("type", "")
    if t == "array":
        item = s.get("items", {})
        return f"[]{type_of(item)}"
    if t == "object" and "additionalProperties" in s and not s.get("properties"):
        ap = s["additionalProperties"]
        if isinstance(ap, dict):
            return f"map[string]{type_of(ap)}"
    if t == "integer" and s.get("format"):
        return f"integer ({s['format']})"
    if t == "string" and s.get("format"):
        return f"string ({s['format']})"
    return t or "any"


def constraints(s):
    out = []
    for key, label in (
        ("minLength", "min length"),
        ("maxLength", "max length"),
        ("minItems", "min items"),
        ("maxItems", "max items"),
        ("minProperties", "min entries"),
        ("maxProperties", "max entries"),
        ("minimum", "minimum"),
        ("maximum", "maximum"),
    ):
        if key in s:
            out.append(f"{label} {s[key]}")
    if "enum" in s:
        out.append("one of " + ", ".join(code(v) for v in s["enum"]))
    if "pattern" in s:
        out.append("pattern " + code(s["pattern"]))
    if "default" in s:
        out.append("default " + code(yaml.safe_dump(s["default"], default_flow_style=True).strip().removesuffix("...").strip()))
    if s.get("x-kubernetes-list-type") == "map":
        keys = ", ".join(s.get("x-kubernetes-list-map-keys", []))
        out.append(f"list keyed by {code(keys)} (unique)")
    item = s.get("items")
    if s.get("type") == "array" and isinstance(item, dict) and not item.get("properties"):
        for key, label in (("minLength", "item min length"), ("maxLength", "item max length"),
                           ("pattern", "item pattern")):
            if key in item:
                out.append(f"{label} {code(item[key]) if key == 'pattern' else item[key]}")
    ap = s.get("additionalProperties")
    if isinstance(ap, dict) and not s.get("properties"):
        for key, label in (("maxLength", "value max length"),):
            if key in ap:
                out.append(f"{label} {ap[key]}")
    for rule in s.get("x-kubernetes-validations", []):
        msg = rule.get("message") or one_line(rule["rule"])
        out.append(f"rule: {cell(msg)}")
    return "; ".join(out)


def walk(s, path, required, rows):
    """Appends (path, type, required, constraints, description) rows."""
    rows.append((path, type_of(s), required, constraints(s), s.get("description", "")))
    props = s.get("properties")
    if props is None and s.get("type") == "array":
        item = s.get("items", {})
        if item.get("properties"):
            item_path = path + "[]"
            # Constraints of the item itself (like CEL rules) belong to the list.
            item_rules = constraints({k: v for k, v in item.items() if k == "x-kubernetes-validations"})
            if item_rules:
                p, t, r, c, d = rows[-1]
                rows[-1] = (p, t, r, "; ".join(x for x in (c, "each item: " + item_rules) if x), d)
            req = set(item.get("required", []))
            for name in item["properties"]:
                walk(item["properties"][name], f"{item_path}.{name}", name in req, rows)
        return
    if props:
        req = set(s.get("required", []))
        for name in props:
            walk(props[name], f"{path}.{name}", name in req, rows)


def table(rows, strip):
    lines = [
        "| Field | Type | Required | Constraints | Description |",
        "|---|---|---|---|---|",
    ]
    for path, typ, req, cons, desc in rows:
        field = path[len(strip):] if path.startswith(strip) else path
        lines.append(f"| {code(field)} | {cell(typ)} | {'yes' if req else ''} | {cons} | {cell(desc)} |")
    return "\n".join(lines)


def generate(crd_path):
    with open(crd_path, encoding="utf-8") as f:
        crd = yaml.safe_load(f)
    spec = crd["spec"]
    names = spec["names"]
    group = spec["group"]
    out = []
    rel = os.path.relpath(crd_path, REPO)
    out.append(f"<!-- Generated by {GENERATOR} from {rel}. Do not edit: change the CRD and run `make crd-reference`. -->")
    out.append("")
    out.append(f"# {names['kind']} reference")
    out.append("")
    out.append(
        f"`{names['kind']}` (`{group}`, plural `{names['plural']}`"
        + (", short names " + ", ".join(f"`{n}`" for n in names.get("shortNames", [])) if names.get("shortNames") else "")
        + f") is {'namespaced' if spec['scope'] == 'Namespaced' else 'cluster-scoped'}. Install the CRD with"
        " `kubectl apply -f crds/` or the Helm chart (which ships the same file); examples are in"
        " [examples/](examples/). Fields are written as paths from the object's root; `[]` marks the"
        " items of a list. The API server enforces every constraint listed here; what it cannot check"
        " (template errors, total size) is reported in the `Rendered` condition. How the operator"
        " renders and publishes a bundle: [operator.md](operator.md)."
    )
    for version in spec["versions"]:
        schema = version["schema"]["openAPIV3Schema"]
        out.append("")
        out.append(f"## {group}/{version['name']}")
        out.append("")
        flags = []
        flags.append("served" if version.get("served") else "not served")
        if version.get("storage"):
            flags.append("storage version")
        if "status" in version.get("subresources", {}):
            flags.append("status subresource")
        out.append(", ".join(flags).capitalize() + ".")
        out.append("")
        out.append(one_line(schema.get("description", "")))
        cols = version.get("additionalPrinterColumns", [])
        if cols:
            out.append("")
            out.append("### Columns of `kubectl get`")
            out.append("")
            out.append("| Column | From | Shown | Description |")
            out.append("|---|---|---|---|")
            for c in cols:
                shown = "with `-o wide`" if c.get("priority", 0) > 0 else "always"
                out.append(f"| {cell(c['name'])} | {code(c['jsonPath'])} | {shown} | {cell(c.get('description', ''))} |")
        for top in ("spec", "status"):
            if top not in schema.get("properties", {}):
                continue
            rows = []
            sub = schema["properties"][top]
            walk(sub, top, top in schema.get("required", []), rows)
            out.append("")
            out.append(f"### `{top}`")
            out.append("")
            out.append(one_line(sub.get("description", "")))
            out.append("")
            out.append(table(rows[1:], ""))
    out.append("")
    return "\n".join(out)


def main(argv):
    check = "--check" in argv
    args = [a for a in argv if a != "--check"]
    crd = args[0] if len(args) > 0 else os.path.join(REPO, "crds/ballast.dev_configbundles.yaml")
    dst = args[1] if len(args) > 1 else os.path.join(REPO, "docs/crd-reference.md")
    text = generate(crd)
    if check:
        try:
            with open(dst, encoding="utf-8") as f:
                have = f.read()
        except FileNotFoundError:
            have = ""
        if have != text:
            sys.stdout.writelines(
                difflib.unified_diff(have.splitlines(True), text.splitlines(True), dst, "generated")
            )
            print(f"{dst} is out of date: run `python3 {GENERATOR}`", file=sys.stderr)
            return 1
        return 0
    with open(dst + ".tmp", "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(dst + ".tmp", dst)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
