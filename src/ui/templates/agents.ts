/** Agents: the overview's rows and the agent page. */
import type { Agent, Grants } from '../../agents/agent-store.js';
import type { TokenInfo } from '../../agents/token-store.js';
import type { CredentialRow } from '../../credentials/credential-store.js';
import type { ConnectionRecord } from '../../fanout/presence.js';
import type { AgentObjects, FluxObjectView } from '../cluster-view.js';
import { plural, utc } from '../format.js';
import { html, type Html } from '../html.js';
import { badge, time } from './parts.js';

/** An agent as a row shows it: who, and its live connections on every replica (from presence). */
export interface AgentStateView {
  id: string;
  name: string;
  connections: ConnectionRecord[];
  lastConnectedAt: string | null;
  /** Presence (Redis) could not be read: the state is not known. */
  presenceUnavailable?: boolean;
}

export const agentHref = (id: string) => `/ui/agents/${encodeURIComponent(id)}`;

function summary(a: AgentStateView) {
  const connected = a.connections.length > 0;
  const replicas = [...new Set(a.connections.map((c) => c.replicaId))].sort();
  const since = connected ? a.connections.map((c) => c.connectedAt).sort()[0]! : null;
  const projects = new Set(a.connections.flatMap((c) => c.projects.map((p) => p.toLowerCase())));
  return { connected, replicas, since, projects: projects.size };
}

export function agentState(a: AgentStateView): Html {
  if (a.presenceUnavailable) return badge('warn', 'unknown (presence unavailable)');
  const s = summary(a);
  if (!s.connected) return badge('bad', 'disconnected');
  return badge('ok', s.replicas.length > 1 || a.connections.length > 1 ? `connected (${a.connections.length} connections)` : 'connected');
}

export function agentRow(a: AgentStateView): Html {
  const s = summary(a);
  return html`<tr data-agent-id="${a.id}" class="${s.connected ? 'is-connected' : 'is-disconnected'}">
<th scope="row"><a href="${agentHref(a.id)}">${a.name}</a></th>
<td>${agentState(a)}</td>
<td>${s.replicas.length ? s.replicas.map((r, i) => html`${i ? ', ' : ''}<span class="mono">${r}</span>`) : html`<span class="muted">none</span>`}</td>
<td>${s.connected ? time(s.since) : a.lastConnectedAt ? time(a.lastConnectedAt, 'last connected ') : html`<span class="muted">never connected</span>`}</td>
<td class="num">${s.connected ? s.projects : html`<span class="muted">–</span>`}</td>
</tr>`;
}

export function agentsEmptyRow(searching: boolean): Html {
  return html`<tr class="empty"><td colspan="5">${
    searching
      ? 'No agent matches this search.'
      : html`No agents registered yet. Register one with <code>kasgate agents create</code> or <code>POST /api/v1/agents</code>.`
  }</td></tr>`;
}

export function agentsTable(rows: AgentStateView[], searching: boolean, caption: string): Html {
  return html`<div class="table-wrap" role="region" aria-labelledby="agents-caption" tabindex="0">
<table id="agents-table">
<caption id="agents-caption">${caption}</caption>
<thead><tr><th scope="col">Agent</th><th scope="col">State</th><th scope="col">Replica</th><th scope="col">Since</th><th scope="col" class="num">Projects watched</th></tr></thead>
<tbody>${rows.length ? rows.map(agentRow) : agentsEmptyRow(searching)}</tbody>
</table>
</div>`;
}

