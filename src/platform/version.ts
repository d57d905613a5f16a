// The gateway's version, read once from package.json.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { findProjectRoot } from './project-root.js';

export const gatewayVersion: string = (
  JSON.parse(readFileSync(join(findProjectRoot(), 'package.json'), 'utf8')) as { version: string }
).version;
