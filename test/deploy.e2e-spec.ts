/**
 * The deployment artefacts agree with the app they deploy: Dockerfile, .dockerignore, docker-compose.yml,
 * deploy/k8s/*.yaml, deploy/grafana/assistant-dashboard.json.
 *
 * Nothing here starts a container or talks to a cluster. There is no Docker engine and no Kubernetes API on
 * the machines this project is tested on (and only loopback networking), so `docker build`, `docker compose up`
 * and `kubectl apply -k deploy/k8s` are NOT exercised: the Dockerfile is checked as text, the manifests are
 * parsed and validated against the Kubernetes OpenAPI schemas shipped inside the `kubernetes-models` package
 * (offline), and their values are run through the app's own environment validation.
 */
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseEnv } from 'node:util';
import { PATH_METADATA } from '@nestjs/common/constants.js';
import { Deployment, type IDeployment } from 'kubernetes-models/apps/v1/Deployment';
import { HorizontalPodAutoscaler, type IHorizontalPodAutoscaler } from 'kubernetes-models/autoscaling/v2/HorizontalPodAutoscaler';
import { NetworkPolicy, type INetworkPolicy } from 'kubernetes-models/networking.k8s.io/v1/NetworkPolicy';
import type { INetworkPolicyIngressRule } from 'kubernetes-models/networking.k8s.io/v1/NetworkPolicyIngressRule';
import type { INetworkPolicySpec } from 'kubernetes-models/networking.k8s.io/v1/NetworkPolicySpec';
import { PodDisruptionBudget, type IPodDisruptionBudget } from 'kubernetes-models/policy/v1/PodDisruptionBudget';
import { ConfigMap, type IConfigMap } from 'kubernetes-models/v1/ConfigMap';
import type { IContainer } from 'kubernetes-models/v1/Container';
import type { IEnvVar } from 'kubernetes-models/v1/EnvVar';
import type { IProbe } from 'kubernetes-models/v1/Probe';
import { Secret, type ISecret } from 'kubernetes-models/v1/Secret';
import { Service, type IService } from 'kubernetes-models/v1/Service';
import { Namespace } from 'kubernetes-models/v1/Namespace';
import { parseAllDocuments } from 'yaml';
import { createHttpAdapter } from '../src/app.setup.js';
import { validateEnvironment } from '../src/config/environment.js';
import { HealthController } from '../src/health/health.controller.js';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const K8S_DIR = join(ROOT, 'deploy/k8s');
const DEPLOY_DIR = join(ROOT, 'deploy');
const DASHBOARD_PATH = join(ROOT, 'deploy/grafana/assistant-dashboard.json');

// ---------------------------------------------------------------------------------------------------------------
// The contract's Configuration table. In CI a copy of shared/ sits beside the clone (../shared/CONTRACT.md) and the
// table is read from there; on a developer's fresh clone elsewhere it is not, and this list is used instead.
// Keep it identical to the contract: when the contract is readable, a test below fails if the two differ.
// ---------------------------------------------------------------------------------------------------------------
const CONTRACT_VARIABLES_FALLBACK: readonly string[] = [
  'PORT',
  'HOST',
  'HF_TOKEN',
  'HF_MODEL',
  'HF_ENDPOINT_URL',
  'HF_MAX_NEW_TOKENS',
  'HF_TEMPERATURE',
  'CIRCUIT_BREAKER_ENABLED',
  'CIRCUIT_BREAKER_FAIL_THRESHOLD',
  'CIRCUIT_BREAKER_TIMEOUT_SECONDS',
  'CIRCUIT_BREAKER_RESET_TIMEOUT',
  'CIRCUIT_BREAKER_NAME',
  'REDIS_URL',
  'CACHE_TTL_SECONDS',
  'CACHE_STALE_TTL_SECONDS',
  'KNOWLEDGE_DIR',
  'ASSISTANT_MAX_QUERY_LENGTH',
  'CIRCUIT_BREAKER_MAX_CONCURRENT',
  'CIRCUIT_BREAKER_MAX_OPEN_SECONDS',
  'CIRCUIT_BREAKER_RESET_BACKOFF',
  'CIRCUIT_BREAKER_SHARED',
  'HF_STREAM_IDLE_TIMEOUT_SECONDS',
  'ASSISTANT_API_KEYS',
  'RATE_LIMIT_PER_MINUTE',
  'TRUST_PROXY',
  'METRICS_PORT',
  'SHUTDOWN_DRAIN_SECONDS',
  'LOG_LEVEL',
];
/**
 * Rows of the contract's "Variables the open issues add" that the app has shipped: the ConfigMap sets them too,
 * except the secret ones (SECRET_VARIABLES), which come from Secrets. Each moves to the list above once the contract
 * moves its row up to the main table.
 */
const SHIPPED_PROMISED_VARIABLES: readonly string[] = [
  'CIRCUIT_BREAKER_FAILURE_RATE',
  'CIRCUIT_BREAKER_WINDOW_SECONDS',
  'CIRCUIT_BREAKER_MIN_CALLS',
  'HF_FALLBACK_MODELS',
  'ASSISTANT_DEADLINE_SECONDS',
  'HF_HEDGE_AFTER_SECONDS',
  'ASSISTANT_COALESCE',
  'CACHE_COALESCE_WAIT_SECONDS',
  'RATE_LIMIT_CONCURRENT',
  'DOCS_ENABLED',
  'ASSISTANT_ALLOW_ANONYMOUS',
];
/** Variables the app reads beyond the contract table; the ConfigMap sets them too (the secret ones aside). */
const EXTRA_VARIABLES: readonly string[] = ['NODE_ENV', ...SHIPPED_PROMISED_VARIABLES];
/** Variables whose value is a secret: each only from an optional key of a Secret, never from the ConfigMap. */
const SECRET_VARIABLES: readonly string[] = ['HF_TOKEN', 'ASSISTANT_API_KEYS'];
/** Set in the Deployment's env, not the ConfigMap: the URL carries the Redis password, from the Secret. */
const URL_WITH_PASSWORD_VARIABLES: readonly string[] = ['REDIS_URL'];
/** Variables of the manifests (not of the app) that hold the Redis password: only ever from a secretKeyRef. */
const REDIS_PASSWORD_VARIABLES: readonly string[] = ['REDIS_PASSWORD', 'REDISCLI_AUTH'];
/** The namespace Prometheus runs in, the only one the metrics port admits (by its automatic name label). */
const MONITORING_NAMESPACE_SELECTOR = { 'kubernetes.io/metadata.name': 'monitoring' };
const LOG_LEVELS: readonly string[] = ['fatal', 'error', 'warn', 'info', 'debug', 'trace'];

const CONTRACT_PATH = join(ROOT, '../shared/CONTRACT.md');
const contractText: string | undefined = existsSync(CONTRACT_PATH) ? readFileSync(CONTRACT_PATH, 'utf8') : undefined;

/** Backticked names in the first column of the table under "## Configuration" (a row may name several). */
function contractVariables(markdown: string): string[] {
  return firstColumnNames(sectionOf(markdown, 'Configuration'));
}

function firstColumnNames(section: string): string[] {
  const names: string[] = [];
  for (const line of section.split('\n')) {
    const firstCell = /^\|([^|]*)\|/.exec(line)?.[1];
    if (firstCell === undefined) continue;
    for (const match of firstCell.matchAll(/`([A-Z][A-Z0-9_]*)`/g)) names.push(match[1]);
  }
  return names;
}

/** `GET /health/...` routes of the health table, keyed by the last path segment ('' for `/health`). */
function contractHealthRoutes(markdown: string): string[] {
  return [...sectionOf(markdown, 'Health').matchAll(/^\|\s*`GET (\/health[^`]*)`/gm)].map((match) => match[1]);
}

function sectionOf(markdown: string, heading: string): string {
  const start = markdown.search(new RegExp(`^#+ ${heading}`, 'm'));
  if (start < 0) throw new Error(`CONTRACT.md has no "${heading}" section`);
  const rest = markdown.slice(start);
  const next = rest.search(/\n#+ /);
  return next < 0 ? rest : rest.slice(0, next);
}

const CONFIG_VARIABLES: readonly string[] = contractText === undefined ? CONTRACT_VARIABLES_FALLBACK : contractVariables(contractText);

/** Backticked names in the first column of the contract's "Variables the open issues add" table (a row may name several). */
function promisedVariables(markdown: string): string[] {
  return firstColumnNames(sectionOf(markdown, 'Variables the open issues add'));
}

// ---------------------------------------------------------------------------------------------------------------
// The app's own health routes, read from the controller's route metadata (not retyped here).
// ---------------------------------------------------------------------------------------------------------------
type RouteHandler = keyof Pick<HealthController, 'live' | 'ready' | 'circuitBreaker' | 'check'>;
function routeOf(handler: RouteHandler): string {
  const prefix = String(Reflect.getMetadata(PATH_METADATA, HealthController));
  const path = String(Reflect.getMetadata(PATH_METADATA, HealthController.prototype[handler]));
  return `/${[prefix, path]
    .map((part) => part.replace(/^\/+|\/+$/g, ''))
    .filter((part) => part !== '')
    .join('/')}`;
}
const LIVENESS_ROUTE = routeOf('live');
const READINESS_ROUTE = routeOf('ready');
const CIRCUIT_BREAKER_ROUTE = routeOf('circuitBreaker');

// ---------------------------------------------------------------------------------------------------------------
// Small helpers over parsed YAML/JSON (unknown until checked).
// ---------------------------------------------------------------------------------------------------------------
function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function at(value: unknown, ...path: (string | number)[]): unknown {
  let current = value;
  for (const key of path) {
    if (typeof key === 'number') current = Array.isArray(current) ? current[key] : undefined;
    else current = isRecord(current) ? current[key] : undefined;
  }
  return current;
}

function arrayAt(value: unknown, ...path: (string | number)[]): unknown[] {
  const found = at(value, ...path);
  return Array.isArray(found) ? found : [];
}

function stringAt(value: unknown, ...path: (string | number)[]): string {
  const found = at(value, ...path);
  if (typeof found !== 'string') throw new Error(`expected a string at ${path.join('.')}, got ${JSON.stringify(found)}`);
  return found;
}

function defined<T>(value: T | undefined | null, what: string): T {
  if (value === undefined || value === null) throw new Error(`missing: ${what}`);
  return value;
}

interface ManifestDocument {
  file: string;
  object: Record<string, unknown>;
}

function parseYamlFile(path: string): unknown[] {
  const documents = parseAllDocuments(readFileSync(path, 'utf8'));
  const list = Array.isArray(documents) ? documents : [documents];
  const objects: unknown[] = [];
  for (const document of list) {
    if (document.errors.length > 0) throw new Error(`${relative(ROOT, path)}: ${document.errors.map((error) => error.message).join('; ')}`);
    const value: unknown = document.toJS();
    if (value !== null && value !== undefined) objects.push(value);
  }
  return objects;
}

function listFiles(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const path = join(dir, name);
    return statSync(path).isDirectory() ? listFiles(path) : [path];
  });
}

