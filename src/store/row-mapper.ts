/**
 * Rows to records, declared once per table: each field names how its column is read. The
 * drivers differ (timestamptz as Date or string, int8 as string or number; sql-executor.ts),
 * so every timestamp, count and nullable column goes through one reader here.
 */

export type Row = Record<string, unknown>;

/** Reads one column's value into a record field. */
export type ColumnReader<T> = (value: unknown) => T;

const iso = (v: unknown): string =>
  v instanceof Date ? v.toISOString() : new Date(String(v)).toISOString();

export const column = {
  /** A value the database already returns as the field's type (text, parsed jsonb). */
  as:
    <T>(): ColumnReader<T> =>
    (v) =>
      v as T,
  text: ((v) => v as string) as ColumnReader<string>,
  textOrNull: ((v) => (v as string | null) ?? null) as ColumnReader<string | null>,
  number: ((v) => Number(v)) as ColumnReader<number>,
  json: ((v) => v) as ColumnReader<unknown>,
  jsonOrNull: ((v) => v ?? null) as ColumnReader<unknown>,
  iso: iso as ColumnReader<string>,
  isoOrNull: ((v) => (v === null || v === undefined ? null : iso(v))) as ColumnReader<
    string | null
  >,
};

/** A mapper from a row to `T`, reading each field of `T` from the column of that name. */
export function rowMapper<T>(columns: { [K in keyof T]-?: ColumnReader<T[K]> }): (r: Row) => T {
  const fields = Object.entries(columns) as Array<[string, ColumnReader<unknown>]>;
  return (r) => {
    const out: Row = {};
    for (const [name, read] of fields) out[name] = read(r[name]);
    return out as T;
  };
}
