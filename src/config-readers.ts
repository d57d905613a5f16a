// Typed readers for environment variables. Each reader either returns a value or records one
// clear problem naming the variable, so a bad configuration stops the start with every mistake listed.
import { isIP } from 'node:net';

export type Environment = Readonly<Record<string, string | undefined>>;

export class ConfigError extends Error {
  constructor(readonly problems: string[]) {
    super(`Invalid configuration: ${problems.join('; ')}`);
    this.name = 'ConfigError';
  }
}

/** Reads variables from one environment and collects the problems found along the way. */
export class EnvironmentReader {
  readonly problems: string[] = [];
  /** Every variable name the schema asked for, so tests can check that each one is documented. */
  readonly variablesRead = new Set<string>();

  constructor(private readonly environment: Environment) {}

  raw(name: string): string | undefined {
    this.variablesRead.add(name);
    const value = this.environment[name];
    if (value === undefined) return undefined;
    const trimmed = value.trim();
    return trimmed === '' ? undefined : trimmed;
  }

  problem(name: string, message: string, value?: string): void {
    const shown = value === undefined ? '' : ` (got ${JSON.stringify(truncate(value))})`;
    this.problems.push(`${name} ${message}${shown}`);
  }

  string(name: string, fallback: string): string {
    return this.raw(name) ?? fallback;
  }

  optionalString(name: string): string | null {
    return this.raw(name) ?? null;
  }

  integer(name: string, options: { fallback: number; min?: number; max?: number }): number {
    const value = this.raw(name);
    if (value === undefined) return options.fallback;
    const min = options.min ?? Number.MIN_SAFE_INTEGER;
    const max = options.max ?? Number.MAX_SAFE_INTEGER;
    const parsed = /^-?\d+$/.test(value) ? Number(value) : Number.NaN;
    if (!Number.isSafeInteger(parsed) || parsed < min || parsed > max) {
      this.problem(name, `must be an integer from ${min} to ${max}`, value);
      return options.fallback;
    }
    return parsed;
  }

  positiveNumber(name: string): number | undefined {
    const value = this.raw(name);
    if (value === undefined) return undefined;
    const parsed = Number(value);
    if (!Number.isFinite(parsed) || parsed <= 0) {
      this.problem(name, 'must be a positive number', value);
      return undefined;
    }
    return parsed;
  }

  boolean(name: string, fallback: boolean): boolean {
    const value = this.raw(name);
    if (value === undefined) return fallback;
    const lowered = value.toLowerCase();
    if (['1', 'true', 'yes', 'on'].includes(lowered)) return true;
    if (['0', 'false', 'no', 'off'].includes(lowered)) return false;
    this.problem(name, 'must be true or false', value);
    return fallback;
  }

  oneOf<T extends string>(name: string, allowed: readonly T[], fallback: T): T {
    const value = this.raw(name);
    if (value === undefined) return fallback;
    const match = allowed.find((candidate) => candidate.toLowerCase() === value.toLowerCase());
    if (match === undefined) {
      this.problem(name, `must be one of ${allowed.join(', ')}`, value);
      return fallback;
    }
    return match;
  }

  /** A duration in seconds: `900`, `900s`, `15m`, `12h` or `30d`. */
  durationSeconds(name: string, fallback: number): number {
    const value = this.raw(name);
    if (value === undefined) return fallback;
    const match = /^(\d+)\s*(s|m|h|d)?$/i.exec(value);
    const multipliers: Record<string, number> = { s: 1, m: 60, h: 3600, d: 86_400 };
    if (match === null || Number(match[1]) === 0) {
      this.problem(name, 'must be a positive duration such as 900, 15m, 12h or 30d', value);
      return fallback;
    }
    return Number(match[1]) * (multipliers[(match[2] ?? 's').toLowerCase()] ?? 1);
  }

  /** A list written as a JSON array (as the seed writes CORS_ORIGINS) or comma-separated. */
  list(name: string): string[] | undefined {
    const value = this.raw(name);
    if (value === undefined) return undefined;
    if (value.startsWith('[')) {
      try {
        const parsed: unknown = JSON.parse(value);
        if (Array.isArray(parsed) && parsed.every((item) => typeof item === 'string')) {
          return parsed.map((item) => item.trim()).filter((item) => item !== '');
        }
      } catch {
        // fall through to the problem below
      }
      this.problem(name, 'must be a JSON array of strings or a comma-separated list', value);
      return undefined;
    }
    return value
      .split(',')
      .map((item) => item.trim())
      .filter((item) => item !== '');
  }

  url(name: string, options: { fallback: string | null; protocols: readonly string[] }): string | null {
    const value = this.raw(name);
    if (value === undefined) return options.fallback;
    if (!isUrlWithProtocol(value, options.protocols)) {
      this.problem(name, `must be a URL starting with ${options.protocols.map((p) => `${p}//`).join(' or ')}`, redactUrl(value));
      return options.fallback;
    }
    return value;
  }
}

export function isUrlWithProtocol(value: string, protocols: readonly string[]): boolean {
  try {
    return protocols.includes(new URL(value).protocol);
  } catch {
    return false;
  }
}

/** An IP address, or an address with a CIDR prefix length, or one of proxy-addr's named ranges. */
export function isProxyAddress(value: string): boolean {
  if (['loopback', 'linklocal', 'uniquelocal'].includes(value)) return true;
  const [address, prefix, ...rest] = value.split('/');
  if (address === undefined || rest.length > 0) return false;
  const version = isIP(address);
  if (version === 0) return false;
  if (prefix === undefined) return true;
  const bits = /^\d+$/.test(prefix) ? Number(prefix) : -1;
  return bits >= 0 && bits <= (version === 4 ? 32 : 128);
}

/** Hides the password in a connection URL before it is shown in an error message. */
export function redactUrl(value: string): string {
  try {
    const url = new URL(value);
    if (url.password !== '') url.password = '***';
    return url.toString();
  } catch {
    return value.replace(/\/\/([^:/@]+):[^@]*@/, '//$1:***@');
  }
}

function truncate(value: string): string {
  return value.length > 80 ? `${value.slice(0, 77)}...` : value;
}
