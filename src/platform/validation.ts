// Request validation. Bodies are checked as sent, never coerced: Ajv's default coercion would
// turn `max_tokens: 0` into null (through a nullable union) or "5" into 5, and the relay would then
// forward a body the caller never wrote. Query strings and path parameters arrive as text, so
// they are coerced to the schema's types.
import { Ajv, type Options } from 'ajv';
import addFormatsModule from 'ajv-formats';
import type { FastifySchemaCompiler } from 'fastify';

// ajv-formats is CommonJS; under NodeNext its default export arrives as the module namespace.
const addFormats = addFormatsModule as unknown as (ajv: Ajv) => Ajv;

const common: Options = {
  removeAdditional: false,
  useDefaults: true,
  allErrors: false,
  // Errors carry their schema, so a range violation can name both bounds.
  verbose: true,
  strict: false,
};

const bodyValidator = addFormats(new Ajv({ ...common, coerceTypes: false }));
const textValidator = addFormats(new Ajv({ ...common, coerceTypes: 'array' }));

export const validatorCompiler: FastifySchemaCompiler<unknown> = ({ schema, httpPart }) => {
  const ajv = httpPart === 'body' ? bodyValidator : textValidator;
  return ajv.compile(schema as object) as ReturnType<FastifySchemaCompiler<unknown>>;
};
