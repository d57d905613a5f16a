// Shapes of the operator endpoints.
import { Type, type Static } from '@sinclair/typebox';
import { userSchema } from '../auth/schemas.js';

const role = Type.Union([Type.Literal('user'), Type.Literal('admin')]);
const status = Type.Union([Type.Literal('active'), Type.Literal('disabled')]);

export const listUsersQuerySchema = Type.Object(
  {
    limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 100, default: 20 })),
    cursor: Type.Optional(Type.String({ maxLength: 200 })),
    email: Type.Optional(Type.String({ minLength: 1, maxLength: 254, description: 'Part of the email, case-insensitive' })),
    role: Type.Optional(role),
    status: Type.Optional(status),
  },
  { additionalProperties: false },
);
export type ListUsersQuery = Static<typeof listUsersQuerySchema>;

const limitOverride = (description: string, minimum: number) => Type.Optional(Type.Union([Type.Integer({ minimum, maximum: 1_000_000_000 }), Type.Null()], { description: `${description}; null restores the default` }));

export const updateUserBodySchema = Type.Object(
  {
    role: Type.Optional(role),
    status: Type.Optional(status),
    rate_limit_requests: limitOverride('Requests per window', 1),
    rate_limit_window_seconds: limitOverride('Window of the request limit, seconds', 1),
    token_quota_per_minute: limitOverride('Tokens per minute (0: none)', 0),
    token_quota_per_day: limitOverride('Tokens per day (0: none)', 0),
    max_concurrent_streams: limitOverride('Simultaneous generations', 1),
  },
  { additionalProperties: false, minProperties: 1 },
);

const nullableInteger = Type.Union([Type.Integer(), Type.Null()]);

export const adminUserSchema = Type.Object({
  ...userSchema.properties,
  limits: Type.Object(
    {
      rate_limit_requests: nullableInteger,
      rate_limit_window_seconds: nullableInteger,
      token_quota_per_minute: nullableInteger,
      token_quota_per_day: nullableInteger,
      max_concurrent_streams: nullableInteger,
    },
    { description: 'Overrides set for this user; null: the role default' },
  ),
  effective_limits: Type.Object({
    requests: Type.Integer(),
    window_seconds: Type.Integer(),
    tokens_per_minute: Type.Integer(),
    tokens_per_day: Type.Integer(),
    max_concurrent_streams: Type.Integer(),
  }),
});
export type UpdateUserBody = Static<typeof updateUserBodySchema>;
