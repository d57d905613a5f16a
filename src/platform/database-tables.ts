// The tables Kysely knows about. Each feature adds its tables here when its migration lands;
// the columns mirror migrations/*.up.sql.
import type { ColumnType, Generated } from 'kysely';

export type Timestamp = ColumnType<Date, Date | string | undefined, Date | string>;

export interface UsersTable {
  id: Generated<string>;
  email: string;
  display_name: string | null;
  password_hash: string;
  role: 'user' | 'admin';
  status: 'active' | 'disabled';
  token_version: Generated<number>;
  created_at: Generated<Date>;
  updated_at: Generated<Date>;
}

export interface DatabaseTables {
  users: UsersTable;
}
