#!/usr/bin/env bash
# Checks the alerting rules and the Grafana dashboard; exits non-zero on any failure.
#
#   scripts/check-alerts.sh
#
# 1. `promtool check rules` on every rules file in deploy/prometheus (not the *_test.yml files);
# 2. `promtool test rules deploy/prometheus/alerts_test.yml`: the unit tests that fire each alert;
# 3. deploy/grafana/photo-api.json: the JSON parses; it has the `datasource` and `component`
#    variables; every panel (rows aside) has queries on the `${datasource}` data source; every
#    query parses as PromQL (promtool checks them as recording rules, with the Grafana variables
#    replaced) and uses only the metric names of deploy/metrics.txt;
# 4. the rules use only the metric names of deploy/metrics.txt, `up` and their own recorded names.
#
# promtool comes from scripts/promtool.sh (installs Debian's prometheus package if missing).
set -euo pipefail
cd "$(dirname "$0")/.."

PROMTOOL=$(scripts/promtool.sh)
"$PROMTOOL" --version 2>&1 | head -1
TMP=$(mktemp -d -t photo-api-check-alerts.XXXXXX)
trap 'rm -rf "$TMP"' EXIT

RULES=()
for f in deploy/prometheus/*.yml; do
  case "$f" in *_test.yml) ;; *) RULES+=("$f") ;; esac
done

echo "--- promtool check rules ${RULES[*]}"
"$PROMTOOL" check rules "${RULES[@]}"

echo "--- promtool test rules deploy/prometheus/alerts_test.yml"
"$PROMTOOL" test rules deploy/prometheus/alerts_test.yml

echo "--- dashboard deploy/grafana/photo-api.json and metric names (deploy/metrics.txt)"
python3 - "$TMP/dashboard-queries.yml" "${RULES[@]}" <<'PY'
import json, re, sys

out, rule_files = sys.argv[1], sys.argv[2:]
errors = []

families = set()
with open("deploy/metrics.txt") as f:
    for line in f:
        line = line.strip()
        if line and not line.startswith("#"):
            families.add(line)

def allowed(name, extra=()):
    if name in families or name in extra:
        return True
    m = re.fullmatch(r"(.+)_(bucket|sum|count)", name)
    return bool(m and m.group(1) in families and not m.group(1).endswith("_total"))

KEYWORDS = {"and", "or", "unless", "bool", "by", "without", "on", "ignoring", "group_left",
            "group_right", "offset", "inf", "nan", "start", "end"}

def metric_names(expr):
    """The metric names a PromQL expression selects (good enough for our queries)."""
    e = re.sub(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`', '""', expr)  # strings
    e = re.sub(r"\{[^}]*\}", " ", e)                                              # label matchers
    e = re.sub(r"\[[^\]]*\]", " ", e)                                             # ranges
    e = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", e)
    e = re.sub(r"\$\{[^}]*\}|\$\w+", " ", e)                                      # Grafana vars
    e = re.sub(r"\boffset\s+\S+", " ", e)
    names = set()
    for m in re.finditer(r"(?<![\w.:])[A-Za-z_:][\w:]*", e):
        rest = e[m.end():].lstrip()
        if rest.startswith("(") or m.group(0).lower() in KEYWORDS:
            continue  # a function, an aggregation or a keyword
        names.add(m.group(0))
    return names

# ---- the dashboard
try:
    with open("deploy/grafana/photo-api.json") as f:
        dash = json.load(f)
except (OSError, ValueError) as e:
    print(f"dashboard: {e}")
    sys.exit(1)

variables = {v.get("name"): v for v in dash.get("templating", {}).get("list", [])}
if variables.get("datasource", {}).get("type") != "datasource" or variables["datasource"].get("query") != "prometheus":
    errors.append("dashboard: no Prometheus `datasource` variable")
if "component" not in variables:
    errors.append("dashboard: no `component` variable")

def all_panels(panels):
    for p in panels:
        yield p
        yield from all_panels(p.get("panels", []))

ids = set()
queries = []
used = set()
for p in all_panels(dash.get("panels", [])):
    title = p.get("title", "?")
    if p.get("id") in ids:
        errors.append(f"panel {title!r}: duplicate id {p.get('id')}")
    ids.add(p.get("id"))
    if p.get("type") == "row":
        continue
    if "gridPos" not in p:
        errors.append(f"panel {title!r}: no gridPos")
    targets = p.get("targets") or []
    if not targets:
        errors.append(f"panel {title!r}: no targets")
    for t in targets:
        expr = (t.get("expr") or "").strip()
        if not expr:
            errors.append(f"panel {title!r} {t.get('refId')}: empty expr")
            continue
        ds = t.get("datasource") or p.get("datasource") or {}
        if ds.get("uid") != "${datasource}":
            errors.append(f"panel {title!r} {t.get('refId')}: data source is not ${{datasource}}")
        for name in sorted(metric_names(expr)):
            used.add(name)
            if not allowed(name):
                errors.append(f"panel {title!r} {t.get('refId')}: unknown metric {name!r} in {expr}")
        queries.append((p.get("id"), t.get("refId"), expr))

# Every query as a recording rule, for promtool to parse.
with open(out, "w") as f:
    f.write("groups:\n  - name: dashboard-queries\n    rules:\n")
    for pid, ref, expr in queries:
        e = re.sub(r"\$__(rate_interval|interval|range)\b|\$\{__(rate_interval|interval|range)\}", "5m", expr)
        e = re.sub(r"\$\{component[^}]*\}|\$component\b", ".*", e)
        f.write(f"      - record: dashboard_panel_{pid}_{ref}\n        expr: {json.dumps(e)}\n")

# ---- the rules' metric names
try:
    import yaml
except ImportError:
    yaml = None
    print("note: python3 yaml module missing (Debian: python3-yaml); the rules' metric names are not checked")
if yaml:
    for path in rule_files:
        with open(path) as f:
            doc = yaml.safe_load(f) or {}
        rules = [r for g in doc.get("groups", []) for r in g.get("rules", [])]
        recorded = {r["record"] for r in rules if "record" in r}
        for r in rules:
            for name in sorted(metric_names(str(r.get("expr", "")))):
                used.add(name)
                if not allowed(name, recorded | {"up"}):
                    errors.append(f"{path}: {r.get('alert') or r.get('record')}: unknown metric {name!r}")

unused = sorted(n for n in families if not any(u == n or u.startswith(n + "_") for u in used))
print(f"{len(queries)} dashboard queries in {sum(1 for p in all_panels(dash['panels']) if p.get('type') != 'row')} panels checked")
if unused:
    print("on no panel and in no rule (fine, just so you know): " + ", ".join(unused))
for e in errors:
    print("ERROR " + e)
sys.exit(1 if errors else 0)
PY

echo "--- dashboard queries parse as PromQL"
"$PROMTOOL" check rules "$TMP/dashboard-queries.yml"

echo "alerting rules and dashboard: OK"
