/** The bodies of the overview, agent and event pages, and of error pages. */
import type { Agent, Grants } from '../../agents/agent-store.js';
import type { TokenInfo } from '../../agents/token-store.js';
import type { AgentObjects, DeliveryView, DeploymentView } from '../cluster-view.js';
import { plural } from '../format.js';
import { html, type Html } from '../html.js';
import { agentLive, agentsTable, configFileFacts, deployTokensSection, grantsSection, objectsSection, tokensSection, type AgentStateView } from './agents.js';
import type { CredentialRow } from '../../credentials/credential-store.js';
import { eventFacts, eventsTable, eventTimeline, type EventView } from './events.js';
import { overviewHref, pager, searchBox } from './parts.js';

export interface OverviewQuery {
  agent?: string;
  project?: string;
  agents_after?: string;
  agents_before?: string;
  events_before?: string;
  events_after?: string;
}

export interface OverviewView {
  query: OverviewQuery;
  agents: { rows: AgentStateView[]; total: number; hasPrevious: boolean; hasNext: boolean };
  events: { rows: EventView[]; hasPrevious: boolean; hasNext: boolean };
  deployments: Map<string, DeploymentView[]>;
  presenceUnavailable: boolean;
}

export function overviewBody(v: OverviewView): Html {
  const q = v.query;
  const agentsKeep = { project: q.project, events_before: q.events_before, events_after: q.events_after };
  const eventsKeep = { agent: q.agent, agents_after: q.agents_after, agents_before: q.agents_before };
  const firstAgent = v.agents.rows[0]?.name;
  const lastAgent = v.agents.rows.at(-1)?.name;
  const firstEvent = v.events.rows[0]?.id;
  const lastEvent = v.events.rows.at(-1)?.id;
  const connected = v.agents.rows.filter((a) => a.connections.length > 0).length;
  return html`<h1>Status</h1>
${v.presenceUnavailable ? html`<p class="alert" role="alert">Presence (Redis) is unavailable: connection states are not known right now.</p>` : ''}
<section aria-labelledby="agents-h" class="block">
<div class="block-head">
<h2 id="agents-h">Agents</h2>
<p class="count">${q.agent ? `${plural(v.agents.total, 'agent')} match` : plural(v.agents.total, 'agent')}${
    v.agents.rows.length ? html` · <strong id="connected-count">${connected}</strong> of the ${v.agents.rows.length} shown connected` : ''
  }</p>
</div>
${searchBox({ id: 'agent-search', name: 'agent', label: 'Search agents by name', value: q.agent, keep: agentsKeep, clearHref: overviewHref(agentsKeep) })}
${agentsTable(v.agents.rows, !!q.agent, q.agent ? `Agents whose name contains “${q.agent}”, by name` : 'Agents by name, with their live connections')}
${pager('Agent pages', [
  { label: '← Previous agents', rel: 'prev', href: v.agents.hasPrevious && firstAgent ? overviewHref({ ...agentsKeep, agent: q.agent, agents_before: firstAgent }) : undefined },
  { label: 'Next agents →', rel: 'next', href: v.agents.hasNext && lastAgent ? overviewHref({ ...agentsKeep, agent: q.agent, agents_after: lastAgent }) : undefined },
])}
</section>
<section aria-labelledby="events-h" class="block">
<div class="block-head">
<h2 id="events-h">Recent events</h2>
<p class="count">${v.events.hasPrevious ? 'Older events' : 'Newest first'}${v.events.hasPrevious ? '' : html`<span class="live-hint">; new ones appear here as they come</span>`}</p>
</div>
${searchBox({ id: 'project-search', name: 'project', label: 'Search events by project path', value: q.project, keep: eventsKeep, clearHref: overviewHref(eventsKeep) })}
${eventsTable(v.events.rows, {
  searching: !!q.project,
  caption: q.project ? `Events of projects whose path contains “${q.project}”, newest first` : 'Push and artifact events, newest first',
  deployments: v.deployments,
})}
${pager('Event pages', [
  { label: '← Newer events', rel: 'prev', href: v.events.hasPrevious && firstEvent ? overviewHref({ ...eventsKeep, project: q.project, events_after: firstEvent }) : undefined },
  { label: 'Older events →', rel: 'next', href: v.events.hasNext && lastEvent ? overviewHref({ ...eventsKeep, project: q.project, events_before: lastEvent }) : undefined },
])}
</section>`;
}

export interface AgentPageView {
  agent: { id: string; name: string; configProject: string; createdAt: string } & Partial<Pick<Agent, 'configSource' | 'configError'>>;
  state: AgentStateView;
  grants: Grants;
  tokens: TokenInfo[];
  objects: AgentObjects;
  deployTokens: { credentials: CredentialRow[]; error: string | null };
  /** Whether the gateway reads config files (KASGATE_GITLAB_URL and KASGATE_GITLAB_TOKEN set). */
  gitlabApi: boolean;
}

export function agentBody(v: AgentPageView): Html {
  return html`<nav class="crumbs" aria-label="Breadcrumb"><a href="/ui">Overview</a> › <span aria-current="page">Agent ${v.agent.name}</span></nav>
<h1>Agent <span class="mono">${v.agent.name}</span></h1>
${v.state.presenceUnavailable ? html`<p class="alert" role="alert">Presence (Redis) is unavailable: its connections are not known right now.</p>` : ''}
${agentLive(v.state)}
<section aria-labelledby="about-h">
<h2 id="about-h">About</h2>
<dl class="facts">
<dt>Configuration project</dt><dd><code>${v.agent.configProject}</code></dd>
${configFileFacts(v.agent, v.gitlabApi)}
<dt>Agent id</dt><dd><code class="wrap">${v.agent.id}</code></dd>
<dt>Registered</dt><dd><time datetime="${v.agent.createdAt}">${v.agent.createdAt.slice(0, 10)}</time></dd>
</dl>
</section>
${objectsSection(v.agent.id, v.objects)}
${grantsSection(v.agent.configProject, v.grants)}
${deployTokensSection(v.deployTokens.credentials, v.deployTokens.error)}
${tokensSection(v.tokens)}`;
}

export interface EventPageView {
  event: EventView;
  deliveries: DeliveryView[];
  deployments: DeploymentView[];
}

export function eventBody(v: EventPageView): Html {
  return html`<nav class="crumbs" aria-label="Breadcrumb"><a href="/ui">Overview</a> › <span aria-current="page">Event #${v.event.id}</span></nav>
<h1>Event #${v.event.id}</h1>
${eventFacts(v.event)}
<section aria-labelledby="timeline-h">
<h2 id="timeline-h">Timeline</h2>
${eventTimeline(v.event, v.deliveries, v.deployments)}
</section>`;
}

export function errorBody(o: { title: string; message: string; signedIn: boolean }): Html {
  return html`<h1>${o.title}</h1>
<p class="alert" role="alert">${o.message}</p>
<p>${o.signedIn ? html`<a href="/ui">Back to the overview</a>` : html`<a href="/ui/login">Sign in</a>`}</p>`;
}
