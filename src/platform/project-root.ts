// Finds the package root (the folder with package.json) from this file, so migrations and other
// shipped files are found the same way from src/ under tsx and from dist/src/ after a build.
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

export function findProjectRoot(start: string = dirname(fileURLToPath(import.meta.url))): string {
  let directory = start;
  while (!existsSync(join(directory, 'package.json'))) {
    const parent = dirname(directory);
    if (parent === directory) throw new Error(`package.json not found above ${start}`);
    directory = parent;
  }
  return directory;
}
