// vLLM's error bodies, in both shapes a gateway meets: the envelope (vLLM ≥ 0.10.1) and the flat
// object of older servers, plus the bare 401 body of the API-key middleware.
import { STATUS_CODES } from 'node:http';
import type { ErrorFormat } from './options.js';

export interface SimulatorError {
  status: number;
  message: string;
  /** vLLM's `type`: an exception name such as `BadRequestError`, or a status phrase such as `Bad Request`. */
  type: string;
  param: string | null;
}

export const UNAUTHORIZED_BODY = '{"error":"Unauthorized"}';

const TYPE_BY_STATUS: Record<number, string> = {
  400: 'BadRequestError',
  401: 'UnauthorizedError',
  403: 'ForbiddenError',
  404: 'NotFoundError',
  408: 'RequestTimeoutError',
  413: 'RequestEntityTooLargeError',
  429: 'TooManyRequestsError',
  500: 'InternalServerError',
  501: 'NotImplementedError',
  502: 'BadGatewayError',
  503: 'ServiceUnavailableError',
  504: 'GatewayTimeoutError',
};

export function errorTypeForStatus(status: number): string {
  return TYPE_BY_STATUS[status] ?? statusPhrase(status);
}

export function statusPhrase(status: number): string {
  return STATUS_CODES[status] ?? 'Error';
}

export function renderError(error: SimulatorError, format: ErrorFormat): string {
  const details = { message: error.message, type: error.type, param: error.param, code: error.status };
  return JSON.stringify(format === 'flat' ? { object: 'error', ...details } : { error: details });
}

export function modelNotFound(modelId: string): SimulatorError {
  return { status: 404, message: `The model \`${modelId}\` does not exist.`, type: 'NotFoundError', param: 'model' };
}

/** FastAPI's HTTPException handler in vLLM uses the status phrase as the type. */
export function httpError(status: number, message?: string): SimulatorError {
  const phrase = statusPhrase(status);
  return { status, message: message ?? phrase, type: phrase, param: null };
}

/** A request-schema failure: vLLM answers 400 with type "Bad Request" and a `body.<field>` param. */
export function schemaError(param: string, message: string): SimulatorError {
  return { status: 400, message, type: 'Bad Request', param };
}

export function badRequest(message: string, param: string | null): SimulatorError {
  return { status: 400, message, type: 'BadRequestError', param };
}

export function faultStatusError(status: number): SimulatorError {
  return {
    status,
    message: `Simulated failure with status ${status}.`,
    type: errorTypeForStatus(status),
    param: null,
  };
}

/**
 * The `data:` payload of a mid-stream error. vLLM builds it with Python's `json.dumps`, whose
 * default separators put a space after `:` and `,`, unlike every other body it sends.
 */
export function renderStreamingError(error: SimulatorError, format: ErrorFormat): string {
  const details = `"message": ${JSON.stringify(error.message)}, "type": ${JSON.stringify(error.type)}, "param": ${JSON.stringify(error.param)}, "code": ${error.status}`;
  return format === 'flat' ? `{"object": "error", ${details}}` : `{"error": {${details}}}`;
}

export function simulatedGenerationFailure(chunkCount: number): SimulatorError {
  return {
    status: 500,
    message: `Simulated generation failure after ${chunkCount} chunks.`,
    type: 'InternalServerError',
    param: null,
  };
}

export function queueFull(): SimulatorError {
  return {
    status: 503,
    message: 'The server is overloaded: the waiting queue is full.',
    type: 'ServiceUnavailableError',
    param: null,
  };
}
