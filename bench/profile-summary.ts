// `npx tsx bench/profile-summary.ts FILE.cpuprofile [TOP]`: where a V8 CPU profile spent its time —
// idle, garbage collection, and the busiest functions and packages by self time.
import { readFileSync } from 'node:fs';

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  children?: number[];
}
interface Profile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
}

export function summarizeProfile(file: string, top: number): void {
  const profile = JSON.parse(readFileSync(file, 'utf8')) as Profile;
  const byId = new Map(profile.nodes.map((node) => [node.id, node]));
  const selfMicroseconds = new Map<number, number>();
  profile.samples.forEach((id, index) => selfMicroseconds.set(id, (selfMicroseconds.get(id) ?? 0) + (profile.timeDeltas[index] ?? 0)));
  const total = [...selfMicroseconds.values()].reduce((sum, value) => sum + value, 0);

  /** Where a function lives: a package name, our own file, or Node's internals. */
  function owner(url: string): string {
    if (url === '') return '(native)';
    const packageMatch = /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(url);
    if (packageMatch?.[1] !== undefined) return packageMatch[1];
    if (url.startsWith('node:')) return url.split('/')[0] ?? url;
    const ours = /\/(dist\/src\/.+)$/.exec(url);
    return ours?.[1] ?? url;
  }

  const parents = new Map<number, number>();
  for (const node of profile.nodes) for (const child of node.children ?? []) parents.set(child, node.id);
  /** A native function's time (a socket write, a hash) belongs to the JavaScript that called it. */
  function callerWithSource(id: number): ProfileNode | undefined {
    let current = byId.get(id);
    while (current !== undefined && current.callFrame.url === '') {
      const parent = parents.get(current.id);
      if (parent === undefined || byId.get(parent)?.callFrame.functionName === '(root)') return current;
      current = byId.get(parent);
    }
    return current;
  }

  const functions = new Map<string, number>();
  const owners = new Map<string, number>();
  for (const [id, micros] of selfMicroseconds) {
    const node = byId.get(id);
    if (node === undefined) continue;
    const { functionName, url, lineNumber } = node.callFrame;
    const name = `${functionName || '(anonymous)'} ${owner(url)}${url === '' ? '' : `:${lineNumber + 1}`}`;
    functions.set(name, (functions.get(name) ?? 0) + micros);
    const caller = callerWithSource(id);
    const where = caller === undefined || caller.callFrame.url === '' ? (caller?.callFrame.functionName ?? '(native)') : owner(caller.callFrame.url);
    owners.set(where, (owners.get(where) ?? 0) + micros);
  }
  const percent = (micros: number) => `${((micros / total) * 100).toFixed(1).padStart(5)} %`;
  const show = (title: string, entries: Map<string, number>) => {
    console.log(`\n${title}`);
    for (const [name, micros] of [...entries].sort((a, b) => b[1] - a[1]).slice(0, top)) console.log(`${percent(micros)}  ${name}`);
  };
  console.log(`${file}: ${(total / 1e6).toFixed(2)} s sampled`);
  show('By self time, functions:', functions);
  show('By package or file, counting the native calls each makes:', owners);
}

if (process.argv[1]?.endsWith('profile-summary.ts') === true) {
  const [file, topArgument] = process.argv.slice(2);
  if (file === undefined) throw new Error('usage: profile-summary FILE.cpuprofile [TOP]');
  summarizeProfile(file, Number(topArgument ?? 30));
}
