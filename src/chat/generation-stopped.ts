// The error a JSON generation ends with when a stop request or shutdown cut it before vLLM
// answered: it carries what the generation cost so far, so its admission still charges it.
import { GatewayError } from '../errors.js';
import type { RelayResult } from './relay-service.js';

/** A JSON request stopped (or cut by shutdown) before vLLM answered; carries what it cost so far. */
export class GenerationStopped extends GatewayError {
  constructor(readonly result: RelayResult) {
    super(
      result.abortReason === 'shutdown' ? 'service_unavailable' : 'generation_stopped',
      result.abortReason === 'shutdown' ? 'The gateway is shutting down' : 'The generation was stopped',
    );
  }
}