const manifestFiles = readdirSync(K8S_DIR)
  .filter((name) => /\.ya?ml$/.test(name))
  .sort();
const manifests: ManifestDocument[] = manifestFiles
  .filter((name) => name !== 'kustomization.yaml')
  .flatMap((name) =>
    parseYamlFile(join(K8S_DIR, name)).map((object) => {
      if (!isRecord(object)) throw new Error(`${name}: a document is not a mapping`);
      return { file: name, object };
    }),
  );
const kustomization = defined(parseYamlFile(join(K8S_DIR, 'kustomization.yaml'))[0], 'kustomization.yaml document');
const kustomizeResources = arrayAt(kustomization, 'resources').map(String);

function findObject<T>(guard: (value: unknown) => value is T, name: string): T {
  const found = manifests.map(({ object }) => object).find((object) => guard(object) && at(object, 'metadata', 'name') === name);
  if (found === undefined || !guard(found)) throw new Error(`no such object in deploy/k8s: ${name}`);
  return found;
}

const deployment: IDeployment = findObject(Deployment.is, 'assistant');
const redisDeployment: IDeployment = findObject(Deployment.is, 'assistant-redis');
const service: IService = findObject(Service.is, 'assistant');
const redisService: IService = findObject(Service.is, 'assistant-redis');
const configMap: IConfigMap = findObject(ConfigMap.is, 'assistant-config');
const pdb: IPodDisruptionBudget = findObject(PodDisruptionBudget.is, 'assistant');
const hpa: IHorizontalPodAutoscaler = findObject(HorizontalPodAutoscaler.is, 'assistant');
const exampleSecret: ISecret = findObject(Secret.is, 'assistant-hf');
const exampleRedisSecret: ISecret = findObject(Secret.is, 'assistant-redis');
const exampleApiKeysSecret: ISecret = findObject(Secret.is, 'assistant-api-keys');
const networkPolicies: INetworkPolicy[] = manifests.flatMap(({ object }) => (NetworkPolicy.is(object) ? [object] : []));
const services: IService[] = manifests.flatMap(({ object }) => (Service.is(object) ? [object] : []));

const podSpec = defined(deployment.spec?.template.spec, 'assistant pod spec');
const appContainer: IContainer = defined(
  podSpec.containers.find((container) => container.name === 'assistant'),
  'container "assistant"',
);
const configData: Record<string, string> = defined(configMap.data, 'ConfigMap data');
const configuredPort = Number(configData.PORT);
const appPodLabels = defined(deployment.spec?.template.metadata?.labels, 'assistant pod labels');
const redisPod = defined(redisDeployment.spec?.template.spec, 'redis pod spec');
const redisContainer: IContainer = defined(redisPod.containers[0], 'redis container');
const redisPodLabels = defined(redisDeployment.spec?.template.metadata?.labels, 'redis pod labels');

function numberFromConfig(name: string): number {
  const value = Number(defined(configData[name], `ConfigMap ${name}`));
  if (!Number.isFinite(value)) throw new Error(`ConfigMap ${name} is not a number`);
  return value;
}

/** The container port a probe or Service points at, resolving a port name through the container's ports. */
function containerPortOf(port: number | string | undefined, container: IContainer): number | undefined {
  if (typeof port === 'number') return port;
  return container.ports?.find((candidate) => candidate.name === port)?.containerPort;
}

function probe(name: 'livenessProbe' | 'readinessProbe' | 'startupProbe'): IProbe {
  return defined(appContainer[name], `${name} of the assistant container`);
}

function labelsSelect(selector: Record<string, string> | undefined, labels: Record<string, string> | undefined): boolean {
  if (selector === undefined || Object.keys(selector).length === 0) return false;
  return Object.entries(selector).every(([key, value]) => labels?.[key] === value);
}

function envVar(container: IContainer, name: string): IEnvVar[] {
  return container.env?.filter((variable) => variable.name === name) ?? [];
}

// ---------------------------------------------------------------------------------------------------------------
// What the kubelet makes of a container's environment and arguments (Kubernetes' documented rules, re-stated).
// ---------------------------------------------------------------------------------------------------------------
/** Secret name → key → value: what a cluster would hold. */
type SecretStore = Readonly<Record<string, Readonly<Record<string, string>>>>;

/** Where the kubelet refuses to start a container (CreateContainerConfigError): a required Secret key is missing. */
class ContainerConfigError extends Error {}

/** `$(NAME)` → the value of NAME when defined so far, else left as written; `$$` → `$` (so `$$(NAME)` stays literal). */
function expandReferences(text: string, defined: Readonly<Record<string, string>>): string {
  return text.replace(/\$\$|\$\(([^)]*)\)/g, (match, name: string | undefined) =>
    match === '$$' ? '$' : name !== undefined && Object.hasOwn(defined, name) ? (defined[name] ?? match) : match,
  );
}

/**
 * The environment the kubelet gives a container: every `envFrom` ConfigMap of deploy/k8s first, then `env` in its
 * order (an entry wins over an earlier one of the same name): a `value` with references expanded from the variables
 * defined before it, a secretKeyRef read from `secrets` (missing and optional: the variable is left unset; missing
 * and required: the container does not start).
 */
function containerEnvironment(container: IContainer, secrets: SecretStore): Record<string, string> {
  const env: Record<string, string> = {};
  for (const source of container.envFrom ?? []) {
    const name = defined(source.configMapRef?.name, 'envFrom other than a configMapRef: teach this test about it');
    const found = manifests.map(({ object }) => object).find((object) => ConfigMap.is(object) && object.metadata?.name === name);
    if (found === undefined || !ConfigMap.is(found)) throw new ContainerConfigError(`configmap "${name}" not found`);
    Object.assign(env, found.data);
  }
  for (const variable of container.env ?? []) {
    const ref = variable.valueFrom?.secretKeyRef;
    if (variable.valueFrom !== undefined && ref === undefined) throw new Error(`${variable.name}: teach this test about its valueFrom`);
    if (ref === undefined) {
      env[variable.name] = expandReferences(variable.value ?? '', env);
      continue;
    }
    const value = secrets[ref.name ?? '']?.[ref.key];
    if (value !== undefined) env[variable.name] = value;
    else if (ref.optional !== true) throw new ContainerConfigError(`secret "${ref.name}" has no key "${ref.key}"`);
  }
  return env;
}

/** The arguments the container's process gets: `$(NAME)` expanded from the container's environment. */
function containerArgs(container: IContainer, secrets: SecretStore): string[] {
  const env = containerEnvironment(container, secrets);
  return (container.args ?? []).map((arg) => expandReferences(arg, env));
}

/** A password as `openssl rand -hex 32` makes one (the README's advice): what a cluster's Secret would hold. */
const SAMPLE_REDIS_PASSWORD = '5f2c0a9e7b1d4c3a8e6f0b2d9c7a1e3f5b8d0c2a4e6f8b1d3c5a7e9f0b2d4c6a';
const SECRETS_WITH_REDIS: SecretStore = {
  [exampleRedisSecret.metadata?.name ?? 'assistant-redis']: { REDIS_PASSWORD: SAMPLE_REDIS_PASSWORD },
};
/** The keys of the example Secret (sha256 forms): with NODE_ENV=production the app needs keys to start. */
const SAMPLE_API_KEYS = defined(exampleApiKeysSecret.stringData?.ASSISTANT_API_KEYS, 'ASSISTANT_API_KEYS in secret.example.yaml');
/** Every Secret the pods read, as a cluster would hold them. */
const SECRETS: SecretStore = {
  ...SECRETS_WITH_REDIS,
  [exampleApiKeysSecret.metadata?.name ?? '']: { ASSISTANT_API_KEYS: SAMPLE_API_KEYS },
};
/** The ConfigMap's settings with the keys the Secret adds: what the app validates at start-up. */
const configWithKeys: Record<string, string> = { ...configData, ASSISTANT_API_KEYS: SAMPLE_API_KEYS };

// ---------------------------------------------------------------------------------------------------------------
// NetworkPolicy semantics (networking.k8s.io/v1), re-stated for the checks below.
// ---------------------------------------------------------------------------------------------------------------
type PodSelector = INetworkPolicySpec['podSelector'];

/** A NetworkPolicy selector: an empty one selects every pod (of the namespace). */
function policySelectorSelects(selector: PodSelector | undefined, labels: Record<string, string>): boolean {
  if (selector?.matchExpressions !== undefined && selector.matchExpressions.length > 0)
    throw new Error('matchExpressions in a NetworkPolicy: teach this test about them');
  return Object.entries(selector?.matchLabels ?? {}).every(([key, value]) => labels[key] === value);
}

function policiesSelecting(labels: Record<string, string>): INetworkPolicy[] {
  return networkPolicies.filter((policy) => policySelectorSelects(policy.spec?.podSelector, labels));
}

/** policyTypes defaults to Ingress, plus Egress when the policy has egress rules. */
function policyTypesOf(policy: INetworkPolicy): string[] {
  return policy.spec?.policyTypes ?? ['Ingress', ...(policy.spec?.egress === undefined ? [] : ['Egress'])];
}

/** Whether an ingress rule admits TCP to this container port; a rule without ports admits every port. */
function ruleOpensPort(rule: INetworkPolicyIngressRule, port: number, container: IContainer): boolean {
  if (rule.ports === undefined || rule.ports.length === 0) return true;
  return rule.ports.some((candidate) => {
    if ((candidate.protocol ?? 'TCP') !== 'TCP') return false;
    if (candidate.port === undefined) return true;
    const start = containerPortOf(candidate.port, container);
    return start !== undefined && port >= start && port <= (candidate.endPort ?? start);
  });
}

/** The container port of each port entry of a rule; undefined for "every port" (no ports, no port, or a range). */
function portsRuleOpens(rule: INetworkPolicyIngressRule, container: IContainer): (number | undefined)[] {
  if (rule.ports === undefined || rule.ports.length === 0) return [undefined];
  return rule.ports.map((candidate) => (candidate.endPort === undefined ? containerPortOf(candidate.port, container) : undefined));
}

function ingressRulesOf(policies: INetworkPolicy[]): INetworkPolicyIngressRule[] {
  return policies.flatMap((policy) => policy.spec?.ingress ?? []);
}

