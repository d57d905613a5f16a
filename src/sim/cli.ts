// `npm run sim`: runs the vLLM simulator as its own process, with flags named like `vllm serve`'s
// where they match, and stops cleanly on SIGINT/SIGTERM.
import { parseArgs } from 'node:util';
import { startSimulator } from './index.js';
import type { SimulatedModel } from './options.js';

const USAGE = `Usage: npm run sim -- [options]

  --port N              port to listen on (default 8000; 0 = a free port)
  --host HOST           address to bind (default 127.0.0.1)
  --model ID[:LEN]      a served base model and its max_model_len (repeatable; default sim-llama-3-8b:8192)
  --lora ID[:PARENT]    a LoRA adapter served on PARENT (default: the first model; repeatable)
  --api-key KEY         require "Authorization: Bearer KEY" under /v1 (also env VLLM_API_KEY)
  --ttft-ms N           time to first token in ms (default 0)
  --itl-ms N            inter-token delay in ms (default 0)
  --jitter R            vary each delay by ±R (0.2 = ±20 %, default 0)
  --max-running N       concurrent requests before queueing (default 256)
  --max-queued N        waiting requests before answering 503 (default unbounded)
  --help                show this help`;

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      port: { type: 'string', default: '8000' },
      host: { type: 'string', default: '127.0.0.1' },
      model: { type: 'string', multiple: true },
      lora: { type: 'string', multiple: true },
      'api-key': { type: 'string' },
      'ttft-ms': { type: 'string', default: '0' },
      'itl-ms': { type: 'string', default: '0' },
      jitter: { type: 'string', default: '0' },
      'max-running': { type: 'string', default: '256' },
      'max-queued': { type: 'string' },
      help: { type: 'boolean', default: false },
    },
  });
  if (values.help) {
    console.log(USAGE);
    return;
  }
  const models = parseModels(values.model ?? [], values.lora ?? []);
  const simulator = await startSimulator({
    port: parseNumber('--port', values.port),
    host: values.host,
    models,
    apiKey: values['api-key'] ?? process.env.VLLM_API_KEY ?? null,
    timeToFirstTokenMs: parseNumber('--ttft-ms', values['ttft-ms']),
    interTokenMs: parseNumber('--itl-ms', values['itl-ms']),
    jitterRatio: parseNumber('--jitter', values.jitter),
    maxRunning: parseNumber('--max-running', values['max-running']),
    maxQueued: values['max-queued'] === undefined ? null : parseNumber('--max-queued', values['max-queued']),
  });
  console.log(`vLLM simulator listening on ${simulator.url}`);
  console.log(`  models: ${models.map((model) => (model.parent ? `${model.id} (LoRA on ${model.parent})` : `${model.id} (max_model_len ${model.maxModelLen})`)).join(', ')}`);

  let stopping = false;
  const stop = (signal: NodeJS.Signals): void => {
    if (stopping) process.exit(1);
    stopping = true;
    console.log(`\n${signal}: stopping the simulator`);
    void simulator.close().then(() => process.exit(0));
  };
  process.on('SIGINT', stop);
  process.on('SIGTERM', stop);
}

function parseModels(modelFlags: readonly string[], loraFlags: readonly string[]): SimulatedModel[] {
  const models: SimulatedModel[] = modelFlags.map((flag) => {
    const separator = flag.lastIndexOf(':');
    const length = separator === -1 ? '' : flag.slice(separator + 1);
    if (separator === -1 || !/^\d+$/.test(length)) return { id: flag, maxModelLen: 8192 };
    return { id: flag.slice(0, separator), maxModelLen: Number(length) };
  });
  if (models.length === 0) models.push({ id: 'sim-llama-3-8b', maxModelLen: 8192 });
  const firstId = models[0]?.id ?? 'sim-llama-3-8b';
  for (const flag of loraFlags) {
    const separator = flag.indexOf(':');
    const id = separator === -1 ? flag : flag.slice(0, separator);
    const parent = separator === -1 ? firstId : flag.slice(separator + 1);
    models.push({ id, maxModelLen: null, parent });
  }
  return models;
}

function parseNumber(flag: string, text: string): number {
  const value = Number(text);
  if (text.trim() === '' || !Number.isFinite(value) || value < 0) {
    console.error(`${flag} expects a non-negative number, got "${text}"\n\n${USAGE}`);
    process.exit(2);
  }
  return value;
}

main().catch((error: unknown) => {
  console.error('The vLLM simulator could not start:', error instanceof Error ? error.message : error);
  process.exit(1);
});
