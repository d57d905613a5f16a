// Shapes of the operator endpoints.
import { Type, type Static } from '@sinclair/typebox';

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

export const updateUserBodySchema = Type.Object({ role: Type.Optional(role), status: Type.Optional(status) }, { additionalProperties: false, minProperties: 1 });
export type UpdateUserBody = Static<typeof updateUserBodySchema>;
