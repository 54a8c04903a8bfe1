/**
 * Text the event log can store. Postgres text cannot hold NUL, nor jsonb an unpaired surrogate
 * (both legal in JSON): such a value would fail the whole group-commit batch it rides in, so
 * payload parsers refuse it up front, as a 400.
 */
import { z } from 'zod';

const UNPAIRED_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;

export const storableText = (min: number, max: number) =>
  z
    .string()
    .min(min)
    .max(max)
    .refine((s) => !s.includes('\u0000') && !UNPAIRED_SURROGATE.test(s), {
      message: 'must not contain NUL or unpaired surrogate characters',
    });

/** A commit sha or a digest. */
export const storableSha = storableText(1, 128);

/** The first issue of a failed parse, as `field: message` (the field as a dotted path). */
export function firstIssue(error: z.ZodError, prefix = ''): { field: string; message: string } {
  const issue = error.issues[0]!;
  const path = issue.path.map((p) => (typeof p === 'number' ? `[${p}]` : `.${String(p)}`)).join('');
  const field = `${prefix}${path}`.replace(/^\./, '') || 'body';
  return { field, message: `${field}: ${issue.message}` };
}
