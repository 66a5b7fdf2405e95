/**
 * Column specifications of device-owned rows and the validator built from them. Hand-written
 * rather than a schema library because it runs on every received row (millions in a backfill).
 */
export type ColumnSpec = (
  | { type: 'uuid' }
  | { type: 'text'; max: number }
  | { type: 'bytes' }
  | { type: 'timestamp' }
  | { type: 'hlc' }
  | { type: 'enum'; values: readonly string[] }
) & { nullable?: boolean };

export type RowCheck =
  | { success: true; data: Record<string, unknown> }
  | { success: false; error: { issues: { path: (string | number)[]; message: string }[] } };

export interface RowValidator {
  safeParse(row: unknown): RowCheck;
  /** A row given as its values in column order (a backfill page): why it does not fit, or null. */
  checkValues(values: unknown): string | null;
  /**
   * The same checks as SQL over a row `x` of typed columns (a staged COPY page, where the column
   * types have already refused what does not parse): an expression giving the first problem as
   * "column: why", or null.
   */
  sqlProblem(x: string): string;
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
const HLC = /^\d{15}-\d{6}-[0-9a-f-]{36}$/;
const ISO = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d{1,9})?(?:Z|[+-]\d{2}:\d{2})$/;

export const SQL_TYPES: Record<ColumnSpec['type'], string> = {
  uuid: 'uuid',
  text: 'text',
  bytes: 'int8',
  timestamp: 'timestamptz',
  hlc: 'text',
  enum: 'text',
};

/** Why a value does not fit its column, or null when it does. */
function problem(spec: ColumnSpec, v: unknown): string | null {
  if (v === null) return spec.nullable ? null : 'must not be null';
  switch (spec.type) {
    case 'uuid':
      return typeof v === 'string' && UUID.test(v) ? null : 'expected a lower-case uuid';
    case 'text':
      if (typeof v !== 'string') return 'expected text';
      if (v.length > spec.max) return `longer than ${spec.max} characters`;
      return v.includes('\u0000') ? 'contains a NUL character' : null;
    case 'bytes':
      return typeof v === 'number' && Number.isSafeInteger(v) && v >= 0 ? null : 'expected a non-negative integer';
    case 'timestamp':
      return typeof v === 'string' && ISO.test(v) && !Number.isNaN(Date.parse(v))
        ? null
        : 'expected an ISO-8601 timestamp';
    case 'hlc':
      return typeof v === 'string' && HLC.test(v) ? null : 'expected a clock stamp';
    case 'enum':
      return typeof v === 'string' && spec.values.includes(v) ? null : `expected one of ${spec.values.join(', ')}`;
  }
}

const sqlText = (v: string) => `'${v.replace(/'/g, "''")}'`;

/** The conditions under which a typed value of column `c` of row `x` does not fit, with why. */
function sqlProblems(c: string, spec: ColumnSpec, x: string): [string, string][] {
  const v = `${x}."${c}"`;
  const out: [string, string][] = spec.nullable ? [] : [[`${v} is null`, 'must not be null']];
  switch (spec.type) {
    case 'text':
      out.push([`length(${v}) > ${spec.max}`, `longer than ${spec.max} characters`]);
      break;
    case 'bytes':
      out.push([`${v} < 0`, 'expected a non-negative integer']);
      break;
    case 'timestamp':
      // what ISO-8601 with a four-digit year can say: no infinity, no year 0 or 10000
      out.push([
        `not isfinite(${v}) or ${v} < '0001-01-01T00:00:00Z' or ${v} >= '10000-01-01T00:00:00Z'`,
        'expected an ISO-8601 timestamp',
      ]);
      break;
    case 'hlc':
      out.push([`${v} !~ '^\\d{15}-\\d{6}-[0-9a-f-]{36}$'`, 'expected a clock stamp']);
      break;
    case 'enum':
      out.push([`${v} not in (${spec.values.map(sqlText).join(', ')})`, `expected one of ${spec.values.join(', ')}`]);
      break;
    case 'uuid': // the column's type parsed it
      break;
  }
  return out;
}

export function rowValidator(specs: Readonly<Record<string, ColumnSpec>>): RowValidator {
  const columns = Object.keys(specs);
  return {
    sqlProblem(x: string): string {
      const whens = columns.flatMap((c) =>
        sqlProblems(c, specs[c], x).map(([cond, why]) => `when ${cond} then ${sqlText(`${c}: ${why}`)}`),
      );
      return `case ${whens.join(' ')} else null end`;
    },
    safeParse(row: unknown): RowCheck {
      const fail = (path: string | null, message: string): RowCheck => ({
        success: false,
        error: { issues: [{ path: path ? [path] : [], message }] },
      });
      if (typeof row !== 'object' || row === null || Array.isArray(row)) return fail(null, 'expected an object');
      const r = row as Record<string, unknown>;
      for (const key of Object.keys(r)) if (!(key in specs)) return fail(key, 'unknown column');
      for (const c of columns) {
        if (!(c in r)) return fail(c, 'required');
        const p = problem(specs[c], r[c]);
        if (p) return fail(c, p);
      }
      return { success: true, data: r };
    },
    checkValues(values: unknown): string | null {
      if (!Array.isArray(values) || values.length !== columns.length)
        return `expected ${columns.length} values, one per column`;
      for (let i = 0; i < columns.length; i++) {
        const p = problem(specs[columns[i]], values[i]);
        if (p) return `${columns[i]}: ${p}`;
      }
      return null;
    },
  };
}