/** The agent page's live part: its state and its connections. */
export function agentLive(a: AgentStateView): Html {
  return html`<div id="agent-live" data-agent-id="${a.id}">
<p class="headline">${agentState(a)} ${
    a.connections.length === 0
      ? a.lastConnectedAt
        ? html`<span class="muted">${time(a.lastConnectedAt, 'last connected ')}</span>`
        : html`<span class="muted">never connected</span>`
      : ''
  }</p>
<section aria-labelledby="connections-h">
<h2 id="connections-h">Connections</h2>
${
  a.connections.length === 0
    ? html`<p class="muted">No live connection on any replica.</p>`
    : html`<div class="table-wrap" role="region" aria-labelledby="connections-caption" tabindex="0">
<table>
<caption id="connections-caption">${plural(a.connections.length, 'live connection')}, on every replica</caption>
<thead><tr><th scope="col">Connection</th><th scope="col">Replica</th><th scope="col">From</th><th scope="col">Connected</th><th scope="col">Last heartbeat</th><th scope="col">Projects subscribed</th></tr></thead>
<tbody>${a.connections.map(
        (c) => html`<tr>
<th scope="row"><span class="mono" title="${c.connectionId}">${c.connectionId.slice(0, 8)}</span></th>
<td class="mono">${c.replicaId}</td>
<td class="mono">${c.remoteAddress}</td>
<td>${time(c.connectedAt)}</td>
<td>${time(c.lastHeartbeatAt)}</td>
<td>${c.projects.length ? html`<ul class="plain">${c.projects.map((p) => html`<li>${p}</li>`)}</ul>` : html`<span class="muted">none yet</span>`}</td>
</tr>`,
      )}</tbody>
</table>
</div>`
}
</section>
</div>`;
}

/** The config file's last good read and its error, in the agent page's facts. */
export function configFileFacts(agent: Partial<Pick<Agent, 'configSource' | 'configError'>>, gitlabApi: boolean): Html {
  const source = agent.configSource;
  return html`<dt>Config file</dt><dd>${
    source
      ? html`<code>${source.path}</code> on <code>${source.ref}</code> at <code>${source.commitId.slice(0, 8)}</code>, read <time datetime="${source.readAt}">${source.readAt.slice(0, 16).replace('T', ' ')}</time>`
      : gitlabApi
        ? html`<span class="muted">not read yet</span>`
        : html`<span class="muted">not read: no GitLab API configured (KASGATE_GITLAB_URL, KASGATE_GITLAB_TOKEN)</span>`
  }</dd>
${agent.configError ? html`<dt>Config error</dt><dd><p class="alert" role="alert">${agent.configError}</p><span class="muted">The last good config stays in force.</span></dd>` : ''}`;
}

export function grantsSection(configProject: string, grants: Grants): Html {
  const none = grants.projects.length === 0 && grants.groups.length === 0;
  return html`<section aria-labelledby="grants-h">
<h2 id="grants-h">Access</h2>
<p>It sees its configuration project <code>${configProject}</code>, public projects, and what it is granted.</p>
${
  none
    ? html`<p class="muted">No admin grants.</p>`
    : html`<dl class="facts">
<dt>Granted projects</dt><dd>${grants.projects.length ? html`<ul class="plain">${grants.projects.map((p) => html`<li><code>${p}</code></li>`)}</ul>` : html`<span class="muted">none</span>`}</dd>
<dt>Granted groups</dt><dd>${grants.groups.length ? html`<ul class="plain">${grants.groups.map((g) => html`<li><code>${g}/…</code></li>`)}</ul>` : html`<span class="muted">none</span>`}</dd>
</dl>`
}
</section>`;
}

export function tokensSection(tokens: TokenInfo[]): Html {
  return html`<section aria-labelledby="tokens-h">
<h2 id="tokens-h">Tokens</h2>
${
  tokens.length === 0
    ? html`<p class="muted">No tokens.</p>`
    : html`<div class="table-wrap" role="region" aria-labelledby="tokens-caption" tabindex="0">
<table>
<caption id="tokens-caption">Its tokens (kasgate keeps only their hashes)</caption>
<thead><tr><th scope="col">Token</th><th scope="col">State</th><th scope="col">Created</th><th scope="col">Last used</th></tr></thead>
<tbody>${tokens.map(
        (t) => html`<tr>
<th scope="row"><span class="mono">${t.prefix}…</span></th>
<td>${t.revokedAt ? badge('muted', 'revoked') : badge('ok', 'active')}</td>
<td>${time(t.createdAt)}</td>
<td>${time(t.lastUsedAt)}</td>
</tr>`,
      )}</tbody>
</table>
</div>`
}
</section>`;
}

/** A time to come: absolute (a relative "ago" would read wrong). */
const at = (d: Date): Html => html`<time datetime="${d.toISOString()}">${utc(d.toISOString())}</time>`;

const CREDENTIAL_TONES = { created: 'info', sent: 'warn', applied: 'ok', failed: 'bad', revoked: 'muted' } as const;

