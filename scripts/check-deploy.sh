#!/usr/bin/env bash
# Validates the deployment kit (Dockerfile, compose files, Kubernetes manifests, Prometheus rules,
# Grafana dashboard) with the tools this machine has, offline: each step says what it checked or
# why it skipped; any real validation failure makes the script exit non-zero.
# Usage: bash scripts/check-deploy.sh
set -euo pipefail
cd "$(dirname "$0")/.."

failures=0
step() { echo "== deploy: $*"; }
ok() { echo "   ok: $*"; }
skip() { echo "   skipped: $*"; }
fail() {
  echo "   FAILED: $*" >&2
  failures=$((failures + 1))
}
have() { command -v "$1" >/dev/null 2>&1; }
# Runs a command, printing its output only when it fails.
quietly() {
  local output
  if output="$("$@" 2>&1)"; then return 0; fi
  printf '%s\n' "$output" | sed 's/^/     /' >&2
  return 1
}

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

# --- shell scripts ----------------------------------------------------------------------------
step "shell scripts"
shell_scripts=(deploy/docker/entrypoint.sh deploy/scripts/k8s-deploy.sh scripts/check-deploy.sh)
if quietly sh -n deploy/docker/entrypoint.sh && quietly bash -n deploy/scripts/k8s-deploy.sh && quietly bash -n scripts/check-deploy.sh; then
  ok "syntax (sh -n, bash -n)"
else
  fail "shell syntax"
fi
if have shellcheck; then
  if quietly shellcheck "${shell_scripts[@]}"; then ok "shellcheck ${shell_scripts[*]}"; else fail "shellcheck"; fi
else
  skip "shellcheck is not installed (apt-get install shellcheck)"
fi

# --- Dockerfile -------------------------------------------------------------------------------
step "Dockerfile"
if have hadolint; then
  if quietly hadolint Dockerfile; then ok "hadolint Dockerfile"; else fail "hadolint Dockerfile"; fi
else
  skip "hadolint is not installed (it is not packaged by Debian); the image is not built here either"
fi

# --- compose ----------------------------------------------------------------------------------
step "docker compose files"
compose=()
if have docker && docker compose version >/dev/null 2>&1; then
  compose=(docker compose)
elif have docker-compose; then
  compose=(docker-compose)
fi
if [ "${#compose[@]}" -eq 0 ]; then
  skip "neither \`docker compose\` (the v2 plugin) nor docker-compose is installed"
else
  # A copy beside a .env of dummy values: `config` needs the env_file and the required variables,
  # and a real .env of this checkout must not be read (nor printed) by a check.
  mkdir -p "$work/compose"
  cp docker-compose.yml docker-compose.dev.yml "$work/compose/"
  sed -e 's/^POSTGRES_PASSWORD=.*/POSTGRES_PASSWORD=check-deploy-dummy-password/' \
      -e 's/^JWT_SECRET=.*/JWT_SECRET=check-deploy-dummy-secret-of-at-least-32-bytes/' \
      deploy/docker-compose.env.example >"$work/compose/.env"
  (
    cd "$work/compose"
    unset COMPOSE_FILE COMPOSE_PROFILES COMPOSE_PROJECT_NAME
    status=0
    if quietly "${compose[@]}" -f docker-compose.yml config -q; then
      ok "${compose[*]} -f docker-compose.yml config"
    else
      echo "   FAILED: docker-compose.yml" >&2
      status=1
    fi
    if quietly "${compose[@]}" -f docker-compose.yml -f docker-compose.dev.yml config -q; then
      ok "${compose[*]} -f docker-compose.yml -f docker-compose.dev.yml config"
    else
      echo "   FAILED: docker-compose.yml + docker-compose.dev.yml" >&2
      status=1
    fi
    exit "$status"
  ) || failures=$((failures + 1))
fi

# --- Prometheus rules and the dashboard's queries --------------------------------------------
step "Prometheus rules"
if have promtool; then
  if quietly promtool check rules deploy/prometheus/alerts.yml; then ok "promtool check rules deploy/prometheus/alerts.yml"; else fail "promtool check rules"; fi
  if (cd deploy/prometheus && quietly promtool test rules alerts.test.yml); then ok "promtool test rules deploy/prometheus/alerts.test.yml"; else fail "promtool test rules"; fi
else
  skip "promtool is not installed (apt-get install prometheus)"
fi

