// sql/ files as the conversion reads them: placeholders filled, scripts cut into statements
// ($$ bodies kept whole, comment lines between statements dropped).
import { describe, expect, it } from 'vitest';
import { locatorSql } from '../../src/schema/apply.js';
import { sqlStatements, sqlTemplate } from '../../src/schema/sql-file.js';

describe('sqlStatements', () => {
  it('cuts sql/invoice-ids.sql into its table, function and trigger', () => {
    const [table, fn, trigger, ...rest] = sqlStatements(locatorSql());
    expect(rest).toEqual([]);
    expect(table).toMatch(
      /^CREATE TABLE IF NOT EXISTS invoice_ids \(\n[\s\S]*CONSTRAINT invoice_ids_pkey PRIMARY KEY \(invoice_id\) INCLUDE \(issue_date\)\n\)$/,
    );
    expect(fn).toMatch(
      /^CREATE OR REPLACE FUNCTION invoice_ids_sync\(\) RETURNS trigger[\s\S]*-- A row moved[\s\S]*END IF;\n {2}RETURN NULL;\nEND \$\$$/,
    );
    expect(trigger).toMatch(
      /^CREATE OR REPLACE TRIGGER invoice_ids_sync\n {2}AFTER INSERT OR DELETE OR UPDATE OF invoice_id, issue_date ON invoices\n/,
    );
  });

  it('keeps statements whole across lines and drops comments and blank lines between them', () => {
    expect(
      sqlStatements('-- header\nSELECT 1;\n\n-- why\nSELECT\n  2;\nDO $$\nBEGIN\n  -- inside\n  PERFORM 3;\nEND $$;\nSELECT 4'),
    ).toEqual(['SELECT 1', 'SELECT\n  2', 'DO $$\nBEGIN\n  -- inside\n  PERFORM 3;\nEND $$', 'SELECT 4']);
  });
});

describe('sqlTemplate', () => {
  it('fills every placeholder of a conversion file, and refuses one without a value', () => {
    const vars = { parent: 'invoices', newTable: 'invoices_part', locator: 'invoice_ids', log: 'l', state: 's', capture: 'c', guard: 'g' };
    expect(sqlStatements(sqlTemplate('convert-cancel.sql', vars))[0]).toBe('DROP TRIGGER IF EXISTS c ON invoices');
    expect(() => sqlTemplate('convert-capture.sql', vars)).toThrow(/no value for \{schema\}/);
  });
});