/** Flux's deploy tokens made from the config file's flux_access: where each stands, never the secret. */
export function deployTokensSection(credentials: CredentialRow[], error: string | null): Html {
  const shown = credentials.filter((c) => c.state !== 'revoked');
  if (shown.length === 0 && error === null) return html``;
  return html`<section aria-labelledby="deploy-tokens-h">
<h2 id="deploy-tokens-h">Deploy tokens for Flux</h2>
${error ? html`<p class="alert" role="alert">${error}</p>` : ''}
${
  shown.length === 0
    ? html`<p class="muted">No deploy tokens.</p>`
    : html`<div class="table-wrap" role="region" aria-labelledby="deploy-tokens-caption" tabindex="0">
<table>
<caption id="deploy-tokens-caption">Made on GitLab from <code>flux_access</code>, written by the agent as Secrets (kasgate keeps none once applied)</caption>
<thead><tr><th scope="col">Secret</th><th scope="col">Namespaces</th><th scope="col">For</th><th scope="col">State</th><th scope="col">Rotates</th><th scope="col">Expires</th></tr></thead>
<tbody>${shown.map(
        (c) => html`<tr>
<th scope="row"><code>${c.secret_name}</code></th>
<td>${c.namespaces.join(', ')}</td>
<td>${c.target_kind === 'group' ? 'group ' : ''}<code>${c.target_path}</code> (${c.role})</td>
<td>${badge(CREDENTIAL_TONES[c.state], c.state)}${c.last_error ? html` <span class="muted">${c.last_error}</span>` : ''}</td>
<td>${at(c.rotate_at)}</td>
<td>${at(c.expires_at)}</td>
</tr>`,
      )}</tbody>
</table>
</div>`
}
</section>`;
}

function readyBadge(o: FluxObjectView): Html {
  if (o.suspended) return badge('muted', 'suspended');
  if (o.ready === 'True') return badge('ok', 'Ready');
  if (o.ready === 'False') return badge('bad', 'not Ready');
  return badge('warn', 'Ready unknown');
}

/** At most this many objects on the page; the API lists them all. */
export const MAX_OBJECTS_SHOWN = 1000;

export function objectsSection(agentId: string, data: AgentObjects): Html {
  // Not ready first: that is what someone on call looks for.
  const rank = (o: FluxObjectView) => (o.ready === 'False' ? 0 : o.ready === 'Unknown' ? 1 : 2);
  const sorted = [...data.objects].sort(
    (a, b) => rank(a) - rank(b) || a.kind.localeCompare(b.kind) || a.namespace.localeCompare(b.namespace) || a.name.localeCompare(b.name),
  );
  const shown = sorted.slice(0, MAX_OBJECTS_SHOWN);
  return html`<section aria-labelledby="objects-h">
<h2 id="objects-h">Flux objects</h2>
${data.truncated ? html`<p class="alert" role="note">The agent reported more objects than the gateway keeps (KASGATE_MAX_STATUS_OBJECTS); the list is cut.</p>` : ''}
${
  shown.length === 0
    ? html`<p class="muted">This agent has reported no Flux objects yet.</p>`
    : html`${
        sorted.length > shown.length
          ? html`<p>Showing ${shown.length} of ${sorted.length}; all of them: <code>GET /api/v1/agents/${agentId}/objects</code>.</p>`
          : ''
      }<div class="table-wrap" role="region" aria-labelledby="objects-caption" tabindex="0">
<table>
<caption id="objects-caption">${plural(sorted.length, 'Flux object')}, not Ready first</caption>
<thead><tr><th scope="col">Object</th><th scope="col">Ready</th><th scope="col">Revision</th><th scope="col">Reason</th><th scope="col">Updated</th></tr></thead>
<tbody>${shown.map(
        (o) => html`<tr${o.stale ? html` class="is-stale"` : ''}>
<th scope="row"><span class="kind">${o.kind}</span> <span class="mono">${o.namespace}/${o.name}</span>${o.stale ? html` <span class="muted">(stale: its connection closed)</span>` : ''}</th>
<td>${readyBadge(o)}</td>
<td class="mono">${o.revision ?? html`<span class="muted">none</span>`}</td>
<td>${o.reason ?? ''}${o.message ? html`<div class="message">${o.message}</div>` : ''}</td>
<td>${time(o.updatedAt ?? o.reportedAt)}</td>
</tr>`,
      )}</tbody>
</table>
</div>`
}
</section>`;
}
