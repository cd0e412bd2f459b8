// Parsers for numeric command-line flags, shared by the sub-commands. Each names the flag in its
// error, so a typo never becomes a silent default.
import { UserError } from '../../src/util/errors.js';

/** Any integer. */
export const integer = (flag: string) => (v: string): number => {
  const n = Number(v);
  if (!Number.isInteger(n)) throw new UserError(`${flag} must be an integer (got ${v})`);
  return n;
};

/** An integer >= 1. */
export const positiveInt = (flag: string) => (v: string): number => {
  const n = Number(v);
  if (!Number.isInteger(n) || n < 1) throw new UserError(`${flag} must be a positive integer, got '${v}'`);
  return n;
};

/** Any finite number. */
export const finite = (flag: string) => (v: string): number => {
  const n = Number(v);
  if (!Number.isFinite(n)) throw new UserError(`${flag} must be a number (got ${v})`);
  return n;
};
