// Runs a built app on a port and stops it gracefully: stop accepting, let in-flight requests
// finish up to a deadline, then cut what remains and close the pools.
import type { Logger } from 'pino';
import type { Config } from './config.js';
import { buildApp, type App } from './app.js';
import { createLogger } from './platform/logging.js';

export interface RunningServer {
  app: App;
  /** The URL the gateway listens on, e.g. http://127.0.0.1:8080. */
  url: string;
  /** Resolves true when every request finished before the deadline, false when some were cut. */
  shutdown(reason: string): Promise<boolean>;
}

export async function startServer(options: { config: Config; logger?: Logger }): Promise<RunningServer> {
  const { config } = options;
  const logger = options.logger ?? createLogger({ config });
  const app = await buildApp(config, { logger });
  await app.listen({ port: config.port, host: config.host });
  const address = app.server.address();
  const port = typeof address === 'object' && address !== null ? address.port : config.port;
  const shownHost = config.host === '0.0.0.0' || config.host === '::' ? '127.0.0.1' : config.host;

  let shutdownPromise: Promise<boolean> | null = null;
  function shutdown(reason: string): Promise<boolean> {
    shutdownPromise ??= (async () => {
      logger.info({ reason, deadline_ms: config.shutdownTimeoutMs }, 'shutting down: no new connections, finishing in-flight requests');
      let timer: NodeJS.Timeout | undefined;
      const deadline = new Promise<false>((resolve) => {
        timer = setTimeout(() => {
          logger.warn('shutdown deadline reached: closing the remaining connections');
          app.server.closeAllConnections();
          resolve(false);
        }, config.shutdownTimeoutMs);
      });
      const closing = app.close();
      const finished = await Promise.race([closing.then(() => true as const), deadline]);
      clearTimeout(timer);
      // Past the deadline, handlers whose sockets were cut may still be running; give the pools
      // a moment to close, but do not wait for those handlers.
      if (!finished) await Promise.race([closing, new Promise((resolve) => setTimeout(resolve, 500).unref())]);
      logger.info({ clean: finished }, 'stopped');
      return finished;
    })();
    return shutdownPromise;
  }

  return { app, url: `http://${shownHost}:${port}`, shutdown };
}
