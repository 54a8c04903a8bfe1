import { html, type Html } from '../html.js';
import type { Assets } from '../assets.js';

export interface LayoutOptions {
  title: string;
  assets: Assets;
  body: Html;
  /** Set when signed in: the sign-out form needs it. */
  csrfToken?: string;
  /** Where the page's live updates come from (server-sent events); none on pages without. */
  liveUrl?: string;
  replicaId?: string;
  current?: 'overview';
}

export function layout(o: LayoutOptions): Html {
  const asset = (name: string) => o.assets.byName.get(name)!.url;
  return html`<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="color-scheme" content="light dark">
<title>${o.title} · kasgate</title>
<link rel="icon" href="${asset('favicon.svg')}" type="image/svg+xml">
<link rel="stylesheet" href="${asset('status.css')}">
<script src="${asset('live.js')}" defer></script>
</head>
<body>
<a class="skip" href="#main">Skip to the content</a>
<header class="top">
  <a class="brand" href="/ui">kasgate</a>
  ${
    o.csrfToken === undefined
      ? ''
      : html`<nav aria-label="Main"><a href="/ui"${o.current === 'overview' ? html` aria-current="page"` : ''}>Overview</a></nav>
  <p class="live" id="live-indicator" hidden><span class="dot" aria-hidden="true"></span><span class="live-text">Live updates: connecting</span></p>
  <form class="signout" method="post" action="/ui/logout">
    <input type="hidden" name="_csrf" value="${o.csrfToken}">
    <button type="submit">Sign out</button>
  </form>`
  }
</header>
<main id="main"${o.liveUrl ? html` data-live-url="${o.liveUrl}"` : ''}>
${o.body}
</main>
<footer class="foot">${o.replicaId ? html`Served by replica <span class="mono">${o.replicaId}</span>. ` : ''}Times are shown in UTC on hover.</footer>
<div id="announcer" class="visually-hidden" aria-live="polite" aria-atomic="true"></div>
</body>
</html>`;
}
