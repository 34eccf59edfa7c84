import { readFileSync } from 'node:fs';

const SQL_DIR = new URL('../../sql/', import.meta.url);

/** Reads one of the plain-SQL files in sql/. */
export function sqlFile(name: string): string {
  return readFileSync(new URL(name, SQL_DIR), 'utf8');
}
