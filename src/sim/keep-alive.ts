// Keep-alive as uvicorn does it, and so vLLM: a connection left idle for the keep-alive timeout
// after its last answer is closed, and the timeout is never announced. Node's own keepAliveTimeout
// would announce it in a Keep-Alive header (which a client then obeys) and wait a second longer.
import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import type { Socket } from 'node:net';

export function closeIdleConnections(server: Server, keepAliveMs: number): void {
  server.keepAliveTimeout = 0;
  const idleTimers = new WeakMap<Socket, NodeJS.Timeout>();
  const stopIdleTimer = (socket: Socket) => clearTimeout(idleTimers.get(socket));
  server.on('connection', (socket: Socket) => socket.once('close', () => stopIdleTimer(socket)));
  server.on('request', (request: IncomingMessage, response: ServerResponse) => {
    const socket = request.socket;
    stopIdleTimer(socket);
    response.once('finish', () => {
      if (socket.destroyed) return;
      stopIdleTimer(socket);
      const timer = setTimeout(() => socket.end(), keepAliveMs);
      timer.unref();
      idleTimers.set(socket, timer);
    });
  });
}
