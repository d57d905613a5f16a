// The gateway process: configuration → app → listen → graceful shutdown on SIGTERM/SIGINT.
import { ConfigError, parseConfig, readEnvironment } from './config.js';
import { resolveJwtSecret } from './platform/jwt-secret.js';
import { startServer } from './server.js';

async function main(): Promise<void> {
  let config;
  try {
    config = resolveJwtSecret(parseConfig(readEnvironment({ processEnvironment: process.env })).config);
  } catch (error) {
    if (error instanceof ConfigError) {
      process.stderr.write(`${error.message}\n`);
      process.exit(1);
    }
    throw error;
  }

  const server = await startServer({ config });
  server.app.log.info({ url: server.url, environment: config.nodeEnv }, 'gateway listening');

  let signals = 0;
  const onSignal = (signal: NodeJS.Signals) => {
    signals += 1;
    if (signals > 1) {
      server.app.log.warn({ signal }, 'second signal: exiting now');
      process.exit(1);
    }
    void server.shutdown(signal).then((clean) => process.exit(clean ? 0 : 1));
  };
  process.on('SIGTERM', onSignal);
  process.on('SIGINT', onSignal);
  // SIGHUP re-reads UPSTREAMS_FILE (the file is also watched); other settings need a restart.
  process.on('SIGHUP', () => server.app.gateway.reloadUpstreams());
}

main().catch((error: unknown) => {
  process.stderr.write(`The gateway could not start: ${error instanceof Error ? error.message : String(error)}\n`);
  process.exit(1);
});
