// `npx tsx bench/redis-cost.ts [--quotas] [--requests N] [--rounds N] [--callgrind PID OUTFILE] [MODULE…]`
// What the limits script costs Redis per request: the figure that bounds how many requests a
// cluster of gateways can admit through one Redis. A busy caller's request costs Redis one
// settlement and one prepaid charge for the caller's next request (prepaid-admissions.ts), sent in
// the same turn and batched as the gateway batches them (redis-script-batch.ts), with 11 requests
// in flight. MODULE is a built admission-script.js (another checkout's, to compare a change); with
// none, this checkout's script. Variants take turns, the order reversed every other round.
//
// Measured one of two ways:
// - by default, Redis's own clock: the time INFO commandstats gives EVALSHA, per request (it swings
//   with the VM's state like every clock here);
// - with --callgrind PID OUTFILE, the instructions Redis ran, for a redis-server started as
//   `valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file=OUTFILE redis-server --port 6390 --save ''`
//   with BENCH_REDIS_URL=redis://127.0.0.1:6390/0: the same count run after run, whatever else runs.
import { execFileSync } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import { basename, dirname, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { Redis } from 'ioredis';
import { quotaBucket, type AdmissionRequest, type Settlement } from '../src/platform/admission.js';
import { createScriptBatcher } from '../src/platform/redis-script-batch.js';
import { evalshaMicroseconds } from './redis-meter.js';

interface ScriptModule {
  operationsScript: string;
  admissionScriptArguments(request: AdmissionRequest, prefix: string): { keys: string[]; args: Array<string | number> };
  settlementScriptArguments(settlement: Settlement, prefix: string): { keys: string[]; args: Array<string | number> } | null;
}

interface Options {
  quotas: boolean;
  requests: number;
  rounds: number;
  callgrind: { pid: string; outFile: string } | null;
  modules: string[];
}

const inFlight = 11;
const callers = 8;

function parseArguments(argv: string[]): Options {
  const options: Options = { quotas: false, requests: 5000, rounds: 4, callgrind: null, modules: [] };
  for (let index = 0; index < argv.length; index += 1) {
    const argument = argv[index] ?? '';
    if (argument === '--quotas') options.quotas = true;
    else if (argument === '--requests') options.requests = Number(argv[(index += 1)]);
    else if (argument === '--rounds') options.rounds = Number(argv[(index += 1)]);
    else if (argument === '--callgrind') options.callgrind = { pid: argv[(index += 1)] ?? '', outFile: argv[(index += 1)] ?? '' };
    else options.modules.push(argument);
  }
  if (!Number.isInteger(options.requests) || options.requests < 1 || !Number.isInteger(options.rounds) || options.rounds < 1) {
    throw new Error('--requests and --rounds take positive whole numbers');
  }
  return options;
}

/** Instructions counted by callgrind while `work` runs: the counter is zeroed, switched on, off, and dumped. */
async function countInstructions(callgrind: { pid: string; outFile: string }, work: () => Promise<void>): Promise<number> {
  const control = (flag: string) => execFileSync('callgrind_control', [flag, callgrind.pid], { stdio: 'pipe' });
  const directory = dirname(callgrind.outFile);
  const dumps = () => readdirSync(directory).filter((name) => name.startsWith(`${basename(callgrind.outFile)}.`));
  const before = new Set(dumps());
  control('--zero');
  control('--instr=on');
  await work();
  control('--instr=off');
  control('--dump');
  // callgrind writes the dump when Redis next runs: wait for a new file with its totals.
  for (let waited = 0; waited < 300; waited += 1) {
    for (const name of dumps().filter((each) => !before.has(each))) {
      const totals = /^totals: (\d+)/m.exec(readFileSync(resolve(directory, name), 'utf8'));
      if (totals?.[1] !== undefined) return Number(totals[1]);
    }
    await new Promise((done) => setTimeout(done, 100));
  }
  throw new Error('callgrind wrote no dump: is the PID that of redis-server under valgrind --tool=callgrind?');
}

async function main(): Promise<void> {
  const options = parseArguments(process.argv.slice(2));
  const client = new Redis(process.env.BENCH_REDIS_URL ?? 'redis://127.0.0.1:6379/0');
  const prefix = `bench-redis-cost-${randomUUID().slice(0, 8)}:`;
  const variants: Array<{ name: string; module: ScriptModule }> = [{ name: 'this checkout', module: (await import('../src/platform/admission-script.js')) }];
  for (const path of options.modules) variants.push({ name: path, module: (await import(pathToFileURL(resolve(path)).href)) as ScriptModule });

  // Callers with a credential state as the gateway stores it: the admission's precondition compares it.
  const users = Array.from({ length: callers }, () => randomUUID());
  const keyState = JSON.stringify({ id: randomUUID(), userId: users[0], expiresAt: null, revoked: false });
  const userState = JSON.stringify({
    version: 0,
    status: 'active',
    role: 'user',
    limits: { rate_limit_requests: null, rate_limit_window_seconds: null, token_quota_per_minute: null, token_quota_per_day: null, max_concurrent_streams: null },
  });
  for (const user of users) {
    await client.set(`${prefix}auth:key:${user}`, keyState, 'PX', 3_600_000);
    await client.set(`${prefix}auth:user:v2:${user}`, userState, 'PX', 3_600_000);
  }
  const admission = (user: string): AdmissionRequest => ({
    now: Date.now(),
    rates: [
      { key: `limit:user:${user}`, limit: 100_000_000, windowMs: 3_600_000 },
      { key: 'limit:ip:127.0.0.1', limit: 100_000_000, windowMs: 3_600_000 },
    ],
    quotas: options.quotas
      ? [
          { key: `quota:minute:${user}`, limit: 100_000_000, windowMs: 60_000, reserve: 16 },
          { key: `quota:day:${user}`, limit: 1_000_000_000, windowMs: 86_400_000, reserve: 16 },
        ]
      : [],
    concurrency: { key: `concurrency:${user}`, limit: 10_000, leaseId: randomUUID(), leaseTtlMs: 60_000 },
    precondition: { keys: [`auth:key:${user}`, `auth:user:v2:${user}`], values: [keyState, userState] },
    prepay: { leaseId: randomUUID(), alone: true },
  });

  const perRequest = new Map<string, number[]>();
  for (let round = 0; round < options.rounds + 1; round += 1) {
    const order = round % 2 === 0 ? variants : [...variants].reverse();
    for (const { name, module } of order) {
      const sha = String(await client.script('LOAD', module.operationsScript));
      const batcher = createScriptBatcher((keys, args) => client.evalsha(sha, keys.length, ...keys, ...args));
      const held = new Map<string, string[]>();
      /** One request's Redis work: the next prepaid charge, and the settlement that frees an earlier one's lease. */
      const request = async (user: string) => {
        const asked = admission(user);
        const leases = held.get(user) ?? [];
        held.set(user, leases);
        leases.push(asked.prepay?.leaseId ?? '');
        const settlement: Settlement = {
          // The earlier request used 12 of the 16 tokens it reserved.
          quotas: asked.quotas.map((quota) => ({ bucketKey: quotaBucket(quota, asked.now).bucketKey, delta: -4, ttlMs: 120_000 })),
          release: { key: `concurrency:${user}`, leaseId: leases.length > 2 ? (leases.shift() ?? '') : randomUUID() },
          onlyIfLeased: false,
        };
        const settle = module.settlementScriptArguments(settlement, prefix);
        await Promise.all([
          batcher.run({ kind: 'admit', ...module.admissionScriptArguments(asked, prefix) }),
          settle === null ? null : batcher.run({ kind: 'settle', ...settle }),
        ]);
      };
      let started = 0;
      const work = async () => {
        await Promise.all(
          Array.from({ length: inFlight }, async (_, slot) => {
            while (started < options.requests) {
              started += 1;
              await request(users[slot % callers] ?? '');
            }
          }),
        );
      };
      let cost: number;
      if (options.callgrind !== null) cost = (await countInstructions(options.callgrind, work)) / options.requests / 1000;
      else {
        const before = await evalshaMicroseconds(client);
        await work();
        cost = ((await evalshaMicroseconds(client)) - before) / options.requests;
      }
      // The first round warms up (script loaded, keys made): not counted.
      if (round > 0) perRequest.set(name, [...(perRequest.get(name) ?? []), cost]);
    }
  }

  const unit = options.callgrind === null ? 'µs of Redis time' : 'thousand instructions of Redis';
  console.log(`${unit} per request (${options.quotas ? 'two rates, two token quotas' : 'two rates, no token quota'}, concurrency, precondition; ${options.requests} requests per round):`);
  for (const [name, values] of perRequest) {
    const median = [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)] ?? Number.NaN;
    console.log(`  ${name}: median ${median.toFixed(1)}   rounds: ${values.map((value) => value.toFixed(1)).join(' ')}`);
  }
  // The keys this run made (they would expire by themselves within the hour).
  for (let cursor = '0'; ; ) {
    const [next, keys] = await client.scan(cursor, 'MATCH', `${prefix}*`, 'COUNT', 1000);
    if (keys.length > 0) await client.del(...keys);
    cursor = next;
    if (cursor === '0') break;
  }
  await client.quit();
}

main().catch((error: unknown) => {
  console.error(error);
  process.exit(1);
});
