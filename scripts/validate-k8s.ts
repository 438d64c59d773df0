/**
 * Offline checks of the deployment files, with no cluster and no Docker:
 *
 * - every YAML file under k8s/ parses (and docker-compose.yml);
 * - every Kubernetes object validates against the OpenAPI schema of its kind
 *   (kubernetes-models: catches wrong types and missing required fields, not
 *   unknown fields); a custom resource's (an unknown apiVersion in a dotted
 *   group outside *.k8s.io, e.g. KEDA's keda.sh/v1alpha1) is only parsed, with a note;
 * - within each overlay (a kustomization with its bases), the references hold:
 *   selectors match pod labels, Services/HPAs/PDBs find their workload, and
 *   ServiceAccounts, ConfigMaps, volumes, named ports and Roles exist;
 * - the interfleet config file validates against common/config.ts, and pods
 *   get more termination grace than the process's shutdown grace;
 * - when kubectl is installed, `kubectl kustomize` renders every overlay and
 *   the rendered objects validate too.
 *
 * Usage: tsx scripts/validate-k8s.ts [k8s-dir]   (exit 1 on any problem)
 */
import { execFileSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { basename, dirname, join, relative, resolve } from 'node:path';
import * as models from 'kubernetes-models';
import { parseAllDocuments } from 'yaml';
import { parseConfig } from '../common/config.ts';

const root = resolve(import.meta.dirname, '..');
const k8sDir = resolve(root, process.argv[2] ?? 'k8s');
const CONFIG_FILE = 'interfleet.yaml';

type Obj = Record<string, unknown>;
interface K8sObject {
  apiVersion: string;
  kind: string;
  metadata: { name?: string; namespace?: string; labels?: Record<string, string> };
  raw: Obj;
  file: string;
}

const problems: string[] = [];
const notes: string[] = [];
const problem = (where: string, what: string): void => void problems.push(`${where}: ${what}`);
let customResources = 0;

// ---- helpers over untyped YAML -------------------------------------------------

const isObj = (v: unknown): v is Obj => typeof v === 'object' && v !== null && !Array.isArray(v);
const asObj = (v: unknown): Obj => (isObj(v) ? v : {});
const asArr = (v: unknown): unknown[] => (Array.isArray(v) ? v : []);
const asStr = (v: unknown): string | undefined => (typeof v === 'string' ? v : undefined);
const asLabels = (v: unknown): Record<string, string> =>
  Object.fromEntries(Object.entries(asObj(v)).filter((e): e is [string, string] => typeof e[1] === 'string'));
const get = (v: unknown, ...path: string[]): unknown => path.reduce<unknown>((node, key) => asObj(node)[key], v);

function matches(selector: Record<string, string>, labels: Record<string, string>): boolean {
  const entries = Object.entries(selector);
  return entries.length > 0 && entries.every(([k, v]) => labels[k] === v);
}

// ---- the model registry: apiVersion/kind -> constructor -------------------------

interface ModelCtor {
  new (data: unknown): { validate(): void };
  apiVersion: string;
  kind: string;
}
const registry = new Map<string, ModelCtor>();
(function collect(node: unknown, depth: number): void {
  if (depth > 3 || !isObj(node)) return;
  for (const value of Object.values(node)) {
    if (typeof value === 'function') {
      const ctor = value as unknown as Partial<ModelCtor>;
      if (typeof ctor.apiVersion === 'string' && typeof ctor.kind === 'string') {
        registry.set(`${ctor.apiVersion}/${ctor.kind}`, value as unknown as ModelCtor);
      }
    } else {
      collect(value, depth + 1);
    }
  }
})(models, 0);

/**
 * A custom resource's apiVersion (keda.sh/v1alpha1...): one kubernetes-models has no kind for, in a
 * dotted group (CRD groups must have a dot) outside *.k8s.io, so `app/v1` or `apps/v2` stay problems.
 */
const knownApiVersions = new Set([...registry.values()].map((m) => m.apiVersion));
const isCustomApiVersion = (apiVersion: string): boolean => {
  const group = apiVersion.includes('/') ? apiVersion.slice(0, apiVersion.indexOf('/')) : '';
  return group.includes('.') && !group.endsWith('.k8s.io') && !knownApiVersions.has(apiVersion);
};

function validateModel(obj: K8sObject, where: string): void {
  const Model = registry.get(`${obj.apiVersion}/${obj.kind}`);
  if (!Model && isCustomApiVersion(obj.apiVersion)) {
    // A custom resource (e.g. k8s/keda/'s ScaledObject): no schema here, so it is only parsed.
    notes.push(`${where}: no schema for ${obj.apiVersion} ${obj.kind} (a custom resource), not validated`);
    customResources++;
    return;
  }
  if (!Model) {
    problem(where, `unknown apiVersion/kind ${obj.apiVersion} ${obj.kind}`);
    return;
  }
  try {
    new Model(obj.raw).validate();
  } catch (err) {
    const errors = (err as { errors?: { instancePath?: string; message?: string }[] }).errors;
    if (errors?.length) {
      for (const e of errors) problem(where, `${e.instancePath || '/'} ${e.message ?? 'is invalid'}`);
    } else {
      problem(where, (err as Error).message);
    }
  }
}

// ---- reading files --------------------------------------------------------------

function yamlFiles(dir: string): string[] {
  return readdirSync(dir)
    .sort()
    .flatMap((name) => {
      const path = join(dir, name);
      if (statSync(path).isDirectory()) return yamlFiles(path);
      return /\.ya?ml$/.test(name) ? [path] : [];
    });
}

function parseYamlFile(file: string, merge = false): unknown[] {
  const docs = parseAllDocuments(readFileSync(file, 'utf8'), { merge, prettyErrors: true });
  const list = Array.isArray(docs) ? docs : [docs];
  const out: unknown[] = [];
  for (const doc of list) {
    for (const e of doc.errors) problem(relative(root, file), `YAML: ${e.message}`);
    for (const w of doc.warnings) problem(relative(root, file), `YAML: ${w.message}`);
    const value: unknown = doc.toJS();
    if (value !== null && value !== undefined) out.push(value);
  }
  return out;
}

function toObject(raw: unknown, file: string): K8sObject | undefined {
  const where = relative(root, file);
  if (!isObj(raw)) {
    problem(where, 'a document is not a mapping');
    return undefined;
  }
  const apiVersion = asStr(raw.apiVersion);
  const kind = asStr(raw.kind);
  if (!apiVersion || !kind) {
    problem(where, 'a document lacks apiVersion or kind');
    return undefined;
  }
  const meta = asObj(raw.metadata);
  return {
    apiVersion,
    kind,
    metadata: { name: asStr(meta.name), namespace: asStr(meta.namespace), labels: asLabels(meta.labels) },
    raw,
    file: where,
  };
}

const label = (o: K8sObject): string => `${o.file} ${o.kind}/${o.metadata.name ?? '?'}`;

// ---- kustomize layout -------------------------------------------------------------

const isKustomization = (file: string): boolean => /^kustomization\.ya?ml$/.test(basename(file));

interface Overlay {
  dir: string;
  objects: K8sObject[];
  configMaps: Set<string>;
  secrets: Set<string>;
  configFiles: string[];
}

function kustomizationIn(dir: string): string | undefined {
  return ['kustomization.yaml', 'kustomization.yml'].map((n) => join(dir, n)).find((p) => existsSync(p));
}

/** Resolves a kustomization and its bases into the objects it would emit. */
function loadOverlay(dir: string, seen = new Set<string>()): Overlay {
  const overlay: Overlay = { dir, objects: [], configMaps: new Set(), secrets: new Set(), configFiles: [] };
  const file = kustomizationIn(dir);
  const where = relative(root, file ?? dir);
  if (!file) {
    problem(where, 'no kustomization.yaml');
    return overlay;
  }
  if (seen.has(dir)) {
    problem(where, 'kustomization cycle');
    return overlay;
  }
  seen.add(dir);
  const k = asObj(parseYamlFile(file)[0]);
  if (k.kind !== 'Kustomization') problem(where, 'kind is not Kustomization');
  for (const entry of asArr(k.resources)) {
    const ref = asStr(entry);
    if (!ref) continue;
    const path = resolve(dir, ref);
    if (!existsSync(path)) {
      problem(where, `resource ${ref} does not exist`);
    } else if (statSync(path).isDirectory()) {
      const base = loadOverlay(path, seen);
      overlay.objects.push(...base.objects);
      base.configMaps.forEach((n) => overlay.configMaps.add(n));
      base.secrets.forEach((n) => overlay.secrets.add(n));
      overlay.configFiles.push(...base.configFiles);
    } else {
      for (const raw of parseYamlFile(path)) {
        const obj = toObject(raw, path);
        if (obj) overlay.objects.push(obj);
      }
    }
  }
  for (const [field, set] of [
    ['configMapGenerator', overlay.configMaps],
    ['secretGenerator', overlay.secrets],
  ] as const) {
    for (const gen of asArr(k[field])) {
      const name = asStr(get(gen, 'name'));
      if (name) set.add(name);
      for (const f of asArr(get(gen, 'files'))) {
        const spec = asStr(f) ?? '';
        const path = resolve(dir, spec.includes('=') ? spec.slice(spec.indexOf('=') + 1) : spec);
        if (!existsSync(path)) problem(where, `${field} ${name ?? '?'}: file ${spec} does not exist`);
        else if (basename(path) === CONFIG_FILE) overlay.configFiles.push(path);
      }
    }
  }
  for (const o of overlay.objects) {
    if (o.kind === 'ConfigMap' && o.metadata.name) overlay.configMaps.add(o.metadata.name);
    if (o.kind === 'Secret' && o.metadata.name) overlay.secrets.add(o.metadata.name);
  }
  return overlay;
}

// ---- cross-reference checks within an overlay ---------------------------------------

const workloadKinds = new Set(['Deployment', 'StatefulSet', 'DaemonSet', 'ReplicaSet']);

interface InterfleetConfig {
  producer: { shutdownGraceMs: number };
  worker: { shutdownGraceMs: number; metricsPort: number };
}

function checkOverlay(overlay: Overlay, config: InterfleetConfig | undefined): void {
  const name = relative(root, overlay.dir);
  const byKind = (kind: string): K8sObject[] => overlay.objects.filter((o) => o.kind === kind);
  const workloads = overlay.objects.filter((o) => workloadKinds.has(o.kind));
  const podLabels = (w: K8sObject): Record<string, string> =>
    asLabels(get(w.raw, 'spec', 'template', 'metadata', 'labels'));
  const names = (kind: string): Set<string> => new Set(byKind(kind).map((o) => o.metadata.name ?? ''));
  const serviceAccounts = names('ServiceAccount');
  const externalSecrets = new Set<string>();

  const seen = new Set<string>();
  for (const o of overlay.objects) {
    const key = `${o.kind}/${o.metadata.namespace ?? ''}/${o.metadata.name ?? ''}`;
    if (seen.has(key)) problem(`${name}`, `duplicate ${o.kind}/${o.metadata.name ?? '?'}`);
    seen.add(key);
  }

  for (const w of workloads) {
    const where = label(w);
    const spec = asObj(get(w.raw, 'spec'));
    const selector = asLabels(get(spec, 'selector', 'matchLabels'));
    if (!matches(selector, podLabels(w))) problem(where, 'spec.selector.matchLabels does not match the pod labels');
    const pod = asObj(get(spec, 'template', 'spec'));

    const sa = asStr(pod.serviceAccountName);
    if (sa && !serviceAccounts.has(sa)) problem(where, `ServiceAccount ${sa} is not defined in ${name}`);

    const volumes = new Map(asArr(pod.volumes).map((v) => [asStr(get(v, 'name')) ?? '', asObj(v)]));
    for (const [volName, vol] of volumes) {
      const cm = asStr(get(vol, 'configMap', 'name'));
      if (cm && !overlay.configMaps.has(cm)) problem(where, `volume ${volName}: ConfigMap ${cm} is not defined`);
      const secret = asStr(get(vol, 'secret', 'secretName'));
      if (secret && !overlay.secrets.has(secret)) externalSecrets.add(secret);
    }

    const containers = [...asArr(pod.initContainers), ...asArr(pod.containers)];
    const containerNames = new Set<string>();
    for (const c of containers) {
      const cName = asStr(get(c, 'name')) ?? '?';
      const cWhere = `${where} container ${cName}`;
      if (containerNames.has(cName)) problem(where, `duplicate container name ${cName}`);
      containerNames.add(cName);
      const ports = new Set(asArr(get(c, 'ports')).map((p) => asStr(get(p, 'name'))));
      for (const probe of ['startupProbe', 'readinessProbe', 'livenessProbe']) {
        const port = get(c, probe, 'httpGet', 'port') ?? get(c, probe, 'tcpSocket', 'port');
        if (typeof port === 'string' && !ports.has(port)) problem(cWhere, `${probe} uses port ${port}, not declared`);
      }
      for (const m of asArr(get(c, 'volumeMounts'))) {
        const v = asStr(get(m, 'name')) ?? '?';
        if (!volumes.has(v)) problem(cWhere, `volumeMount ${v} has no volume`);
      }
      for (const e of asArr(get(c, 'env'))) {
        const cmRef = asStr(get(e, 'valueFrom', 'configMapKeyRef', 'name'));
        if (cmRef && !overlay.configMaps.has(cmRef)) problem(cWhere, `env uses ConfigMap ${cmRef}, not defined`);
        const secretRef = asStr(get(e, 'valueFrom', 'secretKeyRef', 'name'));
        if (secretRef && !overlay.secrets.has(secretRef)) externalSecrets.add(secretRef);
      }

      // The pod must outlive the process's own shutdown grace.
      const args = [...asArr(get(c, 'command')), ...asArr(get(c, 'args'))].map(String).join(' ');
      const grace = Number(pod.terminationGracePeriodSeconds ?? 30);
      const role = /gpu-worker\//.test(args) ? 'worker' : /producer\//.test(args) ? 'producer' : undefined;
      if (config && role) {
        const needMs = config[role].shutdownGraceMs;
        if (grace * 1000 <= needMs) {
          problem(where, `terminationGracePeriodSeconds ${grace} s is not above ${role}.shutdownGraceMs ${needMs} ms`);
        }
      }
      if (config && role === 'worker') {
        const envPort = asArr(get(c, 'env')).find((e) => get(e, 'name') === 'WORKER_METRICS_PORT');
        const effective = envPort ? Number(get(envPort, 'value')) : config.worker.metricsPort;
        if (!asArr(get(c, 'ports')).some((p) => get(p, 'containerPort') === effective)) {
          problem(cWhere, `worker metrics port ${effective} is not a declared containerPort`);
        }
      }
    }
  }

  const findWorkloads = (selector: Record<string, string>): K8sObject[] =>
    workloads.filter((w) => matches(selector, podLabels(w)));

  for (const s of byKind('Service')) {
    const selector = asLabels(get(s.raw, 'spec', 'selector'));
    if (Object.keys(selector).length === 0) continue;
    const targets = findWorkloads(selector);
    if (targets.length === 0) problem(label(s), 'selector matches no workload');
    for (const p of asArr(get(s.raw, 'spec', 'ports'))) {
      const target = get(p, 'targetPort');
      if (typeof target !== 'string') continue;
      const declared = targets.some((w) =>
        asArr(get(w.raw, 'spec', 'template', 'spec', 'containers')).some((c) =>
          asArr(get(c, 'ports')).some((cp) => get(cp, 'name') === target),
        ),
      );
      if (!declared) problem(label(s), `targetPort ${target} is no named port of the selected pods`);
    }
  }
  for (const pdb of byKind('PodDisruptionBudget')) {
    if (findWorkloads(asLabels(get(pdb.raw, 'spec', 'selector', 'matchLabels'))).length === 0) {
      problem(label(pdb), 'selector matches no workload');
    }
  }
  // Availability: a voluntary disruption (node drain, upgrade) never takes a whole Deployment, and its
  // pods spread over zones (GKE zones; OKE availability domains) so that losing one leaves the rest.
  const pdbSelectors = byKind('PodDisruptionBudget').map((pdb) =>
    asLabels(get(pdb.raw, 'spec', 'selector', 'matchLabels')),
  );
  for (const w of workloads.filter((o) => o.kind === 'Deployment')) {
    const labels = podLabels(w);
    if (!pdbSelectors.some((sel) => matches(sel, labels))) problem(label(w), 'no PodDisruptionBudget covers its pods');
    const pod = asObj(get(w.raw, 'spec', 'template', 'spec'));
    const spreads = asArr(pod.topologySpreadConstraints);
    for (const c of spreads) {
      if (!matches(asLabels(get(c, 'labelSelector', 'matchLabels')), labels)) {
        problem(
          label(w),
          `topologySpreadConstraint on ${String(get(c, 'topologyKey'))} selects other pods than its own`,
        );
      }
    }
    if (!spreads.some((c) => get(c, 'topologyKey') === 'topology.kubernetes.io/zone')) {
      problem(
        label(w),
        'its pods are not spread over zones (topologySpreadConstraints on topology.kubernetes.io/zone)',
      );
    }
  }
  for (const hpa of byKind('HorizontalPodAutoscaler')) {
    const ref = asObj(get(hpa.raw, 'spec', 'scaleTargetRef'));
    const target = workloads.find((w) => w.kind === ref.kind && w.metadata.name === ref.name);
    if (!target) problem(label(hpa), `scaleTargetRef ${String(ref.kind)}/${String(ref.name)} is not defined`);
    else if (get(target.raw, 'spec', 'replicas') !== undefined) {
      problem(label(target), 'sets spec.replicas although an HPA scales it (every apply would reset the scale)');
    }
    const usesCpu = asArr(get(hpa.raw, 'spec', 'metrics')).some((m) => get(m, 'resource', 'name') === 'cpu');
    if (target && usesCpu) {
      for (const c of asArr(get(target.raw, 'spec', 'template', 'spec', 'containers'))) {
        if (get(c, 'resources', 'requests', 'cpu') === undefined) {
          problem(label(target), `container ${String(get(c, 'name'))} has no CPU request, which a CPU HPA needs`);
        }
      }
    }
  }
  for (const rb of byKind('RoleBinding')) {
    const ref = asObj(get(rb.raw, 'roleRef'));
    if (ref.kind === 'Role' && !names('Role').has(String(ref.name))) {
      problem(label(rb), `roleRef Role/${String(ref.name)} is not defined`);
    }
    for (const s of asArr(get(rb.raw, 'subjects'))) {
      if (get(s, 'kind') === 'ServiceAccount' && !serviceAccounts.has(String(get(s, 'name')))) {
        problem(label(rb), `subject ServiceAccount ${String(get(s, 'name'))} is not defined`);
      }
    }
  }
  for (const secret of byKind('Secret')) {
    const sa = asStr(get(secret.raw, 'metadata', 'annotations', 'kubernetes.io/service-account.name'));
    if (sa && !serviceAccounts.has(sa)) problem(label(secret), `ServiceAccount ${sa} is not defined`);
  }
  if (externalSecrets.size > 0) {
    notes.push(`${name} expects Secret(s) created out of band: ${[...externalSecrets].sort().join(', ')}`);
  }
}

// ---- main -------------------------------------------------------------------------

if (!existsSync(k8sDir)) {
  console.error(`validate-k8s: ${relative(root, k8sDir) || k8sDir} does not exist`);
  process.exit(1);
}

// 1. Every YAML file parses; every object in a plain manifest validates.
const files = yamlFiles(k8sDir);
let objectCount = 0;
for (const file of files) {
  if (isKustomization(file) || basename(file) === CONFIG_FILE) {
    parseYamlFile(file);
    continue;
  }
  for (const raw of parseYamlFile(file)) {
    const obj = toObject(raw, file);
    if (!obj) continue;
    objectCount++;
    validateModel(obj, label(obj));
    if (!obj.metadata.name) problem(label(obj), 'metadata.name is missing');
  }
}

// 2. The interfleet config files validate against the application's schema.
let config: InterfleetConfig | undefined;
for (const file of files.filter((f) => basename(f) === CONFIG_FILE)) {
  try {
    config = parseConfig({}, readFileSync(file, 'utf8'), relative(root, file));
  } catch (err) {
    problem(relative(root, file), (err as Error).message);
  }
}

// 3. Overlays: kustomizations that no other kustomization uses as a base.
const kustomizationDirs = files.filter(isKustomization).map((f) => dirname(f));
const bases = new Set<string>();
for (const dir of kustomizationDirs) {
  const k = asObj(parseYamlFile(kustomizationIn(dir)!)[0]);
  for (const r of asArr(k.resources)) {
    const path = resolve(dir, asStr(r) ?? '');
    if (existsSync(path) && statSync(path).isDirectory()) bases.add(path);
  }
}
const overlays = kustomizationDirs.filter((d) => !bases.has(d));
for (const dir of overlays) checkOverlay(loadOverlay(dir), config);

// 4. kubectl kustomize, when kubectl is here: the rendered output validates too.
let rendered = 'skipped (kubectl not installed)';
const hasKubectl = (() => {
  try {
    execFileSync('kubectl', ['version', '--client'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
})();
if (hasKubectl) {
  let count = 0;
  for (const dir of overlays) {
    const where = `kubectl kustomize ${relative(root, dir)}`;
    let out: string;
    try {
      out = execFileSync('kubectl', ['kustomize', dir], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
    } catch (err) {
      problem(where, String((err as { stderr?: string }).stderr ?? (err as Error).message).trim());
      continue;
    }
    for (const doc of parseAllDocuments(out)) {
      const obj = toObject(doc.toJS(), join(dir, '(rendered)'));
      if (!obj) continue;
      count++;
      validateModel(obj, `${where}: ${obj.kind}/${obj.metadata.name ?? '?'}`);
    }
  }
  rendered = `${count} rendered objects valid`;
}

// 5. docker-compose.yml: parses (with merge keys), and its references hold.
const composeFile = join(root, 'docker-compose.yml');
if (existsSync(composeFile)) {
  const compose = asObj(parseYamlFile(composeFile, true)[0]);
  const services = asObj(compose.services);
  if (Object.keys(services).length === 0) problem('docker-compose.yml', 'no services');
  for (const [svcName, svc] of Object.entries(services)) {
    const where = `docker-compose.yml services.${svcName}`;
    if (get(svc, 'image') === undefined && get(svc, 'build') === undefined) problem(where, 'neither image nor build');
    const deps = get(svc, 'depends_on');
    for (const dep of Array.isArray(deps) ? deps.map(String) : Object.keys(asObj(deps))) {
      if (!(dep in services)) problem(where, `depends_on ${dep}, which is no service`);
    }
    for (const [k, v] of Object.entries(asObj(get(svc, 'environment')))) {
      if (isObj(v) || Array.isArray(v)) problem(where, `environment.${k} is not a scalar`);
    }
    for (const vol of asArr(get(svc, 'volumes'))) {
      const src = asStr(vol)?.split(':')[0];
      if (src?.startsWith('.') && !existsSync(resolve(root, src)))
        problem(where, `volume source ${src} does not exist`);
    }
  }
}

for (const n of notes) console.log(`note: ${n}`);
if (problems.length > 0) {
  console.error(`validate-k8s: ${problems.length} problem(s):`);
  for (const p of problems) console.error(`  - ${p}`);
  process.exit(1);
}
console.log(
  `validate-k8s: ${files.length} YAML files, ${objectCount - customResources} objects valid` +
    (customResources > 0 ? ` (${customResources} custom resource(s) only parsed), ` : ', ') +
    `overlays ${overlays.map((d) => relative(root, d)).join(', ')} consistent; kustomize: ${rendered}; ` +
    `docker-compose.yml ${existsSync(composeFile) ? 'valid' : 'absent'}`,
);
