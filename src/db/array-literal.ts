/**
 * Postgres array literals for the login path's batched writes (`unnest($1::text[], …)`), built
 * in one pass. node-postgres builds the same literal from a JS array, but sends every element,
 * numbers included, through two regular-expression replaces: at 1 600 events a flush, those
 * were the bulk of the 2–3 ms the event loop stalled per flush (the login path's p99).
 */

/** `{"a","b\"c",NULL}`: each text quoted, its `"` and `\` escaped; null as NULL. */
export function textArrayLiteral(values: readonly (string | null | undefined)[]): string {
  let literal = '{';
  for (let i = 0; i < values.length; i++) {
    const value = values[i];
    if (i > 0) literal += ',';
    if (value === null || value === undefined) literal += 'NULL';
    else if (value.includes('"') || value.includes('\\')) literal += `"${value.replace(/["\\]/g, '\\$&')}"`;
    else literal += `"${value}"`;
  }
  return `${literal}}`;
}

/** `{1,2.5,NULL}`: finite numbers as JavaScript writes them (exponents included, which Postgres reads); null as NULL. */
export function numberArrayLiteral(values: readonly (number | null | undefined)[]): string {
  let literal = '{';
  for (let i = 0; i < values.length; i++) {
    const value = values[i];
    if (i > 0) literal += ',';
    if (value === null || value === undefined) literal += 'NULL';
    else if (Number.isFinite(value)) literal += `${value}`;
    else throw new RangeError(`cannot write ${value} to Postgres`);
  }
  return `${literal}}`;
}

/** `{t,f,NULL}`. */
export function booleanArrayLiteral(values: readonly (boolean | null | undefined)[]): string {
  let literal = '{';
  for (let i = 0; i < values.length; i++) {
    const value = values[i];
    if (i > 0) literal += ',';
    literal += value === null || value === undefined ? 'NULL' : value ? 't' : 'f';
  }
  return `${literal}}`;
}
