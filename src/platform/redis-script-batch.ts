// Gathers the admissions and settlements an instance issues in one turn of its event loop into one
// call of the operations script. Under load each request's admission and settlement start from a
// socket event of their own, so auto-pipelining alone sends one script call per operation; one
// call for all of them spares Redis (which shares the machine's cores) a script run per operation
// and the gateway a command per operation. Redis runs them in the order they were issued, each
// exactly as its own call would have run, and an operation that fails fails alone. They leave at
// the end of the turn, so a plain command issued later in the same turn (auto-pipelined at the
// next tick) may reach Redis first; nothing depends on order across the two.

export interface ScriptOperation {
  kind: 'admit' | 'settle';
  keys: string[];
  args: Array<string | number>;
}

interface Queued {
  operation: ScriptOperation;
  resolve: (reply: unknown) => void;
  reject: (error: unknown) => void;
}

/** Bounds one script run (and so how long Redis is busy with it) under any burst. */
const maxOperationsPerCall = 64;

export function createScriptBatcher(runScript: (keys: string[], args: Array<string | number>) => Promise<unknown>) {
  let queue: Queued[] = [];

  function send(entries: Queued[]): void {
    const keys: string[] = [];
    const args: Array<string | number> = [entries.length];
    for (const { operation } of entries) {
      args.push(operation.kind, operation.keys.length, operation.args.length);
      for (const value of operation.args) args.push(value);
      for (const key of operation.keys) keys.push(key);
    }
    // This runs from setImmediate: a synchronous throw must fail the operations, not the process.
    let call: Promise<unknown>;
    try {
      call = runScript(keys, args);
    } catch (error) {
      call = Promise.reject(error instanceof Error ? error : new Error(String(error)));
    }
    call.then(
      (reply) => {
        if (!Array.isArray(reply) || reply.length !== entries.length) {
          const error = new Error(`the operations script answered ${Array.isArray(reply) ? reply.length : typeof reply} replies for ${entries.length} operations`);
          for (const entry of entries) entry.reject(error);
          return;
        }
        entries.forEach((entry, index) => {
          const answer: unknown = reply[index];
          if (Array.isArray(answer) && answer[0] === 'error') entry.reject(new Error(`Redis refused the ${entry.operation.kind}: ${String(answer[1])}`));
          else entry.resolve(answer);
        });
      },
      (error: unknown) => {
        for (const entry of entries) entry.reject(error);
      },
    );
  }

  function flush(): void {
    const taken = queue;
    queue = [];
    for (let start = 0; start < taken.length; start += maxOperationsPerCall) send(taken.slice(start, start + maxOperationsPerCall));
  }

  return {
    /** Resolves with this operation's own reply once the call carrying it is answered. */
    run(operation: ScriptOperation): Promise<unknown> {
      return new Promise((resolve, reject) => {
        queue.push({ operation, resolve, reject });
        // After the I/O callbacks of this turn: whatever they issue too goes in the same call.
        if (queue.length === 1) setImmediate(flush);
      });
    },
  };
}
