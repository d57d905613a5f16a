// Random secrets and their stored form: refresh tokens and API keys are random bytes shown to the
// client once and kept only as a SHA-256 hash (they are long and random, so no slow hash is needed).
import { createHash, randomBytes } from 'node:crypto';

export function randomSecret(bytes = 32): string {
  return randomBytes(bytes).toString('base64url');
}

export function sha256Hex(value: string): string {
  return createHash('sha256').update(value).digest('hex');
}

export const apiKeyPrefix = 'vcg_';
/** Characters of a key shown in lists so a person can tell keys apart: `vcg_` plus eight. */
export const apiKeyVisibleLength = apiKeyPrefix.length + 8;
const apiKeyPattern = /^vcg_[A-Za-z0-9_-]{43}$/;

export function createApiKeySecret(): { key: string; prefix: string; hash: string } {
  const key = `${apiKeyPrefix}${randomSecret(32)}`;
  return { key, prefix: key.slice(0, apiKeyVisibleLength), hash: sha256Hex(key) };
}

export function looksLikeApiKey(value: string): boolean {
  return value.startsWith(apiKeyPrefix);
}

export function isWellFormedApiKey(value: string): boolean {
  return apiKeyPattern.test(value);
}
