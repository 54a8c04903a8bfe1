/** Pieces every page uses: state badges (colour and words), times, pagers, search boxes. */
import { html, type Html } from '../html.js';
import { ago, utc } from '../format.js';

export type Tone = 'ok' | 'bad' | 'warn' | 'info' | 'muted';

/** A state in colour and in words; the symbol is decoration, the word carries the meaning. */
export function badge(tone: Tone, words: string): Html {
  const symbol = { ok: '●', bad: '✕', warn: '▲', info: '◆', muted: '○' }[tone];
  return html`<span class="state state-${tone}"><span aria-hidden="true">${symbol}</span> ${words}</span>`;
}

/** A relative time that live.js keeps fresh; the exact time is in the title. */
export function time(iso: string | null | undefined, prefix = ''): Html {
  if (!iso) return html`<span class="muted">never</span>`;
  return html`<time datetime="${iso}" title="${utc(iso)}" data-prefix="${prefix}">${prefix}${ago(iso)}</time>`;
}

export interface PagerLink {
  label: string;
  href: string | undefined;
  rel: 'prev' | 'next';
}

export function pager(label: string, links: PagerLink[]): Html {
  if (links.every((l) => l.href === undefined)) return html``;
  return html`<nav class="pager" aria-label="${label}">${links.map((l) =>
    l.href === undefined
      ? html`<span class="pager-off" aria-disabled="true">${l.label}</span>`
      : html`<a href="${l.href}" rel="${l.rel}">${l.label}</a>`,
  )}</nav>`;
}

/** A search form that keeps the page's other parameters (the other table's search) as they are. */
export function searchBox(o: { id: string; name: string; label: string; value: string | undefined; keep: Record<string, string | undefined>; clearHref: string }): Html {
  return html`<form class="search" role="search" method="get" action="/ui" aria-label="${o.label}">
  <label for="${o.id}">${o.label}</label>
  <span class="search-row">
    <input id="${o.id}" type="search" name="${o.name}" value="${o.value ?? ''}" maxlength="200" spellcheck="false">
    ${Object.entries(o.keep).map(([k, v]) => (v === undefined ? '' : html`<input type="hidden" name="${k}" value="${v}">`))}
    <button type="submit">Search</button>
    ${o.value ? html`<a href="${o.clearHref}">Clear</a>` : ''}
  </span>
</form>`;
}

/** /ui?a=1&b=2 from parameters, leaving out the empty ones. */
export function overviewHref(params: Record<string, string | undefined>): string {
  const query = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== undefined && v !== '') query.set(k, v);
  const text = query.toString();
  return text ? `/ui?${text}` : '/ui';
}
