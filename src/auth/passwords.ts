// Password hashing with argon2id at OWASP's parameters (19 MiB, 2 passes, 1 lane). The async API
// runs on libuv's thread pool, so hashing never blocks the event loop.
import { hash, verify, type Options } from '@node-rs/argon2';

// algorithm 2 is Argon2id (the package's const enum cannot be imported under verbatimModuleSyntax).
const argon2Options: Options = { algorithm: 2, memoryCost: 19_456, timeCost: 2, parallelism: 1 };

export function hashPassword(password: string): Promise<string> {
  return hash(password, argon2Options);
}

export async function verifyPassword(passwordHash: string, password: string): Promise<boolean> {
  try {
    return await verify(passwordHash, password);
  } catch {
    return false;
  }
}

let dummyHash: Promise<string> | null = null;

/**
 * Verifies against a hash of nothing in particular, so a login for an unknown email costs the same
 * time as a wrong password and the answer's timing does not reveal which emails exist.
 */
export async function spendPasswordVerificationTime(password: string): Promise<void> {
  dummyHash ??= hashPassword('a password nobody has: timing parity only');
  await verifyPassword(await dummyHash, password);
}