// ---------------------------------------------------------------------------------------------------------------
// Kubernetes schema validation (schemas shipped inside kubernetes-models; no network).
// ---------------------------------------------------------------------------------------------------------------
type Validator = (object: unknown) => void;
const VALIDATORS: Readonly<Record<string, Validator>> = {
  'apps/v1/Deployment': (object) => {
    if (Deployment.is(object)) new Deployment(object).validate();
  },
  'v1/Service': (object) => {
    if (Service.is(object)) new Service(object).validate();
  },
  'v1/ConfigMap': (object) => {
    if (ConfigMap.is(object)) new ConfigMap(object).validate();
  },
  'v1/Secret': (object) => {
    if (Secret.is(object)) new Secret(object).validate();
  },
  'v1/Namespace': (object) => {
    if (Namespace.is(object)) new Namespace(object).validate();
  },
  'policy/v1/PodDisruptionBudget': (object) => {
    if (PodDisruptionBudget.is(object)) new PodDisruptionBudget(object).validate();
  },
  'autoscaling/v2/HorizontalPodAutoscaler': (object) => {
    if (HorizontalPodAutoscaler.is(object)) new HorizontalPodAutoscaler(object).validate();
  },
  'networking.k8s.io/v1/NetworkPolicy': (object) => {
    if (NetworkPolicy.is(object)) new NetworkPolicy(object).validate();
  },
};

function validateManifest(object: Record<string, unknown>): void {
  const key = `${String(object.apiVersion)}/${String(object.kind)}`;
  const validator = VALIDATORS[key];
  if (validator === undefined) throw new Error(`no schema for ${key} in this test: add its kubernetes-models class`);
  validator(object);
}

// ---------------------------------------------------------------------------------------------------------------
// Dockerfile and .dockerignore
// ---------------------------------------------------------------------------------------------------------------
interface Instruction {
  keyword: string;
  args: string;
}

function dockerInstructions(text: string): Instruction[] {
  const logical = text
    .split('\n')
    .filter((line) => !/^\s*#/.test(line))
    .join('\n')
    .replace(/\\\n/g, ' ');
  return logical
    .split('\n')
    .map((line) => line.trim())
    .filter((line) => line !== '')
    .map((line) => {
      const [keyword = '', ...rest] = line.split(/\s+/);
      return { keyword: keyword.toUpperCase(), args: rest.join(' ') };
    });
}

function dockerStages(instructions: Instruction[]): Instruction[][] {
  const stages: Instruction[][] = [];
  for (const instruction of instructions) {
    if (instruction.keyword === 'FROM') stages.push([]);
    stages.at(-1)?.push(instruction);
  }
  return stages;
}

const dockerfileText = readFileSync(join(ROOT, 'Dockerfile'), 'utf8');
const instructions = dockerInstructions(dockerfileText);
const stages = dockerStages(instructions);
const runtimeStage = defined(stages.at(-1), 'a FROM in the Dockerfile');
const buildStages = stages.slice(0, -1);

/** Docker's .dockerignore semantics, simplified: root-anchored globs, `**`, `!` re-includes, last match wins. */
function dockerIgnores(patterns: string[], path: string): boolean {
  const candidates = path.split('/').map((_, index, parts) => parts.slice(0, index + 1).join('/'));
  let ignored = false;
  for (const raw of patterns) {
    const negated = raw.startsWith('!');
    const pattern = (negated ? raw.slice(1) : raw).replace(/^\/+|\/+$/g, '');
    const source = pattern
      .split(/(\*\*\/?|\*|\?)/)
      .map((part) =>
        part === '**' || part === '**/'
          ? '(?:.*/)?'
          : part === '*'
            ? '[^/]*'
            : part === '?'
              ? '[^/]'
              : part.replace(/[.+^${}()|[\]\\]/g, '\\$&'),
      )
      .join('');
    const regex = new RegExp(`^${source}$`);
    if (candidates.some((candidate) => regex.test(candidate))) ignored = !negated;
  }
  return ignored;
}

const dockerignorePatterns = readFileSync(join(ROOT, '.dockerignore'), 'utf8')
  .split('\n')
  .map((line) => line.trim())
  .filter((line) => line !== '' && !line.startsWith('#'));

// ---------------------------------------------------------------------------------------------------------------
// docker-compose.yml
// ---------------------------------------------------------------------------------------------------------------
const compose = defined(parseYamlFile(join(ROOT, 'docker-compose.yml'))[0], 'docker-compose.yml document');

/** `${VAR:-default}` / `${VAR-default}` → default; `${VAR}` → ''. As compose would with VAR unset. */
function withComposeDefaults(value: string): string {
  return value.replace(/\$\{([A-Z0-9_]+)(?::?-([^}]*))?\}/g, (_, _name: string, fallback: string | undefined) => fallback ?? '');
}

function composeEnvironment(serviceName: string): Record<string, string> {
  const raw = at(compose, 'services', serviceName, 'environment');
  if (Array.isArray(raw)) {
    return Object.fromEntries(
      raw.map(String).map((entry) => {
        const index = entry.indexOf('=');
        return index < 0 ? [entry, ''] : [entry.slice(0, index), entry.slice(index + 1)];
      }),
    );
  }
  if (isRecord(raw)) return Object.fromEntries(Object.entries(raw).map(([key, value]) => [key, value === null ? '' : String(value)]));
  return {};
}

/** Compose durations: "40s", "1m30s", or a number of seconds. */
function composeSeconds(value: unknown): number {
  if (typeof value === 'number') return value;
  const text = String(value);
  let total = 0;
  for (const match of text.matchAll(/(\d+(?:\.\d+)?)(h|m|s|ms|us)/g)) {
    const amount = Number(match[1]);
    total += amount * { h: 3600, m: 60, s: 1, ms: 0.001, us: 0.000001 }[match[2] as 'h' | 'm' | 's' | 'ms' | 'us'];
  }
  return total;
}

// ---------------------------------------------------------------------------------------------------------------
// Grafana dashboard and the metrics the app exports
// ---------------------------------------------------------------------------------------------------------------
/** Every metric the dashboard may use, with its labels (null = any value). Target labels come on top. */
const METRICS: Readonly<Record<string, Readonly<Record<string, readonly string[] | null>>>> = {
  assistant_circuit_breaker_state: { breaker: null },
  assistant_circuit_breaker_scope: { breaker: null, scope: ['fleet', 'replica'] },
  assistant_circuit_breaker_events_total: {
    breaker: null,
    event: ['success', 'failure', 'timeout', 'reject', 'open', 'close', 'half_open'],
  },
  assistant_answers_total: {
    source: ['llm', 'cache', 'excerpts', 'unavailable'],
    fallback_reason: ['none', 'circuit_open', 'timeout', 'upstream_error', 'upstream_unconfigured'],
    model: null,
  },
  http_request_duration_seconds_bucket: { method: null, route: null, status_code: null, le: null },
  assistant_upstream_call_duration_seconds_bucket: { breaker: null, outcome: null, le: null },
  assistant_cache_requests_total: { store: null, result: ['fresh_hit', 'stale_hit', 'miss', 'error'] },
  process_resident_memory_bytes: {},
  nodejs_eventloop_lag_p99_seconds: {},
};
const TARGET_LABELS: readonly string[] = ['instance', 'job'];
const PROMQL_WORDS = new Set([
  'and',
  'or',
  'unless',
  'bool',
  'offset',
  'by',
  'without',
  'on',
  'ignoring',
  'group_left',
  'group_right',
  'inf',
  'nan',
]);

/** Metric names in a PromQL expression: identifiers that are not functions, keywords, labels or durations. */
function metricNamesIn(expr: string): string[] {
  const stripped = expr
    .replace(/"(?:[^"\\]|\\.)*"/g, '""')
    .replace(/\{[^}]*\}/g, ' ')
    .replace(/\[[^\]]*\]/g, ' ')
    .replace(/\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)/g, ' ')
    .replace(/\$\{?\w+\}?/g, ' ');
  const names: string[] = [];
  for (const match of stripped.matchAll(/(?<![\w.])[a-zA-Z_:][a-zA-Z0-9_:]*/g)) {
    const after = stripped.slice((match.index ?? 0) + match[0].length).trimStart();
    if (after.startsWith('(') || PROMQL_WORDS.has(match[0].toLowerCase())) continue;
    names.push(match[0]);
  }
  return names;
}

interface Matcher {
  metric: string;
  label: string;
  operator: string;
  value: string;
}

function matchersIn(expr: string): Matcher[] {
  const matchers: Matcher[] = [];
  for (const selector of expr.matchAll(/([a-zA-Z_:][a-zA-Z0-9_:]*)\s*\{([^}]*)\}/g)) {
    for (const matcher of (selector[2] ?? '').matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)\s*"((?:[^"\\]|\\.)*)"/g)) {
      matchers.push({
        metric: selector[1],
        label: matcher[1],
        operator: matcher[2],
        value: matcher[3],
      });
    }
  }
  return matchers;
}

function groupingLabelsIn(expr: string): string[] {
  return [...expr.matchAll(/\b(?:by|without)\s*\(([^)]*)\)/g)].flatMap((match) =>
    (match[1] ?? '')
      .split(',')
      .map((label) => label.trim())
      .filter((label) => label !== ''),
  );
}

function labelsOf(metric: string): string[] {
  return [...Object.keys(METRICS[metric] ?? {}), ...TARGET_LABELS];
}

const dashboard: unknown = JSON.parse(readFileSync(DASHBOARD_PATH, 'utf8'));
const allPanels: unknown[] = arrayAt(dashboard, 'panels').flatMap((panel) => [panel, ...arrayAt(panel, 'panels')]);
const dataPanels = allPanels.filter((panel) => at(panel, 'type') !== 'row');
const panelExprs: string[] = dataPanels.flatMap((panel) => arrayAt(panel, 'targets').map((target) => stringAt(target, 'expr')));
const variableQueries: string[] = arrayAt(dashboard, 'templating', 'list')
  .filter((variable) => at(variable, 'type') === 'query')
  .map((variable) => {
    const query = at(variable, 'query');
    return typeof query === 'string' ? query : stringAt(query, 'query');
  });
/** label_values(metric{...}, label) → metric{...} */
const variableExprs = variableQueries.map((query) => query.replace(/^label_values\(\s*(.*),\s*[a-zA-Z_][a-zA-Z0-9_]*\s*\)$/, '$1'));
const allExprs = [...panelExprs, ...variableExprs];

function panelTitled(title: string): unknown {
  return defined(
    dataPanels.find((panel) => at(panel, 'title') === title),
    `dashboard panel "${title}"`,
  );
}

// =================================================================================================================

