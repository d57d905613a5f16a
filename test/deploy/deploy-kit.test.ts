// The deployment kit against the code it deploys: every metric the Grafana dashboard and the
// Prometheus alerts query is served on /metrics, and the Dockerfile, entrypoint, compose files and
// Kubernetes manifests say what docs/operations.md promises. No YAML parser (no dependency for
// this): the YAML files are written in a plain subset, read here line by line.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CHAT_PATH, SIM_MODEL, callGateway, chatMessages, metricsText, newCaller, startRelay, type Relay } from '../helpers/relay-fixtures.js';

const root = fileURLToPath(new URL('../../', import.meta.url));
const read = (path: string): string => readFileSync(join(root, path), 'utf8');

// --- PromQL ------------------------------------------------------------------------------------

const PROMQL_KEYWORDS = new Set(['and', 'or', 'unless', 'by', 'without', 'on', 'ignoring', 'group_left', 'group_right', 'offset', 'bool', 'inf', 'nan', 'atan2']);
/** Labels Prometheus adds to every scraped series; they are never on /metrics itself. */
const TARGET_LABELS = new Set(['instance', 'job']);

interface MetricUse {
  name: string;
  /** Label names in the selector's matchers, e.g. `{status_code=~"5.."}` → status_code. */
  labels: string[];
}

/** The metrics a PromQL expression reads (functions, keywords, labels, durations and Grafana variables left out). */
function metricsIn(expression: string): MetricUse[] {
  const uses: MetricUse[] = [];
  const text = expression
    .replace(/"(?:[^"\\]|\\.)*"/g, '""')
    .replace(/\[[^\]]*\]/g, ' ')
    .replace(/\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)/g, ' ')
    .replace(/\$\{?\w+\}?/g, ' ');
  const token = /(\d[\w.]*)|([a-zA-Z_:][\w:]*)\s*(\{[^}]*\})?(\s*\()?/g;
  for (const match of text.matchAll(token)) {
    const [, number, name, matchers, call] = match;
    if (number !== undefined || name === undefined || call !== undefined || PROMQL_KEYWORDS.has(name)) continue;
    const labels = matchers === undefined ? [] : [...matchers.matchAll(/([a-zA-Z_]\w*)\s*(?:=~|!~|!=|=)/g)].map((labelMatch) => labelMatch[1]!);
    uses.push({ name, labels });
  }
  return uses;
}

interface MetricsInventory {
  types: Map<string, string>;
  /** Label names seen on each metric family's samples (empty when it has no sample yet). */
  labels: Map<string, Set<string>>;
}

