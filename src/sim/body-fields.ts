// Typed readers for the fields of a JSON request body that fail the way vLLM's pydantic schema
// does: the first bad field becomes a 400 "Bad Request" whose param is `body.<field>`.
import { schemaError, type SimulatorError } from './errors.js';

export type JsonObject = Record<string, unknown>;

/** Thrown by the readers below and turned into a value by `readFields`; it never leaves this module's callers. */
class FieldError extends Error {
  constructor(
    readonly param: string,
    readonly kind: string,
    readonly detail: string,
    readonly input: unknown,
  ) {
    super(detail);
  }
}

export type FieldsResult<T> = { ok: true; value: T } | { ok: false; error: SimulatorError };

export function readFields<T>(read: () => T): FieldsResult<T> {
  try {
    return { ok: true, value: read() };
  } catch (error) {
    if (!(error instanceof FieldError)) throw error;
    // The message mimics the text of a FastAPI RequestValidationError.
    const location = error.param.split('.').map((part) => `'${part}'`).join(', ');
    const message = `[{'type': '${error.kind}', 'loc': (${location}), 'msg': '${error.detail}', 'input': ${JSON.stringify(error.input) ?? 'None'}}]`;
    return { ok: false, error: schemaError(error.param, message) };
  }
}

export function fail(field: string, kind: string, detail: string, input: unknown): never {
  throw new FieldError(`body.${field}`, kind, detail, input);
}

export function isJsonObject(value: unknown): value is JsonObject {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

interface NumberRule {
  integer?: boolean;
  min?: number;
  greaterThan?: number;
  max?: number;
  lessThan?: number;
}

export function optionalNumber(body: JsonObject, field: string, rule: NumberRule): number | null {
  const value = body[field];
  if (value === undefined || value === null) return null;
  if (typeof value !== 'number' || !Number.isFinite(value)) {
    fail(field, rule.integer ? 'int_type' : 'float_type', `Input should be a valid ${rule.integer ? 'integer' : 'number'}`, value);
  }
  if (rule.integer && !Number.isInteger(value)) {
    fail(field, 'int_from_float', 'Input should be a valid integer, got a number with a fractional part', value);
  }
  if (rule.min !== undefined && value < rule.min) {
    fail(field, 'greater_than_equal', `Input should be greater than or equal to ${rule.min}`, value);
  }
  if (rule.greaterThan !== undefined && value <= rule.greaterThan) {
    fail(field, 'greater_than', `Input should be greater than ${rule.greaterThan}`, value);
  }
  if (rule.max !== undefined && value > rule.max) {
    fail(field, 'less_than_equal', `Input should be less than or equal to ${rule.max}`, value);
  }
  if (rule.lessThan !== undefined && value >= rule.lessThan) {
    fail(field, 'less_than', `Input should be less than ${rule.lessThan}`, value);
  }
  return value;
}

export function optionalBoolean(body: JsonObject, field: string): boolean | null {
  const value = body[field];
  if (value === undefined || value === null) return null;
  if (typeof value !== 'boolean') fail(field, 'bool_type', 'Input should be a valid boolean', value);
  return value;
}

export function optionalString(body: JsonObject, field: string): string | null {
  const value = body[field];
  if (value === undefined || value === null) return null;
  if (typeof value !== 'string') fail(field, 'string_type', 'Input should be a valid string', value);
  return value;
}

export function optionalObject(body: JsonObject, field: string): JsonObject | null {
  const value = body[field];
  if (value === undefined || value === null) return null;
  if (!isJsonObject(value)) fail(field, 'model_type', 'Input should be a valid dictionary', value);
  return value;
}

/** `stop`: a string or a list of strings. */
export function optionalStringList(body: JsonObject, field: string): string[] {
  const value = body[field];
  if (value === undefined || value === null) return [];
  if (typeof value === 'string') return [value];
  if (!Array.isArray(value) || !value.every((item) => typeof item === 'string')) {
    fail(field, 'string_type', 'Input should be a valid string or a list of strings', value);
  }
  return value;
}