step "Grafana dashboard"
# Every query of the dashboard as a recording rule, Grafana's variables replaced, so promtool
# parses the PromQL; the JSON itself is parsed by Node.
# shellcheck disable=SC2016 # JavaScript in single quotes, not shell
if quietly node -e '
  const fs = require("node:fs");
  const dashboard = JSON.parse(fs.readFileSync("deploy/grafana/gateway-dashboard.json", "utf8"));
  const exprs = [];
  const visit = (panels) => { for (const panel of panels ?? []) { for (const target of panel.targets ?? []) exprs.push(target.expr); visit(panel.panels); } };
  visit(dashboard.panels);
  if (exprs.length === 0) throw new Error("no queries in the dashboard");
  const lines = ["groups:", "  - name: dashboard-queries", "    rules:"];
  exprs.forEach((expr, index) => {
    const concrete = expr.replaceAll("$__rate_interval", "5m").replaceAll("$__range", "1h").replaceAll("$__interval", "1m").replaceAll("$model", ".*");
    lines.push(`      - record: dashboard_query_${index}`, `        expr: ${JSON.stringify(concrete)}`);
  });
  fs.writeFileSync(process.argv[1], lines.join("\n") + "\n");
' "$work/dashboard-queries.yml"; then
  ok "deploy/grafana/gateway-dashboard.json parses"
  if have promtool; then
    if quietly promtool check rules "$work/dashboard-queries.yml"; then ok "every dashboard query is valid PromQL (promtool)"; else fail "dashboard PromQL"; fi
  else
    skip "the dashboard's PromQL: promtool is not installed"
  fi
else
  fail "deploy/grafana/gateway-dashboard.json"
fi

# --- Kubernetes -------------------------------------------------------------------------------
step "Kubernetes manifests"
if ! have kubectl; then
  skip "kubectl is not installed"
else
  # `kubectl apply --dry-run=client` still asks a cluster (discovery, OpenAPI). These work offline:
  # `label --local` reads every manifest (YAML, apiVersion, kind, name), and `set env|selector
  # --local` decodes workloads and Services into kubectl's typed objects, which rejects wrong types
  # and drops unknown fields — a dropped field is a typo.
  if quietly kubectl label --local --recursive -f deploy/kubernetes/ vcg-deploy-check=1 -o name; then
    ok "kubectl label --local -R -f deploy/kubernetes/: every manifest parses ($(find deploy/kubernetes -name '*.yaml' | wc -l) files)"
  else
    fail "kubectl could not read deploy/kubernetes/"
  fi
  typed_checked=0
  while IFS= read -r manifest; do
    kind="$(kubectl label --local -f "$manifest" vcg-deploy-check=1 -o 'jsonpath={.kind}' 2>/dev/null || true)"
    case "$kind" in
      Deployment|Job|StatefulSet|DaemonSet) typed=(set env --local -f "$manifest" VCG_DEPLOY_CHECK=1) ;;
      Service) typed=(set selector --local -f "$manifest" vcg-deploy-check=1) ;;
      *) continue ;;
    esac
    kubectl label --local -f "$manifest" vcg-deploy-check=1 -o json >"$work/plain.json" 2>"$work/error.txt" || true
    if ! kubectl "${typed[@]}" -o json >"$work/typed.json" 2>"$work/error.txt"; then
      fail "$manifest: $(tr '\n' ' ' <"$work/error.txt")"
      continue
    fi
    # shellcheck disable=SC2016 # JavaScript in single quotes, not shell
    if quietly node -e '
      const fs = require("node:fs");
      const [plainPath, typedPath] = process.argv.slice(1);
      const plain = JSON.parse(fs.readFileSync(plainPath, "utf8"));
      const typed = JSON.parse(fs.readFileSync(typedPath, "utf8"));
      const ignored = new Set(["metadata.labels.vcg-deploy-check", "spec.selector"]);
      const dropped = [];
      const walk = (left, right, path) => {
        if (Array.isArray(left)) { left.forEach((item, index) => walk(item, Array.isArray(right) ? right[index] : undefined, `${path}[${index}]`)); return; }
        if (left === null || typeof left !== "object") return;
        for (const key of Object.keys(left)) {
          const child = path === "" ? key : `${path}.${key}`;
          if (ignored.has(child)) continue;
          if (right === null || typeof right !== "object" || !(key in right)) { dropped.push(child); continue; }
          walk(left[key], right[key], child);
        }
      };
      walk(plain, typed, "");
      if (dropped.length > 0) { console.error(`unknown fields (dropped by the ${typed.kind} schema): ${dropped.join(", ")}`); process.exit(1); }
    ' "$work/plain.json" "$work/typed.json"; then
      typed_checked=$((typed_checked + 1))
    else
      fail "$manifest has fields its kind does not know"
    fi
  done < <(find deploy/kubernetes -name '*.yaml' | sort)
  ok "$typed_checked workload and Service manifests decode into kubectl's types with no unknown field"
  echo "   note: no cluster here; against yours: kubectl apply --dry-run=server -f deploy/kubernetes/"
fi

if [ "$failures" -gt 0 ]; then
  echo "== deploy: $failures check(s) failed" >&2
  exit 1
fi
echo "== deploy: all available checks passed"