function inventoryOf(exposition: string): MetricsInventory {
  const types = new Map<string, string>();
  const labels = new Map<string, Set<string>>();
  for (const line of exposition.split('\n')) {
    const type = /^# TYPE (\S+) (\S+)$/.exec(line);
    if (type !== null) types.set(type[1]!, type[2]!);
  }
  for (const line of exposition.split('\n')) {
    const sample = /^([a-zA-Z_:][\w:]*)(?:\{(.*)\})? /.exec(line);
    if (sample === null) continue;
    const family = familyOf(sample[1]!, types) ?? sample[1]!;
    const names = labels.get(family) ?? new Set<string>();
    for (const label of (sample[2] ?? '').matchAll(/([a-zA-Z_]\w*)="/g)) names.add(label[1]!);
    labels.set(family, names);
  }
  return { types, labels };
}

/** The metric family a series name belongs to: itself, or a histogram/summary's `_bucket`/`_sum`/`_count`. */
function familyOf(name: string, types: Map<string, string>): string | null {
  if (types.has(name)) return name;
  const suffixed = /^(.*)_(bucket|sum|count)$/.exec(name);
  if (suffixed === null) return null;
  const type = types.get(suffixed[1]!);
  if (type === 'histogram' || (type === 'summary' && suffixed[2] !== 'bucket')) return suffixed[1]!;
  return null;
}

// --- the files ---------------------------------------------------------------------------------

interface DashboardPanel {
  id?: number;
  type: string;
  title: string;
  gridPos: { x: number; y: number; w: number; h: number };
  datasource?: { uid: string };
  targets?: Array<{ expr: string; refId: string }>;
  panels?: DashboardPanel[];
}

interface Dashboard {
  uid: string;
  title: string;
  panels: DashboardPanel[];
  templating: { list: Array<{ name: string; type: string; query?: unknown; definition?: string }> };
}

function dashboardPanels(dashboard: Dashboard): DashboardPanel[] {
  const all: DashboardPanel[] = [];
  const visit = (panels: DashboardPanel[] | undefined): void => {
    for (const panel of panels ?? []) {
      all.push(panel);
      visit(panel.panels);
    }
  };
  visit(dashboard.panels);
  return all;
}

interface AlertRule {
  alert: string;
  expr: string;
  for: string | null;
  severity: string | null;
  summary: string | null;
}

/**
 * Reads the alert rules of a Prometheus rule file written in the plain YAML subset of alerts.yml:
 * `- alert: NAME` opens a rule; `expr:` is one line or a `|` block; `for:`, `severity:`, `summary:`.
 */
function alertRules(yaml: string): AlertRule[] {
  const rules: AlertRule[] = [];
  const lines = yaml.split('\n');
  let rule: AlertRule | null = null;
  for (let index = 0; index < lines.length; index += 1) {
    const line = lines[index]!;
    const start = /^\s*- alert: (\S+)\s*$/.exec(line);
    if (start !== null) {
      rule = { alert: start[1]!, expr: '', for: null, severity: null, summary: null };
      rules.push(rule);
      continue;
    }
    if (rule === null) continue;
    const field = /^(\s*)(expr|for|severity|summary): ?(.*)$/.exec(line);
    if (field === null) continue;
    const [, indent, key, value] = field as unknown as [string, string, string, string];
    if (key === 'expr' && (value === '|' || value === '>')) {
      const block: string[] = [];
      while (index + 1 < lines.length && (lines[index + 1]!.trim() === '' || lines[index + 1]!.search(/\S/) > indent.length)) {
        index += 1;
        block.push(lines[index]!.trim());
      }
      rule.expr = block.join(' ').trim();
    } else if (key === 'expr') rule.expr = value.trim();
    else if (key === 'for') rule.for = value.trim();
    else if (key === 'severity') rule.severity = value.trim();
    else rule.summary = value.trim();
  }
  return rules;
}

/**
 * The services of a compose file written in the plain subset of ours: two-space indentation,
 * `services:` at the top level. Each service's text, and the services it `depends_on`.
 */
function composeServices(yaml: string): Map<string, { text: string; dependsOn: string[] }> {
  const services = new Map<string, { text: string; dependsOn: string[] }>();
  const lines = yaml.split('\n');
  const start = lines.indexOf('services:');
  expect(start, 'a top-level services: key').toBeGreaterThanOrEqual(0);
  let current: string | null = null;
  let inDependsOn = false;
  for (const line of lines.slice(start + 1)) {
    if (/^\S/.test(line)) break;
    const service = /^ {2}([a-z0-9-]+):\s*$/.exec(line);
    if (service !== null) {
      current = service[1]!;
      services.set(current, { text: '', dependsOn: [] });
      inDependsOn = false;
      continue;
    }
    if (current === null) continue;
    const entry = services.get(current)!;
    entry.text += `${line}\n`;
    if (/^ {4}\S/.test(line)) inDependsOn = /^ {4}depends_on:/.test(line);
    const dependency = /^ {6}([a-z0-9-]+):\s*$/.exec(line);
    if (inDependsOn && dependency !== null) entry.dependsOn.push(dependency[1]!);
  }
  return services;
}

/** A `KEY: value` in a YAML block (quotes removed), or null. */
function yamlValue(text: string, key: string): string | null {
  const match = new RegExp(`^\\s*${key}: *"?([^"\\n]*?)"?\\s*$`, 'm').exec(text);
  return match === null ? null : match[1]!;
}

// --- tests -------------------------------------------------------------------------------------

describe('deployment kit', () => {
  describe('every metric the dashboard and the alerts use is on /metrics', () => {
    let relay: Relay;
    let inventory: MetricsInventory;

    beforeAll(async () => {
      relay = await startRelay({ backend: 'embedded', environment: { RATE_LIMIT_REQUESTS: '5' } });
      const caller = await newCaller(relay.app);
      const send = (extra: Record<string, unknown>) =>
        callGateway({ url: relay.url, path: CHAT_PATH, credential: caller.apiKey, body: { model: SIM_MODEL, messages: chatMessages('hello'), max_tokens: 5, ...extra } });
      // A little of everything, so the labelled families have samples: a stream and a JSON answer,
      // a vLLM failure, a stream vLLM cuts, then requests past the limit (429).
      expect((await send({ stream: true })).status).toBe(200);
      expect((await send({})).status).toBe(200);
      expect((await send({ sim_fault: { status: 500 } })).status).toBe(502);
      expect((await send({ stream: true, sim_fault: { cut_after_chunks: 2 } })).status).toBe(200);
      let limited = false;
      for (let attempt = 0; attempt < 10 && !limited; attempt += 1) limited = (await send({})).status === 429;
      expect(limited, 'a request past RATE_LIMIT_REQUESTS is refused').toBe(true);
      inventory = inventoryOf(await metricsText(relay.url));
    });

    afterAll(async () => {
      await relay?.close();
    });

    it('reads metric names out of PromQL and leaves functions, labels and variables alone', () => {
      const uses = metricsIn(
        'histogram_quantile(0.9, sum by (le, model) (rate(ttft_bucket{model=~"$model", status!="a b"}[$__rate_interval] offset 1d))) > 2 * scalar(sum(requests_total)) and on(instance) up_gauge unless vector(0)',
      );
      expect(uses).toEqual([
        { name: 'ttft_bucket', labels: ['model', 'status'] },
        { name: 'requests_total', labels: [] },
        { name: 'up_gauge', labels: [] },
      ]);
    });

    it('the Grafana dashboard queries only metrics and labels the gateway serves', () => {
      const dashboard = JSON.parse(read('deploy/grafana/gateway-dashboard.json')) as Dashboard;
      const expressions = dashboardPanels(dashboard).flatMap((panel) => (panel.targets ?? []).map((target) => target.expr));
      expect(expressions.length).toBeGreaterThan(20);
      const used = checkUses(expressions, inventory);
      // What the dashboard is for: traffic, errors, latency, TTFT, ITL, tokens, streams, aborts, limits, upstream health.
      expect([...used].sort()).toEqual(
        expect.arrayContaining([
          'http_requests_total',
          'http_request_duration_seconds',
          'chat_requests_total',
          'chat_request_duration_seconds',
          'chat_time_to_first_token_seconds',
          'chat_inter_token_latency_seconds',
          'chat_completion_tokens_total',
          'chat_prompt_tokens_total',
          'chat_active_streams',
          'chat_aborted_streams_total',
          'rate_limit_rejections_total',
          'rate_limit_store_fallback_active',
          'upstream_errors_total',
          'upstream_healthy',
          'process_cpu_seconds_total',
        ]),
      );
      // The model variable: label_values(metric, label).
      for (const variable of dashboard.templating.list.filter((entry) => entry.type === 'query')) {
        const query = JSON.stringify(variable.query);
        const labelValues = /label_values\((\w+),\s*(\w+)\)/.exec(query);
        expect(labelValues, `variable ${variable.name}: ${query}`).not.toBeNull();
        expect(inventory.types.has(labelValues![1]!), labelValues![1]).toBe(true);
        expect([...(inventory.labels.get(labelValues![1]!) ?? [])]).toContain(labelValues![2]);
      }
    });

    it('the Prometheus alerts query only metrics and labels the gateway serves', () => {
      const rules = alertRules(read('deploy/prometheus/alerts.yml'));
      expect(rules.length).toBeGreaterThan(5);
      const used = checkUses(
        rules.map((rule) => rule.expr),
        inventory,
      );
      expect([...used]).toEqual(expect.arrayContaining(['http_requests_total', 'upstream_healthy', 'upstream_errors_total', 'chat_time_to_first_token_seconds', 'rate_limit_store_fallback_active']));
    });
  });

  describe('Grafana dashboard', () => {
    const dashboard = JSON.parse(read('deploy/grafana/gateway-dashboard.json')) as Dashboard;
    const panels = dashboardPanels(dashboard);

    it('has a stable uid, unique panel ids, and panels inside the 24-column grid', () => {
      expect(dashboard.uid).toBe('vllm-chat-gateway');
      expect(dashboard.title).toBe('vLLM Chat Gateway');
      const ids = panels.map((panel) => panel.id);
      expect(new Set(ids).size).toBe(ids.length);
      for (const panel of panels) {
        expect(panel.gridPos.x + panel.gridPos.w, panel.title).toBeLessThanOrEqual(24);
      }
    });

    it('queries the Prometheus data source chosen in its variable, with Grafana’s rate interval', () => {
      expect(dashboard.templating.list.map((variable) => variable.name)).toEqual(expect.arrayContaining(['datasource', 'model']));
      for (const panel of panels.filter((entry) => entry.type !== 'row')) {
        expect(panel.datasource?.uid, panel.title).toBe('${datasource}');
        expect(panel.targets?.length, panel.title).toBeGreaterThan(0);
        for (const target of panel.targets ?? []) {
          if (target.expr.includes('rate(')) expect(target.expr, panel.title).toMatch(/\[\$__(rate_interval|range)\]/);
        }
      }
    });
  });

  describe('Prometheus alerts', () => {
    const rules = alertRules(read('deploy/prometheus/alerts.yml'));

    it('covers error rate, vLLM down, time-to-first-token regression and the Redis fallback', () => {
      expect(rules.map((rule) => rule.alert)).toEqual(
        expect.arrayContaining(['GatewayHighErrorRate', 'VllmUpstreamDown', 'VllmNoHealthyUpstream', 'VllmRequestsFailing', 'TimeToFirstTokenRegression', 'RateLimitRedisFallbackActive']),
      );
      expect(rules.find((rule) => rule.alert === 'TimeToFirstTokenRegression')?.expr).toMatch(/offset 1d/);
    });

    it('gives every rule a unique name, an expression, a severity and a summary', () => {
      expect(new Set(rules.map((rule) => rule.alert)).size).toBe(rules.length);
      for (const rule of rules) {
        expect(rule.expr, rule.alert).not.toBe('');
        expect(['page', 'warning'], rule.alert).toContain(rule.severity);
        expect(rule.summary, rule.alert).toBeTruthy();
        if (rule.for !== null) expect(rule.for, rule.alert).toMatch(/^\d+[smh]$/);
      }
    });
  });

  describe('Dockerfile and entrypoint', () => {
    const dockerfile = read('Dockerfile');
    const stages = dockerfile.split(/^FROM /m).slice(1);
    const stage = (name: string): string => {
      const found = stages.find((text) => new RegExp(`^\\S+ AS ${name}\\s*$`, 'm').test(text.split('\n')[0]!));
      expect(found, `stage ${name}`).toBeDefined();
      return found!;
    };

    it('builds with dev dependencies and runs with production ones only, on glibc Node 20', () => {
      expect(dockerfile).toMatch(/^ARG NODE_IMAGE=node:20-bookworm-slim$/m);
      expect(stage('build')).toMatch(/^RUN npm ci$/m);
      expect(stage('build')).toMatch(/^RUN npm run build$/m);
      expect(stage('production-dependencies')).toMatch(/^RUN npm ci --omit=dev\b/m);
      const runtime = stage('runtime');
      expect(stages.at(-1), 'runtime is the last stage, so the default target').toBe(runtime);
      // What the process needs at run time: package.json (the package root), migrations, dist, node_modules.
      for (const copied of [/COPY --from=production-dependencies \/app\/node_modules \.\/node_modules/, /COPY package\.json/, /COPY migrations \.\/migrations/, /COPY --from=build \/app\/dist\/src \.\/dist\/src/]) {
        expect(runtime).toMatch(copied);
      }
    });

    it('runs as a non-root user under tini, with a health check on /health/live', () => {
      for (const name of ['runtime', 'dev']) {
        expect(stage(name)).toMatch(/^USER 1000:1000$/m);
        expect(stage(name)).toMatch(/^ENTRYPOINT \["\/usr\/bin\/tini", "--", "\/usr\/local\/bin\/gateway-entrypoint"\]$/m);
      }
      expect(stage('base')).toMatch(/apt-get install -y --no-install-recommends tini/);
      expect(stage('runtime')).toMatch(/^HEALTHCHECK [^\n]*\\\n\s+CMD \["node", "-e", "fetch\('http:\/\/127\.0\.0\.1:'\+\(process\.env\.PORT\|\|8080\)\+'\/health\/live'\)/m);
    });

    it('copies only files that exist and that .dockerignore lets into the build context', () => {
      const ignored = read('.dockerignore')
        .split('\n')
        .map((line) => line.trim())
        .filter((line) => line !== '' && !line.startsWith('#'));
      const excluded = (path: string): boolean => {
        let result = false;
        for (const pattern of ignored) {
          const negated = pattern.startsWith('!');
          const glob = negated ? pattern.slice(1) : pattern;
          const expression = new RegExp(`^${glob.replace(/[.+^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '[^/]*')}(/|$)`);
          if (expression.test(path)) result = !negated;
        }
        return result;
      };
      const sources = [...dockerfile.matchAll(/^COPY (?!--from)(?:--\S+ )*(.+) \S+$/gm)].flatMap((match) => match[1]!.split(' '));
      expect(sources).toEqual(expect.arrayContaining(['package.json', 'package-lock.json', 'src', 'migrations', 'deploy/docker/entrypoint.sh']));
      for (const source of sources) {
        expect(existsSync(join(root, source)), source).toBe(true);
        expect(excluded(source), `${source} is excluded by .dockerignore`).toBe(false);
      }
      for (const secret of ['.env', '.env.production', 'data', 'node_modules', '.git']) expect(excluded(secret), secret).toBe(true);
    });

    describe('the entrypoint maps its first argument to a command', () => {
      let fakeApp: string;

      beforeAll(() => {
        // Stand-ins for the three programs, printing what they were started with.
        fakeApp = mkdtempSync(join(tmpdir(), 'vcg-entrypoint-'));
        const programs: Record<string, string> = { 'dist/src/main.js': 'gateway', 'dist/src/cli/main.js': 'cli', 'dist/src/sim/cli.js': 'sim' };
        for (const [path, label] of Object.entries(programs)) {
          mkdirSync(join(fakeApp, path, '..'), { recursive: true });
          writeFileSync(join(fakeApp, path), `console.log(JSON.stringify([${JSON.stringify(label)}, ...process.argv.slice(2)]));\n`);
        }
      });

      afterAll(() => {
        rmSync(fakeApp, { recursive: true, force: true });
      });

      const run = (...args: string[]) => {
        const result = spawnSync('sh', [join(root, 'deploy/docker/entrypoint.sh'), ...args], {
          env: { PATH: process.env.PATH ?? '', GATEWAY_APP_DIR: fakeApp },
          encoding: 'utf8',
        });
        expect(result.status, result.stderr).toBe(0);
        return { started: JSON.parse(result.stdout) as string[], stderr: result.stderr };
      };

      it.each([
        [['migrate', 'latest'], ['cli', 'migrate', 'latest']],
        [['migrate', 'down'], ['cli', 'migrate', 'down']],
        [['cli', 'users', 'list'], ['cli', 'users', 'list']],
        [['sim', '--host', '0.0.0.0', '--port', '8000'], ['sim', '--host', '0.0.0.0', '--port', '8000']],
        [['gateway'], ['gateway']],
        [[], ['gateway']],
      ])('%j → %j', (args, expected) => {
        expect(run(...args).started).toEqual(expected);
      });

      it('starts the gateway for an unknown word, and says so', () => {
        const { started, stderr } = run('serve');
        expect(started).toEqual(['gateway']);
        expect(stderr).toMatch(/"serve" is not migrate, cli or sim/);
      });
    });
  });

  describe('compose files', () => {
    const production = composeServices(read('docker-compose.yml'));
    const development = composeServices(read('docker-compose.dev.yml'));
    const productionText = read('docker-compose.yml');

    it('runs the gateway, its migration, PostgreSQL 16, Redis 7 and vLLM on an NVIDIA GPU', () => {
      expect([...production.keys()].sort()).toEqual(['gateway', 'migrate', 'postgres', 'redis', 'vllm']);
      expect(production.get('postgres')!.text).toMatch(/image: postgres:16/);
      expect(production.get('redis')!.text).toMatch(/image: redis:7/);
      const vllm = production.get('vllm')!.text;
      expect(vllm).toMatch(/image: vllm\/vllm-openai:/);
      expect(vllm).toMatch(/\$\{VLLM_MODEL:-[^}]+\}/);
      expect(vllm).toMatch(/driver: nvidia[\s\S]*capabilities: \[gpu\]/);
      expect(production.get('migrate')!.text).toMatch(/command: \["migrate", "latest"\]/);
    });

    it('checks health everywhere and starts the gateway after its dependencies are healthy and migrated', () => {
      for (const name of ['postgres', 'redis', 'vllm', 'gateway']) expect(production.get(name)!.text, name).toMatch(/healthcheck:\n(?:\s+#.*\n)*\s+test:/);
      expect(production.get('gateway')!.text).toMatch(/postgres:\n\s+condition: service_healthy/);
      expect(production.get('gateway')!.text).toMatch(/redis:\n\s+condition: service_healthy/);
      expect(production.get('gateway')!.text).toMatch(/migrate:\n\s+condition: service_completed_successfully/);
      expect(production.get('gateway')!.text).toMatch(/healthcheck:\n\s+test: \[[^\n]*\/health\/live/);
      expect(production.get('gateway')!.dependsOn.sort()).toEqual(['migrate', 'postgres', 'redis']);
    });

    it('configures the gateway for production from .env, with named volumes and a drain longer than SHUTDOWN_TIMEOUT_MS', () => {
      for (const name of ['gateway', 'migrate']) expect(production.get(name)!.text, name).toMatch(/<<: \*gateway/);
      const gatewayAnchor = /^x-gateway: &gateway\n((?: {2}.*\n|\n)*)/m.exec(productionText)?.[1] ?? '';
      expect(gatewayAnchor).toMatch(/env_file: \.env/);
      expect(yamlValue(gatewayAnchor, 'NODE_ENV')).toBe('production');
      expect(yamlValue(gatewayAnchor, 'AUTO_MIGRATE')).toBe('false');
      for (const variable of ['DATABASE_URL', 'REDIS_URL', 'VLLM_BASE_URL']) expect(yamlValue(gatewayAnchor, variable), variable).toBeTruthy();
      const grace = /stop_grace_period: (\d+)s/.exec(production.get('gateway')!.text);
      expect(Number(grace?.[1])).toBeGreaterThan(30);
      const volumes = /^volumes:\n((?: {2}.*\n)*)/m.exec(productionText)?.[1] ?? '';
      expect(volumes.split('\n').filter((line) => line.trim() !== '').map((line) => line.trim())).toEqual(['postgres-data:', 'redis-data:', 'huggingface-cache:']);
      expect(read('.gitignore').split('\n')).toContain('.env');
    });

    it('development replaces vLLM with the simulator, so `up gateway` needs no GPU', () => {
      const simulator = development.get('vllm-sim')!.text;
      expect(simulator).toMatch(/command: \["sim", "--host", "0\.0\.0\.0", "--port", "8000"/);
      expect(simulator).toMatch(/healthcheck:\n\s+test:/);
      expect(development.get('vllm')!.text).toMatch(/profiles: \["gpu"\]/);
      const gateway = development.get('gateway')!.text;
      expect(yamlValue(gateway, 'VLLM_BASE_URL')).toBe('http://vllm-sim:8000');
      expect(yamlValue(gateway, 'LOG_LEVEL')).toBe('debug');
      expect(gateway).toMatch(/- \.\/src:\/app\/src:ro/);

      // What `docker compose -f docker-compose.yml -f docker-compose.dev.yml up gateway` starts:
      // the gateway and its dependencies, with depends_on merged across the two files.
      const dependenciesOf = (name: string): string[] => [...(production.get(name)?.dependsOn ?? []), ...(development.get(name)?.dependsOn ?? [])];
      const started = new Set<string>();
      const pending = ['gateway'];
      while (pending.length > 0) {
        const name = pending.pop()!;
        if (started.has(name)) continue;
        started.add(name);
        pending.push(...dependenciesOf(name));
      }
      expect([...started].sort()).toEqual(['gateway', 'migrate', 'postgres', 'redis', 'vllm-sim']);
      for (const name of started) expect(`${production.get(name)?.text ?? ''}${development.get(name)?.text ?? ''}`, name).not.toMatch(/nvidia/);
    });
  });

  describe('Kubernetes manifests', () => {
    const directory = 'deploy/kubernetes';
    const applied = readdirSync(join(root, directory)).filter((file) => file.endsWith('.yaml'));
    const kinds = new Map(applied.map((file) => [/^kind: (\w+)$/m.exec(read(`${directory}/${file}`))?.[1] ?? '', file]));
    const deployment = read(`${directory}/deployment.yaml`);

    it('`kubectl apply -f deploy/kubernetes/` applies the app, and no Secret', () => {
      expect([...kinds.keys()].sort()).toEqual(['ConfigMap', 'Deployment', 'HorizontalPodAutoscaler', 'Ingress', 'PodDisruptionBudget', 'Service']);
      for (const file of applied) expect(read(`${directory}/${file}`).match(/^kind: /gm), `${file}: one object per file`).toHaveLength(1);
      const example = read(`${directory}/examples/secret.example.yaml`);
      expect(example).toMatch(/^kind: Secret$/m);
      for (const key of ['DATABASE_URL', 'REDIS_URL', 'JWT_SECRET']) expect(example).toMatch(new RegExp(`^ {2}${key}: "[^"]*REPLACE_ME`, 'm'));
    });

    it('probes readiness on /health/ready and liveness on /health/live', () => {
      expect(deployment).toMatch(/readinessProbe:\n\s+httpGet:\n\s+path: \/health\/ready\n/);
      expect(deployment).toMatch(/livenessProbe:\n\s+httpGet:\n\s+path: \/health\/live\n/);
      expect(deployment).toMatch(/containerPort: 8080/);
    });

    it('gives streams time to drain: the grace period covers the preStop pause and SHUTDOWN_TIMEOUT_MS', () => {
      const grace = Number(/terminationGracePeriodSeconds: (\d+)/.exec(deployment)?.[1]);
      const preStop = Number(/preStop:\n(?:\s+#.*\n)*\s+exec:\n\s+command: \["sleep", "(\d+)"\]/.exec(deployment)?.[1]);
      const shutdownMs = Number(yamlValue(read(`${directory}/configmap.yaml`), 'SHUTDOWN_TIMEOUT_MS'));
      expect(preStop).toBeGreaterThan(0);
      expect(shutdownMs).toBeGreaterThan(0);
      expect(grace).toBeGreaterThan(preStop + shutdownMs / 1000);
      expect(yamlValue(read(`${directory}/configmap.yaml`), 'AUTO_MIGRATE')).toBe('false');
      expect(read(`${directory}/configmap.yaml`), 'ConfigMap values are strings').not.toMatch(/^ {2}[A-Z_]+: [^"\s]/m);
    });

    it('scales on CPU, keeps pods through disruptions, and migrates in a Job with the same configuration', () => {
      expect(read(`${directory}/hpa.yaml`)).toMatch(/name: cpu/);
      expect(read(`${directory}/pdb.yaml`)).toMatch(/maxUnavailable: 1/);
      const job = read(`${directory}/jobs/migrate.yaml`);
      expect(job).toMatch(/^kind: Job$/m);
      expect(job).toMatch(/args: \["migrate", "latest"\]/);
      for (const manifest of [deployment, job]) {
        expect(manifest).toMatch(/configMapRef:\n\s+name: vllm-chat-gateway/);
        expect(manifest).toMatch(/secretRef:\n\s+name: vllm-chat-gateway/);
        expect(manifest).toMatch(/runAsNonRoot: true/);
      }
    });
  });
});

/** Checks every metric (and matcher label) of `expressions` against /metrics; returns the families used. */
function checkUses(expressions: string[], inventory: MetricsInventory): Set<string> {
  const used = new Set<string>();
  for (const expression of expressions) {
    const uses = metricsIn(expression);
    expect(uses.length, `no metric in ${expression}`).toBeGreaterThan(0);
    for (const use of uses) {
      const family = familyOf(use.name, inventory.types);
      expect(family, `${use.name} (in ${expression}) is not on /metrics`).not.toBeNull();
      used.add(family!);
      const seen = inventory.labels.get(family!);
      // Labels can only be checked on families that have samples; the traffic above gives them all one.
      expect(seen?.size ?? 0, `${family} has no sample to check its labels against`).toBeGreaterThanOrEqual(use.labels.length > 0 ? 1 : 0);
      for (const label of use.labels) {
        if (!TARGET_LABELS.has(label)) expect([...seen!], `label ${label} of ${family} (in ${expression})`).toContain(label);
      }
    }
  }
  return used;
}
