/**
 * Import hygiene, on resolved paths (no dependencies beyond TypeScript):
 *
 * 1. No import cycles between modules. Only imports that exist at run time
 *    count: `import type` / `export type` and dynamic `import()` do not create
 *    an evaluation-order cycle, so they are left out.
 * 2. The dependency rules of the design: common/ imports no role; producer/,
 *    scheduler/ and gpu-worker/ never import one another; nothing but tests
 *    imports launcher/; no production code imports test/ or scripts/.
 *    Type-only and dynamic imports count here.
 *
 * Usage: tsx scripts/check-imports.ts   (exit 1 on any problem)
 */
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve, sep } from 'node:path';
import ts from 'typescript';

const root = resolve(import.meta.dirname, '..');
const sourceDirs = ['common', 'producer', 'scheduler', 'gpu-worker', 'launcher', 'test', 'scripts'];
const roles = new Set(['producer', 'scheduler', 'gpu-worker']);

interface Edge {
  to: string;
  runtime: boolean;
  line: number;
}

function tsFiles(dir: string): string[] {
  if (!existsSync(dir)) return [];
  return readdirSync(dir)
    .sort()
    .flatMap((name) => {
      if (name === 'node_modules' || name.startsWith('.')) return [];
      const path = join(dir, name);
      if (statSync(path).isDirectory()) return tsFiles(path);
      return /\.(ts|mts|cts)$/.test(name) && !name.endsWith('.d.ts') ? [path] : [];
    });
}

const files = [
  ...sourceDirs.flatMap((d) => tsFiles(join(root, d))),
  ...readdirSync(root)
    .filter((n) => /\.ts$/.test(n) && !n.endsWith('.d.ts'))
    .map((n) => join(root, n)),
];
const fileSet = new Set(files);

function resolveSpecifier(from: string, spec: string): string | undefined {
  if (!spec.startsWith('.')) return undefined; // packages are not ours
  const base = resolve(dirname(from), spec);
  const candidates = [base, base.replace(/\.js$/, '.ts'), `${base}.ts`, join(base, 'index.ts')];
  return candidates.find((c) => fileSet.has(c));
}

/**
 * Only `import type` is erased. Under verbatimModuleSyntax `import { type A } from`
 * stays as `import {} from`, which still evaluates the module (a run-time edge).
 */
function isTypeOnlyImport(node: ts.ImportDeclaration): boolean {
  return node.importClause?.isTypeOnly ?? false;
}

function edgesOf(file: string): Edge[] {
  const text = readFileSync(file, 'utf8');
  const source = ts.createSourceFile(file, text, ts.ScriptTarget.Latest, true);
  const edges: Edge[] = [];
  const add = (spec: ts.Expression | undefined, runtime: boolean, node: ts.Node): void => {
    if (!spec || !ts.isStringLiteralLike(spec)) return;
    const to = resolveSpecifier(file, spec.text);
    const line = source.getLineAndCharacterOfPosition(node.getStart(source)).line + 1;
    if (to) edges.push({ to, runtime, line });
  };
  const visit = (node: ts.Node): void => {
    if (ts.isImportDeclaration(node)) {
      add(node.moduleSpecifier, !isTypeOnlyImport(node), node);
    } else if (ts.isExportDeclaration(node)) {
      add(node.moduleSpecifier, !node.isTypeOnly, node);
    } else if (ts.isImportEqualsDeclaration(node) && ts.isExternalModuleReference(node.moduleReference)) {
      add(node.moduleReference.expression, !node.isTypeOnly, node);
    } else if (ts.isCallExpression(node) && node.expression.kind === ts.SyntaxKind.ImportKeyword) {
      add(node.arguments[0], false, node); // dynamic import: no evaluation-order cycle
    } else if (ts.isImportTypeNode(node)) {
      const arg = node.argument;
      if (ts.isLiteralTypeNode(arg)) add(arg.literal, false, node);
    }
    ts.forEachChild(node, visit);
  };
  visit(source);
  return edges;
}

const graph = new Map<string, Edge[]>(files.map((f) => [f, edgesOf(f)]));
const rel = (f: string): string => relative(root, f).split(sep).join('/');
const topDir = (f: string): string => rel(f).split('/')[0] ?? '';
const problems: string[] = [];

// ---- 2. dependency rules -------------------------------------------------------------
for (const [from, edges] of graph) {
  const src = topDir(from);
  for (const { to, line } of edges) {
    const dst = topDir(to);
    if (src === dst) continue;
    const where = `${rel(from)}:${line} imports ${rel(to)}`;
    if (src === 'common' && dst !== 'common') problems.push(`${where}: common/ imports no role`);
    else if (roles.has(src) && (roles.has(dst) || dst === 'launcher'))
      problems.push(`${where}: roles never import one another (share code through common/)`);
    else if (dst === 'launcher' && src !== 'test') problems.push(`${where}: nothing but tests imports the launcher`);
    else if ((dst === 'test' || dst === 'scripts') && src !== 'test' && src !== 'scripts')
      problems.push(`${where}: production code imports ${dst}/`);
  }
}

// ---- 1. cycles (Tarjan's strongly connected components over run-time edges) -------------
let index = 0;
const indices = new Map<string, number>();
const lowlink = new Map<string, number>();
const stack: string[] = [];
const onStack = new Set<string>();
const components: string[][] = [];

function strongConnect(v: string): void {
  indices.set(v, index);
  lowlink.set(v, index);
  index++;
  stack.push(v);
  onStack.add(v);
  for (const { to, runtime } of graph.get(v) ?? []) {
    if (!runtime) continue;
    if (!indices.has(to)) {
      strongConnect(to);
      lowlink.set(v, Math.min(lowlink.get(v)!, lowlink.get(to)!));
    } else if (onStack.has(to)) {
      lowlink.set(v, Math.min(lowlink.get(v)!, indices.get(to)!));
    }
  }
  if (lowlink.get(v) === indices.get(v)) {
    const component: string[] = [];
    let w: string;
    do {
      w = stack.pop()!;
      onStack.delete(w);
      component.push(w);
    } while (w !== v);
    const selfLoop = (graph.get(v) ?? []).some((e) => e.runtime && e.to === v);
    if (component.length > 1 || selfLoop) components.push(component);
  }
}
for (const f of files) if (!indices.has(f)) strongConnect(f);

/** One concrete cycle inside a component, for a readable message. */
function cycleIn(component: string[]): string[] {
  const members = new Set(component);
  const start = component.slice().sort()[0]!;
  const prev = new Map<string, string>();
  const queue = [start];
  while (queue.length > 0) {
    const v = queue.shift()!;
    for (const { to, runtime } of graph.get(v) ?? []) {
      if (!runtime || !members.has(to)) continue;
      if (to === start) {
        const path = [v];
        while (path[0] !== start) path.unshift(prev.get(path[0]!)!);
        return [...path, start];
      }
      if (!prev.has(to)) {
        prev.set(to, v);
        queue.push(to);
      }
    }
  }
  return component;
}
for (const component of components) {
  problems.push(`import cycle (${component.length} modules): ${cycleIn(component).map(rel).join(' -> ')}`);
}

if (problems.length > 0) {
  console.error(`check-imports: ${problems.length} problem(s):`);
  for (const p of problems) console.error(`  - ${p}`);
  process.exit(1);
}
const edgeCount = [...graph.values()].reduce((n, e) => n + e.length, 0);
console.log(`check-imports: ${files.length} modules, ${edgeCount} local imports, no cycles, dependency rules hold`);
