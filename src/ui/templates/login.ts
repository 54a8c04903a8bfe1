import { html, type Html } from '../html.js';

export interface LoginView {
  csrfToken: string;
  next: string;
  error?: string;
  notice?: string;
}

export function loginBody(v: LoginView): Html {
  return html`<div class="signin">
<h1>Sign in to kasgate</h1>
<p>Sign in with the gateway's admin token: <code>KASGATE_ADMIN_TOKEN</code>, or in embedded mode the
<code>adminToken</code> in <code>data/secrets.json</code>.</p>
${v.notice ? html`<p class="notice" role="status">${v.notice}</p>` : ''}
${v.error ? html`<p class="alert" role="alert" id="signin-error">${v.error}</p>` : ''}
<form method="post" action="/ui/login" class="stack">
  <input type="hidden" name="_csrf" value="${v.csrfToken}">
  <input type="hidden" name="next" value="${v.next}">
  <label for="token">Admin token</label>
  <input id="token" name="token" type="password" required autocomplete="off" spellcheck="false" autofocus${
    v.error ? html` aria-invalid="true" aria-describedby="signin-error"` : ''
  }>
  <button type="submit">Sign in</button>
</form>
</div>`;
}
