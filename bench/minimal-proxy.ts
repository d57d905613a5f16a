// The floor to beat: a pass-through proxy with nothing but undici and node:http — no auth, no
// limits, no accounting. The gateway's full pipeline should reach at least 0.8× its throughput.
import { createServer } from 'node:http';
import { Agent, request } from 'undici';

const upstream = process.env.UPSTREAM_URL ?? 'http://127.0.0.1:8000';
// Idle connections closed before vLLM's (and the simulator's) unannounced 5 s, as the gateway does.
const agent = new Agent({ keepAliveTimeout: 4000, connections: null });

const server = createServer((incoming, outgoing) => {
  const chunks: Buffer[] = [];
  incoming.on('data', (chunk: Buffer) => chunks.push(chunk));
  incoming.on('end', () => {
    request(`${upstream}${incoming.url ?? '/'}`, {
      method: incoming.method as 'POST',
      headers: { 'content-type': 'application/json' },
      body: Buffer.concat(chunks),
      dispatcher: agent,
    }).then(
      (response) => {
        outgoing.writeHead(response.statusCode, { 'content-type': String(response.headers['content-type'] ?? 'application/json') });
        response.body.pipe(outgoing);
      },
      () => {
        outgoing.writeHead(502).end();
      },
    );
  });
});

server.listen(Number(process.env.PORT ?? 0), '127.0.0.1', () => {
  const address = server.address();
  const port = typeof address === 'object' && address !== null ? address.port : 0;
  console.log(`minimal proxy listening on http://127.0.0.1:${port}`);
});
process.on('SIGTERM', () => server.close(() => process.exit(0)));
