// The vLLM simulator's public API: an HTTP server that behaves like `vllm serve` (same bytes, status
// codes, metrics and disconnect handling), for tests, local development and benchmarks.
//
// const simulator = await startSimulator({ interTokenMs: 20 });   // listens on 127.0.0.1:<free port>
// simulator.url; simulator.stats(); simulator.received; simulator.setFault({ status: 503 }); await simulator.close();
//
// Options (all optional): port (0), host ('127.0.0.1'), models ([{ id: 'sim-llama-3-8b', maxModelLen: 8192 }];
// a LoRA adapter is { id, maxModelLen: null, parent: '<base id>' }), apiKey (null = open), timeToFirstTokenMs (0),
// interTokenMs (0), jitterRatio (0), maxRunning (256), maxQueued (null = unbounded), created (fixed `created`),
// version ('0.11.0'), errorFormat ('envelope' | 'flat'), fault (server-wide SimulatorFault), healthy (true),
// healthDelayMs (0), receivedLimit (200).
//
// Simulator: url, port, close(), stats() → { running, waiting, finished: { stop, length, abort, error }, received },
// waitForStats(predicate, timeoutMs?), received (last requests: method, path, headers, body, rawBody, receivedAt),
// clearReceived(), setFault(fault | null), setHealthy(boolean),
// update({ timeToFirstTokenMs, interTokenMs, jitterRatio, healthDelayMs, maxRunning, maxQueued }).
//
// Faults (SimulatorFault, snake_case because it also travels as JSON): server-wide via setFault / options.fault,
// per request via header `x-sim-fault: {"status":503}` or a top-level body field `"sim_fault": {...}`; merged in
// that order, later keys win. Kinds: refuse, delay_ms, status, cut_after_chunks, error_after_chunks,
// malformed_after_chunks (see faults.ts; a malformed event is followed by the rest of the stream and [DONE]).
// Requests a fault ends count as finished_reason="error". /health, /metrics and /version ignore faults.
//
// Scheduling: one request (whatever its `n`) holds one of `maxRunning` slots; the rest wait FIFO. A client
// that disconnects (queued, before the first token or mid-stream, streaming or not) stops its request at once and
// counts as finished_reason="abort". `continuous_usage_stats` only takes effect with `include_usage`, as in vLLM.
//
// Text and tokens: generated tokens are words from a built-in vocabulary (with multibyte words), deterministic
// in (seed, prompt, choice index); the natural end is an end-of-sequence token after 8–40 tokens, which counts
// in completion_tokens and adds empty text. The tokenizer groups UTF-8 bytes three at a time, so
// prompt_tokens = ceil(bytes / 3) of the chat-templated prompt, exactly what POST /tokenize returns.
export { startSimulator, type Simulator, type SimulatorStats } from './simulator.js';
export type { SimulatedModel, SimulatorOptions, ErrorFormat, SimulatorUpdate } from './options.js';
export type { SimulatorFault } from './faults.js';
export type { ReceivedRequest } from './received-log.js';
export type { FinishedReason } from './metrics.js';
export { FAULT_HEADER, FAULT_BODY_FIELD } from './faults.js';
export { MALFORMED_EVENT } from './stream-sink.js';
export { MALFORMED_BODY } from './buffered-sink.js';
export { countTokens, encodeText, decodeTokens } from './tokenizer.js';
export { renderChatPrompt } from './chat-template.js';
