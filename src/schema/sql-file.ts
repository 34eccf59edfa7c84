// The plain-SQL files in sql/: read one, fill its {placeholders}, cut it into statements.
import { readFileSync } from 'node:fs';

const SQL_DIR = new URL('../../sql/', import.meta.url);

/** Reads one of the plain-SQL files in sql/. */
export function sqlFile(name: string): string {
  return readFileSync(new URL(name, SQL_DIR), 'utf8');
}

/** A sql/ file with each {name} replaced by vars[name] (identifiers quoted by the caller); an unknown name throws. */
export function sqlTemplate(name: string, vars: Record<string, string>): string {
  return sqlFile(name).replace(/\{(\w+)\}/g, (_m, k: string) => {
    if (!(k in vars)) throw new Error(`sql/${name}: no value for {${k}}`);
    return vars[k];
  });
}

/**
 * The statements of a script, without their `;`: comment lines between statements dropped (those
 * inside a $$ body kept), a statement ending at the first line that ends with `;` outside a $$ body.
 */
export function sqlStatements(script: string): string[] {
  const out: string[] = [];
  let current: string[] = [];
  let inBody = false;
  for (const line of script.split('\n')) {
    if (!inBody && (/^\s*--/.test(line) || (!current.length && !line.trim()))) continue;
    current.push(line);
    if ((line.match(/\$\$/g)?.length ?? 0) % 2) inBody = !inBody;
    if (!inBody && /;\s*$/.test(line)) {
      out.push(current.join('\n').trim().replace(/;$/, ''));
      current = [];
    }
  }
  const rest = current.join('\n').trim();
  if (rest) out.push(rest);
  return out;
}