describe('deployment artefacts', () => {
  describe('the configuration variables', () => {
    it('the promised variables the app ships are rows of the contract’s "Variables the open issues add", with its defaults', () => {
      if (contractText !== undefined)
        expect(promisedVariables(contractText)).toEqual(expect.arrayContaining([...SHIPPED_PROMISED_VARIABLES]));
      const defaults = validateEnvironment({});
      expect(defaults).toMatchObject({
        CIRCUIT_BREAKER_MAX_CONCURRENT: 100,
        CIRCUIT_BREAKER_MAX_OPEN_SECONDS: 300,
        CIRCUIT_BREAKER_RESET_BACKOFF: 1,
        RATE_LIMIT_PER_MINUTE: 0,
        CIRCUIT_BREAKER_FAILURE_RATE: 0,
        CIRCUIT_BREAKER_WINDOW_SECONDS: 30,
        CIRCUIT_BREAKER_MIN_CALLS: 20,
        DOCS_ENABLED: true,
        ASSISTANT_ALLOW_ANONYMOUS: false,
      });
      expect(validateEnvironment({ NODE_ENV: 'production', ASSISTANT_API_KEYS: 'k' }).DOCS_ENABLED).toBe(false);
      expect(defaults.METRICS_PORT).toBeUndefined();
      expect(defaults.ASSISTANT_API_KEYS).toBeUndefined();
      expect(String(defaults.TRUST_PROXY)).toBe('false');
    });

    it('the fallback list of contract variables is identical to the Configuration table of shared/CONTRACT.md when that file is beside the repo', () => {
      if (contractText === undefined) {
        // A fresh clone without shared/ beside it: the kept list is all there is to check against.
        expect(CONFIG_VARIABLES).toEqual(CONTRACT_VARIABLES_FALLBACK);
        return;
      }
      expect([...contractVariables(contractText)].sort()).toEqual([...CONTRACT_VARIABLES_FALLBACK].sort());
    });

    it("the probes use the contract's liveness and readiness routes, which are the routes the health controller serves", () => {
      expect(LIVENESS_ROUTE).toBe('/health/live');
      expect(READINESS_ROUTE).toBe('/health/ready');
      expect(CIRCUIT_BREAKER_ROUTE).toBe('/health/circuit-breaker');
      if (contractText !== undefined) {
        expect(contractHealthRoutes(contractText)).toEqual(
          expect.arrayContaining([LIVENESS_ROUTE, READINESS_ROUTE, CIRCUIT_BREAKER_ROUTE]),
        );
      }
    });
  });

  describe('Kubernetes manifests', () => {
    it('every manifest parses as YAML and every object validates against the Kubernetes schema of its kind', () => {
      expect(manifests.length).toBeGreaterThanOrEqual(12);
      expect(networkPolicies.length).toBeGreaterThanOrEqual(2);
      for (const { file, object } of manifests) {
        expect({ file, kind: object.kind, name: at(object, 'metadata', 'name') }).toEqual({
          file,
          kind: expect.any(String),
          name: expect.any(String),
        });
        expect(() => validateManifest(object)).not.toThrow();
      }
    });

    it('the schema validation really rejects a malformed object (replicas as a word, a Service without ports)', () => {
      const broken: unknown = structuredClone(deployment);
      if (!isRecord(broken) || !isRecord(broken.spec)) throw new Error('the Deployment has no spec');
      broken.spec.replicas = 'three';
      expect(() => validateManifest(broken)).toThrow(/replicas/);
      const portless = { apiVersion: 'v1', kind: 'Service', metadata: { name: 'x' }, spec: { ports: [{ targetPort: 'http' }] } };
      expect(() => validateManifest(portless)).toThrow(/port/);
      const selectorless = { apiVersion: 'networking.k8s.io/v1', kind: 'NetworkPolicy', metadata: { name: 'x' }, spec: { ingress: [] } };
      expect(() => validateManifest(selectorless)).toThrow(/podSelector/);
    });

    it('objects carry no namespace, so `kubectl apply -k` (or -n) decides where they go', () => {
      for (const { file, object } of manifests)
        expect({ file, namespace: at(object, 'metadata', 'namespace') }).toEqual({ file, namespace: undefined });
      expect(at(kustomization, 'namespace')).toBeUndefined();
    });

    it('the kustomization lists every manifest except the example Secret, and only files that exist', () => {
      for (const resource of kustomizeResources) expect(existsSync(join(K8S_DIR, resource))).toBe(true);
      const expected = manifestFiles.filter((name) => name !== 'kustomization.yaml' && name !== 'secret.example.yaml');
      expect([...kustomizeResources].sort()).toEqual(expected);
      expect(kustomizeResources).not.toContain('secret.example.yaml');
    });

    it('the assistant runs 3 replicas and rolls out one extra pod at a time without ever dropping below the wanted count', () => {
      expect(deployment.spec?.replicas).toBe(3);
      expect(deployment.spec?.strategy?.type ?? 'RollingUpdate').toBe('RollingUpdate');
      expect(deployment.spec?.strategy?.rollingUpdate?.maxUnavailable).toBe(0);
      expect(deployment.spec?.strategy?.rollingUpdate?.maxSurge).toBe(1);
      expect(labelsSelect(deployment.spec?.selector.matchLabels, deployment.spec?.template.metadata?.labels)).toBe(true);
    });

    it('the container listens on the PORT of the ConfigMap through a port named http and on METRICS_PORT through one named metrics', () => {
      expect(configuredPort).toBe(3000);
      const metricsPort = numberFromConfig('METRICS_PORT');
      expect(metricsPort).not.toBe(configuredPort);
      expect(appContainer.ports).toEqual([
        expect.objectContaining({ name: 'http', containerPort: configuredPort }),
        expect.objectContaining({ name: 'metrics', containerPort: metricsPort }),
      ]);
    });

    it('liveness and start-up probe the liveness route and readiness probes the readiness route, all on the port the app listens on', () => {
      for (const [name, route] of [
        ['livenessProbe', LIVENESS_ROUTE],
        ['startupProbe', LIVENESS_ROUTE],
        ['readinessProbe', READINESS_ROUTE],
      ] as const) {
        const httpGet = defined(probe(name).httpGet, `${name}.httpGet`);
        expect({ name, path: httpGet.path }).toEqual({ name, path: route });
        expect({ name, port: containerPortOf(httpGet.port, appContainer) }).toEqual({ name, port: configuredPort });
        expect(httpGet.scheme ?? 'HTTP').toBe('HTTP');
      }
    });

    it('no probe of any container uses /health/circuit-breaker, so an open circuit never pulls replicas out of service', () => {
      const probes = manifests.flatMap(({ object }) =>
        Deployment.is(object)
          ? (object.spec?.template.spec?.containers ?? []).flatMap((container) => [
              container.livenessProbe,
              container.readinessProbe,
              container.startupProbe,
            ])
          : [],
      );
      for (const candidate of probes) expect(candidate?.httpGet?.path).not.toBe(CIRCUIT_BREAKER_ROUTE);
      expect(probe('readinessProbe').httpGet?.path).not.toBe(CIRCUIT_BREAKER_ROUTE);
    });

    it('the start-up probe allows at least 30 s before liveness may restart a slow-starting pod', () => {
      const startup = probe('startupProbe');
      expect((startup.failureThreshold ?? 3) * (startup.periodSeconds ?? 10)).toBeGreaterThanOrEqual(30);
    });

    it('the grace period covers the drain plus the longest in-flight model call, and no preStop sleep adds to the drain', () => {
      const drain = numberFromConfig('SHUTDOWN_DRAIN_SECONDS');
      const callLimit = numberFromConfig('CIRCUIT_BREAKER_TIMEOUT_SECONDS');
      expect(podSpec.terminationGracePeriodSeconds).toBeGreaterThanOrEqual(drain + callLimit);
      expect(appContainer.lifecycle?.preStop).toBeUndefined();
    });

    it('the container takes every setting from the ConfigMap, and in env only the secrets and the REDIS_URL built from one', () => {
      expect(appContainer.envFrom).toEqual([{ configMapRef: { name: configMap.metadata?.name } }]);
      const token = envVar(appContainer, 'HF_TOKEN');
      expect(token).toHaveLength(1);
      expect(token[0]?.value).toBeUndefined();
      expect(token[0]?.valueFrom?.secretKeyRef).toEqual({ name: exampleSecret.metadata?.name, key: 'HF_TOKEN', optional: true });
      // Nothing else is set inline, and nothing in env is also a ConfigMap key: an env entry silently wins over the ConfigMap.
      expect(appContainer.env?.map((variable) => variable.name)).toEqual(['HF_TOKEN', 'ASSISTANT_API_KEYS', 'REDIS_PASSWORD', 'REDIS_URL']);
      for (const variable of appContainer.env ?? [])
        expect({ name: variable.name, inConfigMap: variable.name in configData }).toEqual({ name: variable.name, inConfigMap: false });
    });

    it('the pod and container run as a non-root user with a read-only root filesystem, no capabilities and no privilege escalation', () => {
      const pod = podSpec.securityContext;
      const container = defined(appContainer.securityContext, 'container securityContext');
      expect(container.runAsNonRoot ?? pod?.runAsNonRoot).toBe(true);
      expect(container.runAsUser ?? pod?.runAsUser).toBeGreaterThan(0);
      expect(container.readOnlyRootFilesystem).toBe(true);
      expect(container.allowPrivilegeEscalation).toBe(false);
      expect(container.privileged ?? false).toBe(false);
      expect(container.capabilities?.drop).toEqual(['ALL']);
      expect(container.capabilities?.add ?? []).toEqual([]);
    });

    it('the container declares CPU and memory requests and limits', () => {
      expect(appContainer.resources?.requests).toEqual(expect.objectContaining({ cpu: expect.anything(), memory: expect.anything() }));
      expect(appContainer.resources?.limits).toEqual(expect.objectContaining({ cpu: expect.anything(), memory: expect.anything() }));
    });

    it('Prometheus is told to scrape /metrics on the metrics port, the METRICS_PORT the app serves it on (not the API port)', () => {
      const annotations = deployment.spec?.template.metadata?.annotations ?? {};
      expect(annotations['prometheus.io/scrape']).toBe('true');
      expect(annotations['prometheus.io/path']).toBe('/metrics');
      const metricsPort = numberFromConfig('METRICS_PORT');
      expect(Number(annotations['prometheus.io/port'])).toBe(metricsPort);
      expect(containerPortOf('metrics', appContainer)).toBe(metricsPort);
      expect(validateEnvironment(configWithKeys).METRICS_PORT).toBe(metricsPort);
      expect(metricsPort).not.toBe(configuredPort);
    });

    it('replicas are spread across nodes', () => {
      const spreadOverNodes = (podSpec.topologySpreadConstraints ?? []).some(
        (constraint) =>
          constraint.topologyKey === 'kubernetes.io/hostname' &&
          labelsSelect(constraint.labelSelector?.matchLabels, deployment.spec?.template.metadata?.labels),
      );
      const antiAffinityOverNodes = [
        ...(podSpec.affinity?.podAntiAffinity?.requiredDuringSchedulingIgnoredDuringExecution ?? []),
        ...(podSpec.affinity?.podAntiAffinity?.preferredDuringSchedulingIgnoredDuringExecution ?? []).map((term) => term.podAffinityTerm),
      ].some((term) => term.topologyKey === 'kubernetes.io/hostname');
      expect(spreadOverNodes || antiAffinityOverNodes).toBe(true);
    });

    it('the Service is a ClusterIP on port 80 that targets the named container port of the assistant pods', () => {
      expect(service.spec?.type ?? 'ClusterIP').toBe('ClusterIP');
      expect(labelsSelect(service.spec?.selector, deployment.spec?.template.metadata?.labels)).toBe(true);
      const port = defined(service.spec?.ports?.[0], 'Service port');
      expect(port.port).toBe(80);
      expect(port.targetPort).toBe('http');
      expect(containerPortOf(port.targetPort, appContainer)).toBe(configuredPort);
    });

    it('the API Service exposes only the API port, and no Service of the assistant pods exposes the metrics port', () => {
      expect(service.spec?.ports).toHaveLength(1);
      const metricsPort = numberFromConfig('METRICS_PORT');
      const ofAppPods = services.filter((candidate) => labelsSelect(candidate.spec?.selector, appPodLabels));
      expect(ofAppPods.length).toBeGreaterThanOrEqual(1);
      for (const candidate of ofAppPods) {
        // A Service port without targetPort targets its own port number.
        const targets = (candidate.spec?.ports ?? []).map((port) => containerPortOf(port.targetPort ?? port.port, appContainer));
        expect({ service: candidate.metadata?.name, targets }).toEqual({ service: candidate.metadata?.name, targets: [configuredPort] });
        expect(targets).not.toContain(metricsPort);
      }
    });

    it('the disruption budget covers the assistant pods and lets at most one go at a time while allowing drains', () => {
      expect(labelsSelect(pdb.spec?.selector?.matchLabels, deployment.spec?.template.metadata?.labels)).toBe(true);
      const { minAvailable, maxUnavailable } = pdb.spec ?? {};
      if (maxUnavailable !== undefined) expect(maxUnavailable).toBe(1);
      else expect(minAvailable).toBe(2);
      expect(typeof minAvailable === 'number' ? minAvailable : 0).toBeLessThan(deployment.spec?.replicas ?? 1);
    });

    it('the autoscaler scales the assistant Deployment on CPU between 3 and 10 replicas', () => {
      expect(hpa.apiVersion).toBe('autoscaling/v2');
      expect(hpa.spec?.scaleTargetRef).toEqual(
        expect.objectContaining({ apiVersion: 'apps/v1', kind: 'Deployment', name: deployment.metadata?.name }),
      );
      expect(hpa.spec?.minReplicas).toBe(3);
      expect(hpa.spec?.maxReplicas).toBe(10);
      expect(hpa.spec?.metrics?.some((metric) => metric.type === 'Resource' && metric.resource?.name === 'cpu')).toBe(true);
      expect(hpa.spec?.minReplicas).toBeLessThanOrEqual(deployment.spec?.replicas ?? 0);
    });

    it('the in-cluster Redis is one replica of redis:7-alpine behind a Service that REDIS_URL points at, with no persistent volume', () => {
      expect(redisDeployment.spec?.replicas).toBe(1);
      expect(redisContainer.image).toBe('redis:7-alpine');
      expect(redisPod.volumes?.every((volume) => volume.persistentVolumeClaim === undefined) ?? true).toBe(true);
      expect(labelsSelect(redisService.spec?.selector, redisDeployment.spec?.template.metadata?.labels)).toBe(true);

      const url = new URL(
        defined(containerEnvironment(appContainer, SECRETS_WITH_REDIS).REDIS_URL, 'REDIS_URL of the assistant container'),
      );
      expect(url.protocol).toMatch(/^rediss?:$/);
      expect(url.hostname).toBe(redisService.metadata?.name);
      const servicePort = defined(redisService.spec?.ports?.[0], 'redis Service port');
      expect(Number(url.port || 6379)).toBe(servicePort.port);
      expect(containerPortOf(servicePort.targetPort, redisContainer)).toBe(6379);
    });
  });

  describe('the ConfigMap', () => {
    it('sets every variable of the contract and the shipped promised ones but the secret ones and REDIS_URL, plus SHUTDOWN_DRAIN_SECONDS, LOG_LEVEL and NODE_ENV=production', () => {
      const notHere = new Set([...SECRET_VARIABLES, ...URL_WITH_PASSWORD_VARIABLES]);
      const expected = [...CONFIG_VARIABLES, ...EXTRA_VARIABLES].filter((name) => !notHere.has(name)).sort();
      expect(Object.keys(configData).sort()).toEqual(expected);
      expect(configData.NODE_ENV).toBe('production');
      expect(LOG_LEVELS).toContain(configData.LOG_LEVEL);
    });

    it('holds nothing secret: no token, key, password or URL with credentials, by name or by value', () => {
      for (const name of [...SECRET_VARIABLES, ...URL_WITH_PASSWORD_VARIABLES, ...REDIS_PASSWORD_VARIABLES])
        expect({ name, inConfigMap: name in configData }).toEqual({ name, inConfigMap: false });
      for (const [name, value] of Object.entries(configData)) {
        expect({ name, secretName: /(^|_)(TOKEN|PASSWORD|SECRET|API_KEYS?|AUTH)$/.test(name) }).toEqual({ name, secretName: false });
        expect({ name, secretValue: /hf_[A-Za-z0-9]{8,}|sha256:/i.test(value) }).toEqual({ name, secretValue: false });
        const credentials = URL.canParse(value) ? `${new URL(value).username}${new URL(value).password}` : '';
        expect({ name, credentials }).toEqual({ name, credentials: '' });
      }
    });

    it("passes the app's own environment validation, which would stop start-up on a bad value", () => {
      const env = validateEnvironment(configWithKeys);
      expect(env.PORT).toBe(configuredPort);
      expect(env.NODE_ENV).toBe('production');
      expect(env.SHUTDOWN_DRAIN_SECONDS).toBe(numberFromConfig('SHUTDOWN_DRAIN_SECONDS'));
      expect(env.METRICS_PORT).toBe(numberFromConfig('METRICS_PORT'));
      expect(env.RATE_LIMIT_PER_MINUTE).toBe(120);
      expect(env.DOCS_ENABLED).toBe(false);
      // The same validation does reject a bad value, so the checks above mean something.
      expect(() => validateEnvironment({ ...configWithKeys, CIRCUIT_BREAKER_TIMEOUT_SECONDS: 'thirty' })).toThrow(
        /CIRCUIT_BREAKER_TIMEOUT_SECONDS/,
      );
      expect(() => validateEnvironment({ ...configWithKeys, METRICS_PORT: configData.PORT })).toThrow(/METRICS_PORT/);
      expect(() => validateEnvironment({ ...configWithKeys, RATE_LIMIT_PER_MINUTE: '-1' })).toThrow(/RATE_LIMIT_PER_MINUTE/);
      expect(() => validateEnvironment({ ...configWithKeys, TRUST_PROXY: 'the ingress' })).toThrow(/TRUST_PROXY/);
    });

    it('requires keys: without the Secret’s ASSISTANT_API_KEYS start-up stops naming it, unless ASSISTANT_ALLOW_ANONYMOUS is "true"', () => {
      expect(configData.ASSISTANT_ALLOW_ANONYMOUS).toBe('false');
      expect(() => validateEnvironment({ ...configData })).toThrow(/ASSISTANT_API_KEYS: must be set with NODE_ENV=production/);
      expect(validateEnvironment({ ...configData, ASSISTANT_ALLOW_ANONYMOUS: 'true' }).ASSISTANT_API_KEYS).toBeUndefined();
      expect(Number(configData.RATE_LIMIT_PER_MINUTE)).toBeGreaterThan(0);
      // and the manifests say so where an operator looks
      expect(readFileSync(join(K8S_DIR, 'configmap.yaml'), 'utf8')).toMatch(/API keys are required/);
      expect(readFileSync(join(K8S_DIR, 'secret.example.yaml'), 'utf8')).toMatch(/assistant-api-keys: required/);
    });

    it('its TRUST_PROXY makes the app take the client address the ingress wrote (right-most), not the left-most one a client can forge', async () => {
      // The app's own HTTP adapter, built as main.ts builds it, from the ConfigMap's value.
      const saved = process.env.TRUST_PROXY;
      process.env.TRUST_PROXY = defined(configData.TRUST_PROXY, 'ConfigMap TRUST_PROXY');
      const adapter = (() => {
        try {
          return createHttpAdapter();
        } finally {
          if (saved === undefined) delete process.env.TRUST_PROXY;
          else process.env.TRUST_PROXY = saved;
        }
      })();
      const fastify = adapter.getInstance();
      fastify.get('/ip', (request, reply) => reply.send({ ip: request.ip }));
      try {
        // The client wrote the first entry itself; the ingress controller (the direct peer) appended the real address.
        const response = await fastify.inject({
          method: 'GET',
          url: '/ip',
          remoteAddress: '10.0.0.5',
          headers: { 'x-forwarded-for': '198.51.100.66, 203.0.113.7' },
        });
        expect(response.json()).toEqual({ ip: '203.0.113.7' });
      } finally {
        await fastify.close();
      }
    });
  });

  describe('secrets: HF_TOKEN, ASSISTANT_API_KEYS and the Redis password', () => {
    it('the example Secrets hold only placeholders and are named as the manifests expect', () => {
      const placeholder = defined(exampleSecret.stringData?.HF_TOKEN ?? exampleSecret.data?.HF_TOKEN, 'HF_TOKEN in secret.example.yaml');
      expect(placeholder).not.toMatch(/^hf_/);
      expect(placeholder).toMatch(/REPLACE|EXAMPLE|CHANGE/i);
      expect(readFileSync(join(K8S_DIR, 'secret.example.yaml'), 'utf8')).toMatch(/example/i);
      expect(defined(exampleRedisSecret.stringData?.REDIS_PASSWORD, 'REDIS_PASSWORD in secret.example.yaml')).toMatch(
        /REPLACE|EXAMPLE|CHANGE/i,
      );
      // Every secretKeyRef of the manifests names a Secret and key that the example shows.
      const examples = manifests.filter(({ file }) => file === 'secret.example.yaml').map(({ object }) => object);
      const refs = manifests
        .filter(({ file }) => file !== 'secret.example.yaml')
        .flatMap(({ object }) => (Deployment.is(object) ? (object.spec?.template.spec?.containers ?? []) : []))
        .flatMap((container) => container.env ?? [])
        .flatMap((variable) => (variable.valueFrom?.secretKeyRef === undefined ? [] : [variable.valueFrom.secretKeyRef]));
      expect(refs.length).toBeGreaterThanOrEqual(5);
      for (const { name, key } of refs) {
        const example = examples.find((object) => Secret.is(object) && object.metadata?.name === name);
        const keys = Secret.is(example) ? Object.keys({ ...example.data, ...example.stringData }) : [];
        expect({ name, key, shown: keys.includes(key) }).toEqual({ name, key, shown: true });
      }
    });

    it('have no value anywhere in deploy/, docker-compose.yml or the Dockerfile but the example placeholders and references to variables', () => {
      const files = [...listFiles(DEPLOY_DIR), join(ROOT, 'docker-compose.yml'), join(ROOT, 'Dockerfile'), join(ROOT, '.dockerignore')];
      for (const path of files) {
        const name = relative(ROOT, path);
        const text = readFileSync(path, 'utf8');
        // Nothing that looks like a real token, in any file.
        expect({ name, token: /hf_[A-Za-z0-9]{20,}/.exec(text)?.[0] }).toEqual({ name, token: undefined });
        if (name === 'deploy/k8s/secret.example.yaml') continue;
        for (const match of text.matchAll(/(?<![\w${])HF_TOKEN["']?[ \t]*[:=][ \t]*([^\s#]*)/g)) {
          const value = (match[1] ?? '').replace(/^["']|["']$/g, '');
          // Allowed: empty, or a reference to the caller's variable ($HF_TOKEN, ${HF_TOKEN:-}).
          expect({ name, value }).toEqual({ name, value: expect.stringMatching(/^(\$\{?HF_TOKEN(:?-)?\}?)?$/) });
        }
        for (const match of text.matchAll(/(?<![\w${(])(REDIS_PASSWORD|REDISCLI_AUTH)["']?[ \t]*[:=][ \t]*([^\s#]*)/g)) {
          const value = (match[2] ?? '').replace(/^["']|["']$/g, '');
          // Allowed: empty, or a shell or Kubernetes reference / substitution ($VAR, ${VAR}, $(openssl rand -hex 32)).
          expect({ name, value }).toEqual({ name, value: expect.stringMatching(/^(\$.*)?$/) });
        }
        for (const match of text.matchAll(/(?<![\w${(])ASSISTANT_API_KEYS["']?[ \t]*[:=][ \t]*([^\s#]*)/g)) {
          const value = (match[1] ?? '').replace(/^["']|["']$/g, '');
          // Allowed: empty, references, and sha256: forms; never a plain key.
          for (const entry of value.split(',').filter((part) => part !== ''))
            expect({ name, entry }).toEqual({ name, entry: expect.stringMatching(/^(\$|sha256:)/) });
        }
      }
    });

    it('no parsed manifest sets a secret by value: only secretKeyRefs and the example Secrets carry them', () => {
      const secretNames = new Set([...SECRET_VARIABLES, ...REDIS_PASSWORD_VARIABLES]);
      const offenders: string[] = [];
      const walk = (value: unknown, path: string): void => {
        if (Array.isArray(value)) value.forEach((item, index) => walk(item, `${path}[${index}]`));
        else if (isRecord(value)) {
          if (typeof value.name === 'string' && secretNames.has(value.name) && value.value !== undefined) offenders.push(`${path}.value`);
          for (const [key, child] of Object.entries(value)) {
            if (secretNames.has(key)) offenders.push(`${path}.${key}`);
            walk(child, `${path}.${key}`);
          }
        }
      };
      for (const { file, object } of manifests) if (file !== 'secret.example.yaml') walk(object, file);
      expect(offenders).toEqual([]);
      // The walk does catch one.
      const leaky = structuredClone(appContainer);
      leaky.env = [{ name: 'ASSISTANT_API_KEYS', value: 'plain-key' }];
      walk(leaky, 'leaky');
      expect(offenders).toEqual(['leaky.env[0].value']);
    });
  });

  describe('Redis with a password from a Secret', () => {
    const passwordRef = (container: IContainer, name: string) => {
      const entries = envVar(container, name);
      expect({ name, entries: entries.length }).toEqual({ name, entries: 1 });
      expect(entries[0]?.value).toBeUndefined();
      return entries[0]?.valueFrom?.secretKeyRef;
    };

    it('Redis requires the REDIS_PASSWORD of the Secret assistant-redis, a required key, through --requirepass', () => {
      expect(passwordRef(redisContainer, 'REDIS_PASSWORD')).toEqual({ name: exampleRedisSecret.metadata?.name, key: 'REDIS_PASSWORD' });
      const args = redisContainer.args ?? [];
      // The pod spec holds only the reference; the kubelet expands it from the container's environment.
      expect(args[args.indexOf('--requirepass') + 1]).toBe('$(REDIS_PASSWORD)');
      const expanded = containerArgs(redisContainer, SECRETS_WITH_REDIS);
      expect(expanded[expanded.indexOf('--requirepass') + 1]).toBe(SAMPLE_REDIS_PASSWORD);
      expect(args.filter((arg) => arg === '--requirepass')).toHaveLength(1);
      expect(redisContainer.command).toBeUndefined();
      // Without the Secret the pod does not start, rather than start with "$(REDIS_PASSWORD)" or no password.
      expect(() => containerArgs(redisContainer, {})).toThrow(ContainerConfigError);
    });

    it("the app's REDIS_URL carries that same password, built by the kubelet from the same Secret key, and passes the app's validation", () => {
      const appRef = passwordRef(appContainer, 'REDIS_PASSWORD');
      expect(appRef).toEqual(passwordRef(redisContainer, 'REDIS_PASSWORD'));
      expect(appRef?.optional ?? false).toBe(false);
      const names = (appContainer.env ?? []).map((variable) => variable.name);
      // $(REDIS_PASSWORD) is expanded only when defined earlier in the list.
      expect(names.indexOf('REDIS_PASSWORD')).toBeLessThan(names.indexOf('REDIS_URL'));
      expect(envVar(appContainer, 'REDIS_URL')[0]?.value).toContain('$(REDIS_PASSWORD)');

      const env = containerEnvironment(appContainer, SECRETS);
      const validated = validateEnvironment(env);
      const url = new URL(defined(validated.REDIS_URL, 'validated REDIS_URL'));
      expect(decodeURIComponent(url.password)).toBe(SAMPLE_REDIS_PASSWORD);
      expect(url.hostname).toBe(redisService.metadata?.name);
      expect(() => containerEnvironment(appContainer, {})).toThrow(ContainerConfigError);

      // The order matters, and this check would see it: listed after REDIS_URL, the reference stays as written.
      const reordered = structuredClone(appContainer);
      reordered.env = [...(reordered.env ?? [])].sort((a, b) => (a.name === 'REDIS_URL' ? -1 : b.name === 'REDIS_URL' ? 1 : 0));
      expect(new URL(containerEnvironment(reordered, SECRETS_WITH_REDIS).REDIS_URL ?? '').password).not.toBe(SAMPLE_REDIS_PASSWORD);
    });

    it('the password goes into the URL as written, so the example placeholder is URL-safe (the README says: openssl rand -hex)', () => {
      const placeholder = defined(exampleRedisSecret.stringData?.REDIS_PASSWORD, 'REDIS_PASSWORD placeholder');
      expect(placeholder).toMatch(/^[A-Za-z0-9._~-]+$/);
      const url = new URL(expandReferences(envVar(appContainer, 'REDIS_URL')[0]?.value ?? '', { REDIS_PASSWORD: placeholder }));
      expect(url.password).toBe(placeholder);
      expect(readFileSync(join(DEPLOY_DIR, 'README.md'), 'utf8')).toContain('openssl rand -hex 32');
    });

    it('the readiness probe authenticates through REDISCLI_AUTH from the same Secret key and keeps the password off command lines', () => {
      expect(passwordRef(redisContainer, 'REDISCLI_AUTH')).toEqual(passwordRef(redisContainer, 'REDIS_PASSWORD'));
      const command = (redisContainer.readinessProbe?.exec?.command ?? []).join(' ');
      expect(command).toMatch(/redis-cli\b.*\bping\b/i);
      // PONG, not just the exit status: an error reply (NOAUTH, LOADING) is not ready.
      expect(command).toContain('PONG');
      expect(command).not.toMatch(/\s-a\s|--pass|--user|REDIS_PASSWORD|REDISCLI_AUTH|\$/);
      for (const probe of [redisContainer.readinessProbe, redisContainer.livenessProbe, redisContainer.startupProbe])
        expect((probe?.exec?.command ?? []).join(' ')).not.toMatch(/\s-a\s|REDIS_PASSWORD/);
    });
  });

  describe('ASSISTANT_API_KEYS', () => {
    it('comes only from an optional key of the Secret assistant-api-keys: without it the pods start and the app stops naming it, with it the app gets the keys', () => {
      const entries = envVar(appContainer, 'ASSISTANT_API_KEYS');
      expect(entries).toHaveLength(1);
      expect(entries[0]?.value).toBeUndefined();
      expect(entries[0]?.valueFrom?.secretKeyRef).toEqual({
        name: exampleApiKeysSecret.metadata?.name,
        key: 'ASSISTANT_API_KEYS',
        optional: true,
      });
      expect(configData).not.toHaveProperty('ASSISTANT_API_KEYS');
      // No CreateContainerConfigError without the Secret: the app's own line says what to set.
      const withoutKeys = containerEnvironment(appContainer, SECRETS_WITH_REDIS);
      expect(withoutKeys).not.toHaveProperty('ASSISTANT_API_KEYS');
      expect(() => validateEnvironment(withoutKeys)).toThrow(/ASSISTANT_API_KEYS.*ASSISTANT_ALLOW_ANONYMOUS=true/);
      expect(validateEnvironment(containerEnvironment(appContainer, SECRETS)).ASSISTANT_API_KEYS).toBe(SAMPLE_API_KEYS);
    });

    it('the example holds only sha256:<64 hex> forms, never a key a caller would send', () => {
      const keys = defined(exampleApiKeysSecret.stringData?.ASSISTANT_API_KEYS, 'ASSISTANT_API_KEYS in secret.example.yaml');
      const entries = keys.split(',').map((entry) => entry.trim());
      expect(entries.length).toBeGreaterThanOrEqual(1);
      for (const entry of entries) expect(entry).toMatch(/^sha256:[0-9a-f]{64}$/i);
    });

    it('the probes send no key: the health routes never need one', () => {
      for (const name of ['livenessProbe', 'readinessProbe', 'startupProbe'] as const)
        expect({ name, headers: probe(name).httpGet?.httpHeaders ?? [] }).toEqual({ name, headers: [] });
    });
  });

  describe('NetworkPolicies', () => {
    it('every policy selects the assistant pods or the Redis pods, never every pod of the namespace and never both', () => {
      for (const policy of networkPolicies) {
        const name = policy.metadata?.name;
        expect({ name, matchLabels: Object.keys(policy.spec?.podSelector.matchLabels ?? {}).length > 0 }).toEqual({
          name,
          matchLabels: true,
        });
        const app = policySelectorSelects(policy.spec?.podSelector, appPodLabels);
        const redis = policySelectorSelects(policy.spec?.podSelector, redisPodLabels);
        expect({ name, selectsOne: app !== redis }).toEqual({ name, selectsOne: true });
      }
    });

    it('Redis accepts connections only from the assistant API pods of its namespace, only on the Redis port, and opens none itself', () => {
      const policies = policiesSelecting(redisPodLabels);
      expect(policies.length).toBeGreaterThanOrEqual(1);
      for (const policy of policies) expect(policyTypesOf(policy)).toEqual(expect.arrayContaining(['Ingress', 'Egress']));
      const rules = ingressRulesOf(policies);
      expect(rules.length).toBeGreaterThanOrEqual(1);
      for (const rule of rules) {
        // An empty or missing `from` would admit any source.
        expect(rule.from?.length ?? 0).toBeGreaterThan(0);
        for (const peer of rule.from ?? []) {
          expect(peer.ipBlock).toBeUndefined();
          // No namespaceSelector: the pod selector applies to Redis' own namespace only.
          expect(peer.namespaceSelector).toBeUndefined();
          expect(Object.keys(peer.podSelector?.matchLabels ?? {}).length).toBeGreaterThan(0);
          expect(policySelectorSelects(peer.podSelector, appPodLabels)).toBe(true);
          expect(policySelectorSelects(peer.podSelector, { 'app.kubernetes.io/name': 'intruder' })).toBe(false);
        }
        expect(portsRuleOpens(rule, redisContainer)).toEqual(rule.ports?.map(() => 6379));
      }
      expect(rules.some((rule) => ruleOpensPort(rule, 6379, redisContainer))).toBe(true);
      expect(policies.flatMap((policy) => policy.spec?.egress ?? [])).toEqual([]);
    });

    it('the assistant pods accept the API port from any source and the metrics port only from the monitoring namespace, and nothing else', () => {
      const metricsPort = numberFromConfig('METRICS_PORT');
      const policies = policiesSelecting(appPodLabels);
      expect(policies.length).toBeGreaterThanOrEqual(1);
      for (const policy of policies) expect(policyTypesOf(policy)).toContain('Ingress');
      const rules = ingressRulesOf(policies);
      // The API port: a rule with no `from` (documented in deploy/README.md, with how to narrow it to the ingress controller).
      expect(rules.some((rule) => (rule.from ?? []).length === 0 && ruleOpensPort(rule, configuredPort, appContainer))).toBe(true);
      // The metrics port: every rule that opens it admits exactly the monitoring namespace.
      const metricsRules = rules.filter((rule) => ruleOpensPort(rule, metricsPort, appContainer));
      expect(metricsRules.length).toBeGreaterThanOrEqual(1);
      for (const rule of metricsRules) expect(rule.from).toEqual([{ namespaceSelector: { matchLabels: MONITORING_NAMESPACE_SELECTOR } }]);
      // No other port: every port of every rule is the API port or the metrics port.
      for (const rule of rules)
        for (const port of portsRuleOpens(rule, appContainer)) expect([configuredPort, metricsPort]).toContain(port);
      // The checks above do see a rule that would let anyone reach the metrics port.
      const open: INetworkPolicyIngressRule = { ports: [{ protocol: 'TCP', port: 'metrics' }] };
      expect(ruleOpensPort(open, metricsPort, appContainer) && (open.from ?? []).length === 0).toBe(true);
    });

    it('deploy/README.md documents the policies, the Secrets to create, rediss:// and the metrics port', () => {
      const readme = readFileSync(join(DEPLOY_DIR, 'README.md'), 'utf8');
      expect(readme).toContain('rediss://');
      expect(readme).toContain('NetworkPolic');
      expect(readme).toContain('monitoring');
      expect(readme).toContain('METRICS_PORT');
      expect(readme).toContain('TRUST_PROXY');
      for (const secret of [exampleSecret, exampleRedisSecret, exampleApiKeysSecret])
        expect(readme).toContain(`kubectl create secret generic ${secret.metadata?.name ?? ''}`);
    });
  });

  describe('.env.production', () => {
    const text = readFileSync(join(ROOT, '.env.production'), 'utf8');
    const values = parseEnv(text) as Record<string, string>;

    it('ships a rate limit and says keys are required: without them start-up stops naming ASSISTANT_API_KEYS', () => {
      expect(Number(values.RATE_LIMIT_PER_MINUTE)).toBeGreaterThan(0);
      expect(values.ASSISTANT_ALLOW_ANONYMOUS).toBe('false');
      expect(text).toMatch(/Keys are required/);
      expect(() => validateEnvironment({ ...values, NODE_ENV: 'production' })).toThrow(/ASSISTANT_API_KEYS/);
      const env = validateEnvironment({ ...values, NODE_ENV: 'production', ASSISTANT_API_KEYS: SAMPLE_API_KEYS });
      expect(env.DOCS_ENABLED).toBe(false);
    });
  });

  describe('the Dockerfile', () => {
    it('builds and runs on slim images of the Node major that .nvmrc pins, in several stages', () => {
      const major = readFileSync(join(ROOT, '.nvmrc'), 'utf8').trim().split('.')[0];
      expect(major).toBe('24');
      expect(stages.length).toBeGreaterThanOrEqual(2);
      for (const stage of stages)
        expect(stage[0]?.args).toMatch(
          new RegExp(`^(--platform=\\S+\\s+)?node:${major}(\\.\\d+){0,2}-slim(@sha256:[0-9a-f]+)?(\\s+AS\\s+\\S+)?$`, 'i'),
        );
    });

    it('builds with the Nest CLI from nest-cli.json, as `npm run build` does', () => {
      const copied = buildStages
        .flat()
        .filter((instruction) => instruction.keyword === 'COPY')
        .flatMap((instruction) => instruction.args.split(/\s+/));
      expect(copied).toEqual(expect.arrayContaining(['nest-cli.json', 'tsconfig.json', 'tsconfig.build.json']));
      const { scripts } = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { scripts: Record<string, string> };
      expect(scripts['build']).toBe('nest build');
    });

    it('compiles with the full install in the build stage and installs only production dependencies in the runtime stage', () => {
      const buildRuns = buildStages
        .flat()
        .filter((instruction) => instruction.keyword === 'RUN')
        .map((instruction) => instruction.args);
      expect(buildRuns.some((run) => /\bnpm ci\b/.test(run))).toBe(true);
      expect(buildRuns.some((run) => /\bnpm run build\b/.test(run))).toBe(true);
      const runtimeRuns = runtimeStage.filter((instruction) => instruction.keyword === 'RUN').map((instruction) => instruction.args);
      expect(runtimeRuns.some((run) => /\bnpm ci\b.*--omit=dev\b/.test(run))).toBe(true);
      expect(runtimeRuns.some((run) => /\bnpm run build\b|\bnpm (install|i)\b/.test(run))).toBe(false);
    });

    it('the runtime image holds dist/, the knowledge base, .env.production and the package files, with NODE_ENV=production', () => {
      const copies = runtimeStage.filter((instruction) => instruction.keyword === 'COPY').map((instruction) => instruction.args);
      expect(copies.some((args) => /^--from=\S+\s+\S*\/dist\/?\s+/.test(args))).toBe(true);
      expect(copies.some((args) => /(^|\s)data\/?\s/.test(args))).toBe(true);
      expect(copies.some((args) => /(^|\s)\.env\.production\s/.test(args))).toBe(true);
      expect(copies.some((args) => /package\.json/.test(args) && /package-lock\.json/.test(args))).toBe(true);
      const envs = runtimeStage.filter((instruction) => instruction.keyword === 'ENV').map((instruction) => instruction.args);
      expect(envs.some((args) => /\bNODE_ENV[= ]production\b/.test(args))).toBe(true);
      expect(existsSync(join(ROOT, 'data/knowledge'))).toBe(true);
      expect(existsSync(join(ROOT, '.env.production'))).toBe(true);
    });

    it('runs as the non-root node user, whose uid is the one the pod runs as', () => {
      const user = runtimeStage.filter((instruction) => instruction.keyword === 'USER').at(-1)?.args;
      expect(user).toMatch(/^(node|1000)(:(node|1000))?$/);
      expect(podSpec.securityContext?.runAsUser ?? appContainer.securityContext?.runAsUser).toBe(1000);
    });

    it('exposes the app port and starts node directly in exec form, so SIGTERM reaches the app', () => {
      expect(runtimeStage.filter((instruction) => instruction.keyword === 'EXPOSE').map((instruction) => instruction.args)).toEqual([
        String(configuredPort),
      ]);
      const cmd = defined(runtimeStage.filter((instruction) => instruction.keyword === 'CMD').at(-1), 'CMD').args;
      const parsed: unknown = JSON.parse(cmd);
      expect(parsed).toEqual([
        'node',
        expect.stringMatching(/^--max-old-space-size=\d+$/),
        expect.stringMatching(/^--max-semi-space-size=\d+$/),
        'dist/main.js',
      ]);
      expect(runtimeStage.some((instruction) => instruction.keyword === 'ENTRYPOINT')).toBe(false);
    });

    it("sizes the heap for the container's memory limit: old space and young generation at most 60 % of it", () => {
      const cmd = JSON.parse(defined(runtimeStage.filter((instruction) => instruction.keyword === 'CMD').at(-1), 'CMD').args) as string[];
      const flag = (name: string): number => Number(cmd.find((arg) => arg.startsWith(`--${name}=`))?.split('=')[1]);
      const limit = String(appContainer.resources?.limits?.['memory']);
      expect(limit).toMatch(/^\d+Mi$/);
      // V8's young generation is three semi-spaces at most.
      const heapMegabytes = flag('max-old-space-size') + 3 * flag('max-semi-space-size');
      expect(heapMegabytes).toBeLessThanOrEqual(0.6 * Number.parseInt(limit, 10));
    });

    it('bakes in no secret: no instruction names HF_TOKEN and no build argument or variable looks like a token', () => {
      for (const instruction of instructions) {
        expect(`${instruction.keyword} ${instruction.args}`).not.toMatch(/HF_TOKEN/);
        if (instruction.keyword === 'ARG' || instruction.keyword === 'ENV')
          expect(instruction.args).not.toMatch(/TOKEN|SECRET|PASSWORD|KEY/i);
      }
    });

    it('.dockerignore keeps out dependencies, build output, git, tests and local env files but not what the Dockerfile copies', () => {
      for (const path of [
        'node_modules',
        'dist',
        '.git',
        'coverage',
        'test',
        'bench/results/run.json',
        '.env.local',
        '.env.development',
        'dist-bench',
      ]) {
        expect({ path, ignored: dockerIgnores(dockerignorePatterns, path) }).toEqual({ path, ignored: true });
      }
      const copied = instructions
        .filter((instruction) => instruction.keyword === 'COPY' && !instruction.args.startsWith('--from'))
        .flatMap((instruction) => instruction.args.split(/\s+/).slice(0, -1));
      expect(copied).toEqual(expect.arrayContaining(['src', 'data', '.env.production', 'package.json']));
      for (const path of [...copied, 'data/knowledge/overview.md', 'src/main.ts']) {
        expect({ path, ignored: dockerIgnores(dockerignorePatterns, path) }).toEqual({ path, ignored: false });
      }
    });
  });

  describe('docker-compose.yml', () => {
    const app = at(compose, 'services', 'app');
    const appEnv = composeEnvironment('app');

    it('runs the app beside redis:7-alpine, starting after Redis, with REDIS_URL at the redis service', () => {
      expect(at(compose, 'services', 'redis', 'image')).toBe('redis:7-alpine');
      const dependsOn = at(app, 'depends_on');
      expect(Array.isArray(dependsOn) ? dependsOn : Object.keys(isRecord(dependsOn) ? dependsOn : {})).toContain('redis');
      expect(appEnv.REDIS_URL).toBe('redis://redis:6379');
      expect(at(app, 'build')).toBeDefined();
    });

    it("takes HF_TOKEN from the caller's environment and nothing else", () => {
      expect(appEnv.HF_TOKEN).toBe('${HF_TOKEN:-}');
    });

    it('health-checks the readiness route, never the circuit-breaker route', () => {
      const test = arrayAt(app, 'healthcheck', 'test').map(String).join(' ');
      expect(test).toContain(`${READINESS_ROUTE}'`);
      expect(test).not.toContain(CIRCUIT_BREAKER_ROUTE);
      expect(test).toContain(`:${configuredPort}/`);
    });

    it('serves without keys on the host’s loopback alone: its port is published on 127.0.0.1, keys from the caller’s shell when given', () => {
      expect(arrayAt(app, 'ports').map(String)).toEqual(['127.0.0.1:3000:3000']);
      expect(appEnv.ASSISTANT_API_KEYS).toBe('${ASSISTANT_API_KEYS:-}');
      expect(withComposeDefaults(appEnv.ASSISTANT_ALLOW_ANONYMOUS ?? '')).toBe('true');
    });

    it("its settings pass the app's validation and its stop grace period covers the drain and an in-flight model call", () => {
      const env = validateEnvironment(Object.fromEntries(Object.entries(appEnv).map(([key, value]) => [key, withComposeDefaults(value)])));
      expect(LOG_LEVELS).toContain(withComposeDefaults(appEnv.LOG_LEVEL ?? 'info'));
      expect(composeSeconds(at(app, 'stop_grace_period'))).toBeGreaterThanOrEqual(
        env.SHUTDOWN_DRAIN_SECONDS + env.CIRCUIT_BREAKER_TIMEOUT_SECONDS,
      );
    });
  });

  describe('the Grafana dashboard', () => {
    it('parses, has schemaVersion 39 or later and asks for a Prometheus datasource on import', () => {
      expect(at(dashboard, 'schemaVersion')).toEqual(expect.any(Number));
      expect(Number(at(dashboard, 'schemaVersion'))).toBeGreaterThanOrEqual(39);
      expect(arrayAt(dashboard, '__inputs')).toEqual(
        expect.arrayContaining([expect.objectContaining({ name: 'DS_PROMETHEUS', type: 'datasource', pluginId: 'prometheus' })]),
      );
      expect(at(dashboard, 'title')).toEqual(expect.any(String));
      expect(at(dashboard, 'uid')).toEqual(expect.any(String));
    });

    it('every panel has the Prometheus datasource and at least one query, and ids are unique', () => {
      expect(dataPanels.length).toBeGreaterThanOrEqual(8);
      for (const panel of dataPanels) {
        const title = at(panel, 'title');
        expect({ title, datasource: at(panel, 'datasource') }).toEqual({
          title,
          datasource: { type: 'prometheus', uid: '${DS_PROMETHEUS}' },
        });
        const targets = arrayAt(panel, 'targets');
        expect({ title, targets: targets.length > 0 }).toEqual({ title, targets: true });
        for (const target of targets) {
          expect({ title, expr: at(target, 'expr') }).toEqual({ title, expr: expect.stringMatching(/\S/) });
          const datasource = at(target, 'datasource');
          if (datasource !== undefined) expect(datasource).toEqual({ type: 'prometheus', uid: '${DS_PROMETHEUS}' });
        }
      }
      const ids = allPanels.map((panel) => at(panel, 'id'));
      expect(new Set(ids).size).toBe(ids.length);
    });

    it('panels stay inside the 24-column grid and do not overlap', () => {
      const boxes = allPanels.map((panel) => ({
        title: String(at(panel, 'title')),
        x: Number(at(panel, 'gridPos', 'x')),
        y: Number(at(panel, 'gridPos', 'y')),
        w: Number(at(panel, 'gridPos', 'w')),
        h: Number(at(panel, 'gridPos', 'h')),
      }));
      for (const box of boxes)
        expect({ title: box.title, fits: box.x >= 0 && box.w > 0 && box.h > 0 && box.x + box.w <= 24 }).toEqual({
          title: box.title,
          fits: true,
        });
      for (const [index, a] of boxes.entries()) {
        for (const b of boxes.slice(index + 1)) {
          const overlap = a.x < b.x + b.w && b.x < a.x + a.w && a.y < b.y + b.h && b.y < a.y + a.h;
          expect({ a: a.title, b: b.title, overlap }).toEqual({ a: a.title, b: b.title, overlap: false });
        }
      }
    });

    it('uses only the metrics the app exports, and every one of them', () => {
      const used = new Set(allExprs.flatMap(metricNamesIn));
      for (const name of used) expect({ name, known: name in METRICS }).toEqual({ name, known: true });
      expect([...used].sort()).toEqual(Object.keys(METRICS).sort());
    });

    it('filters and groups only by labels those metrics have, with values they can take', () => {
      for (const expr of allExprs) {
        for (const matcher of matchersIn(expr)) {
          expect({ expr, metric: matcher.metric, label: matcher.label, known: labelsOf(matcher.metric).includes(matcher.label) }).toEqual({
            expr,
            metric: matcher.metric,
            label: matcher.label,
            known: true,
          });
          const allowed = METRICS[matcher.metric]?.[matcher.label];
          if (allowed === undefined || allowed === null || matcher.value.includes('$')) continue;
          const values = matcher.operator === '=~' || matcher.operator === '!~' ? matcher.value.split('|') : [matcher.value];
          for (const value of values)
            expect({ expr, label: matcher.label, value, known: allowed.includes(value) }).toEqual({
              expr,
              label: matcher.label,
              value,
              known: true,
            });
        }
        const labels = new Set(metricNamesIn(expr).flatMap(labelsOf));
        for (const label of groupingLabelsIn(expr)) expect({ expr, label, known: labels.has(label) }).toEqual({ expr, label, known: true });
      }
    });

    it('shows breaker state as a state timeline mapping 0, 1, 2 to closed (green), half-open (yellow), open (red)', () => {
      const panel = panelTitled('Breaker state');
      expect(at(panel, 'type')).toBe('state-timeline');
      expect(stringAt(panel, 'targets', 0, 'expr')).toContain('assistant_circuit_breaker_state');
      const options = arrayAt(panel, 'fieldConfig', 'defaults', 'mappings')
        .filter((mapping) => at(mapping, 'type') === 'value')
        .map((mapping) => at(mapping, 'options'));
      const merged: Record<string, unknown> = Object.assign({}, ...options.filter(isRecord));
      expect(merged['0']).toEqual(expect.objectContaining({ text: 'closed', color: 'green' }));
      expect(merged['1']).toEqual(expect.objectContaining({ text: 'half-open', color: 'yellow' }));
      expect(merged['2']).toEqual(expect.objectContaining({ text: 'open', color: 'red' }));
    });

    it('stacks answers by source, shows fallback reasons and breaker event rates', () => {
      const bySource = panelTitled('Answers by source');
      expect(stringAt(bySource, 'targets', 0, 'expr')).toMatch(/sum by \(source\) \(rate\(assistant_answers_total/);
      expect(at(bySource, 'fieldConfig', 'defaults', 'custom', 'stacking', 'mode')).toBe('normal');
      expect(stringAt(panelTitled('Fallback reasons'), 'targets', 0, 'expr')).toMatch(/by \(fallback_reason\).*assistant_answers_total/);
      expect(panelExprs.some((expr) => /rate\(assistant_circuit_breaker_events_total/.test(expr))).toBe(true);
    });

    it('computes p99 latency by route and upstream p50/p99 from the histograms over 5 minutes', () => {
      const p99 = stringAt(panelTitled('p99 by route'), 'targets', 0, 'expr');
      expect(p99.replace(/\{[^}]*\}/g, '')).toBe(
        'histogram_quantile(0.99, sum by (le, route) (rate(http_request_duration_seconds_bucket[5m])))',
      );
      const upstream = panelExprs.filter((expr) => expr.includes('assistant_upstream_call_duration_seconds_bucket'));
      expect(upstream.some((expr) => expr.startsWith('histogram_quantile(0.5,'))).toBe(true);
      expect(upstream.some((expr) => expr.startsWith('histogram_quantile(0.99,'))).toBe(true);
      for (const expr of upstream) expect(groupingLabelsIn(expr)).toContain('le');
    });

    it('deploy/README.md explains every panel of the dashboard by its title', () => {
      const readme = readFileSync(join(DEPLOY_DIR, 'README.md'), 'utf8');
      for (const panel of dataPanels) {
        const title = String(at(panel, 'title'));
        expect({ title, explained: readme.includes(title) }).toEqual({ title, explained: true });
      }
    });
  });
});
