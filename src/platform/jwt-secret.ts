// Resolves the JWT signing secret. Production must configure one (config.ts enforces it); in
// development a random secret is generated once and kept in the data folder, so restarts keep sessions.
import { randomBytes } from 'node:crypto';
import { mkdirSync, readFileSync, writeFileSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import type { Config } from '../config.js';

const secretFileName = 'jwt-secret';

export function resolveJwtSecret(config: Config): Config {
  if (config.jwt.secret !== null) return config;
  return { ...config, jwt: { ...config.jwt, secret: loadOrCreateSecret(config.dataDirectory) } };
}

function loadOrCreateSecret(dataDirectory: string): string {
  const path = join(dataDirectory, secretFileName);
  if (existsSync(path)) {
    const stored = readFileSync(path, 'utf8').trim();
    if (stored.length >= 43) return stored;
  }
  mkdirSync(dataDirectory, { recursive: true, mode: 0o700 });
  const secret = randomBytes(48).toString('base64url');
  writeFileSync(path, `${secret}\n`, { mode: 0o600 });
  return secret;
}
