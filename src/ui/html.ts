/**
 * Server-side HTML by tagged templates: every interpolated value is escaped (by `escape-html`)
 * unless it is itself the result of `html`, so markup can only come from template literals in
 * this code base, never from data (project paths, refs, agent names, Flux messages...).
 */
import escapeHtml from 'escape-html';

export class Html {
  constructor(readonly value: string) {}
  toString(): string {
    return this.value;
  }
}

export type HtmlValue = Html | string | number | boolean | null | undefined | readonly HtmlValue[];

function render(value: HtmlValue): string {
  if (value === null || value === undefined || value === false || value === true) return '';
  if (value instanceof Html) return value.value;
  if (Array.isArray(value)) return value.map(render).join('');
  return escapeHtml(String(value));
}

export function html(strings: TemplateStringsArray, ...values: HtmlValue[]): Html {
  let out = strings[0]!;
  for (let i = 0; i < values.length; i++) out += render(values[i]!) + strings[i + 1]!;
  return new Html(out);
}

/** Several fragments as one, e.g. rows mapped from a list. */
export const join = (parts: readonly HtmlValue[]): Html => new Html(render(parts));
