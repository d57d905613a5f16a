// Request and response shapes of /api/auth and /api/keys: one source for validation, types and
// the OpenAPI document. Bodies refuse unknown fields, so `role` or `is_admin` cannot be slipped in.
import { Type, type Static } from '@sinclair/typebox';

export const passwordMinLength = 8;
export const passwordMaxLength = 256;

const email = Type.String({ minLength: 3, maxLength: 254, description: 'Trimmed and compared case-insensitively' });
const password = Type.String({ minLength: passwordMinLength, maxLength: passwordMaxLength });
const anyPassword = Type.String({ minLength: 1, maxLength: passwordMaxLength });
const uuid = Type.String({ format: 'uuid' });
const timestamp = Type.String({ format: 'date-time' });
const nullableTimestamp = Type.Union([timestamp, Type.Null()]);

export const userSchema = Type.Object(
  {
    id: uuid,
    email: Type.String(),
    display_name: Type.Union([Type.String(), Type.Null()]),
    role: Type.Union([Type.Literal('user'), Type.Literal('admin')]),
    status: Type.Union([Type.Literal('active'), Type.Literal('disabled')]),
    created_at: timestamp,
  },
  { $id: 'User' },
);
export type UserView = Static<typeof userSchema>;

export const registerBodySchema = Type.Object(
  { email, password, display_name: Type.Optional(Type.String({ minLength: 1, maxLength: 100 })) },
  { additionalProperties: false },
);
export type RegisterBody = Static<typeof registerBodySchema>;

export const loginBodySchema = Type.Object({ email: Type.String({ minLength: 1, maxLength: 254 }), password: anyPassword }, { additionalProperties: false });
export type LoginBody = Static<typeof loginBodySchema>;

export const refreshBodySchema = Type.Object({ refresh_token: Type.String({ minLength: 1, maxLength: 200 }) }, { additionalProperties: false });
export const logoutBodySchema = Type.Object(
  { refresh_token: Type.Optional(Type.String({ minLength: 1, maxLength: 200 })) },
  { additionalProperties: false },
);

export const changePasswordBodySchema = Type.Object(
  { current_password: anyPassword, new_password: password },
  { additionalProperties: false },
);

export const tokenResponseSchema = Type.Object({
  access_token: Type.String(),
  refresh_token: Type.String(),
  token_type: Type.Literal('bearer'),
  expires_in: Type.Integer({ description: 'Access token lifetime in seconds' }),
  user: userSchema,
});
export type TokenResponse = Static<typeof tokenResponseSchema>;

export const sessionSchema = Type.Object({
  id: uuid,
  created_at: timestamp,
  last_used_at: timestamp,
  expires_at: timestamp,
  user_agent: Type.Union([Type.String(), Type.Null()]),
  ip: Type.Union([Type.String(), Type.Null()]),
  current: Type.Boolean({ description: 'The session of the access token making this request' }),
});
export type SessionView = Static<typeof sessionSchema>;

/** Any text up to a bound: an id that is not a UUID is a 404 (checked in the handler), like a missing one. */
export const idParamsSchema = Type.Object({ id: Type.String({ maxLength: 1000 }) });

export const createApiKeyBodySchema = Type.Object(
  {
    name: Type.String({ minLength: 1, maxLength: 100 }),
    expires_in_days: Type.Optional(Type.Integer({ minimum: 1, maximum: 3650 })),
  },
  { additionalProperties: false },
);
export type CreateApiKeyBody = Static<typeof createApiKeyBodySchema>;

export const apiKeySchema = Type.Object({
  id: uuid,
  name: Type.String(),
  prefix: Type.String({ description: 'The first characters of the key, to recognise it' }),
  created_at: timestamp,
  last_used_at: nullableTimestamp,
  expires_at: nullableTimestamp,
});
export type ApiKeyView = Static<typeof apiKeySchema>;

export const createdApiKeySchema = Type.Object({
  ...apiKeySchema.properties,
  key: Type.String({ description: 'The secret: shown once, never again' }),
});

export function listOf<T extends ReturnType<typeof Type.Object>>(item: T) {
  return Type.Object({ data: Type.Array(item), next_cursor: Type.Union([Type.String(), Type.Null()]) });
}
