/** Events: the overview's rows and the event page with its timeline. */
import { commitOf, refOf, type StoredEvent } from '../../events/event.js';
import type { DeliveryView, DeploymentState, DeploymentView } from '../cluster-view.js';
import { duration, kindLabel, plural, refLabel, shortSha, utc } from '../format.js';
import { html, type Html } from '../html.js';
import { agentHref } from './agents.js';
import { badge, time, type Tone } from './parts.js';

/** An event as the page shows it: pushes, and artifact events (pipeline, registry). */
export type EventView = StoredEvent & { deliveredCount: number; userUsername?: string | null };

export const eventHref = (id: string) => `/ui/events/${encodeURIComponent(id)}`;

const STATE_TONE: Record<DeploymentState, Tone> = {
  pending: 'info',
  fetched: 'info',
  applied: 'ok',
  failed: 'bad',
  superseded: 'muted',
  timed_out: 'warn',
};
const STATE_WORDS: Record<DeploymentState, string> = {
  pending: 'pending',
  fetched: 'fetched',
  applied: 'applied',
  failed: 'failed',
  superseded: 'superseded',
  timed_out: 'timed out',
};
export const stateBadge = (state: DeploymentState): Html => badge(STATE_TONE[state], STATE_WORDS[state]);

export function refCell(ref: string): Html {
  const r = refLabel(ref);
  return html`<span class="mono" title="${ref}">${r.name}</span>${r.tag ? html` <span class="tag">tag</span>` : ''}`;
}

/** The event page's words for how many agents it reached. */
export const deliveredLong = (n: number): string => (n === 0 ? 'No agent has received it yet.' : `Delivered to ${plural(n, 'agent')}.`);

export function deliveredText(n: number): string {
  return n === 0 ? 'none yet' : plural(n, 'agent');
}

/** The deployments cell: how many reached each state, worst first. */
export function deploymentsCell(deployments: DeploymentView[] | undefined): Html {
  if (!deployments || deployments.length === 0) return html`<span class="muted">none</span>`;
  const order: DeploymentState[] = ['failed', 'timed_out', 'pending', 'fetched', 'applied', 'superseded'];
  const counts = new Map<DeploymentState, number>();
  for (const d of deployments) counts.set(d.state, (counts.get(d.state) ?? 0) + 1);
  return html`<span class="states">${order
    .filter((s) => counts.has(s))
    .map((s) => html`${badge(STATE_TONE[s], `${counts.get(s)} ${STATE_WORDS[s]}`)} `)}</span>`;
}

/** The slowest outcome so far: what "how long did this push take to land" means when there are several. */
export function latencyCell(deployments: DeploymentView[] | undefined): Html {
  const done = (deployments ?? []).filter((d) => d.latencyMs !== null);
  if (done.length === 0) return html`<span class="muted">–</span>`;
  return html`${duration(Math.max(...done.map((d) => d.latencyMs!)))}`;
}

export function eventRow(e: EventView, deployments: DeploymentView[] | undefined): Html {
  return html`<tr data-event-id="${e.id}">
<th scope="row"><a href="${eventHref(e.id)}">#${e.id}</a></th>
<td class="path">${e.projectPath}</td>
<td>${refCell(refOf(e))}</td>
<td><code title="${commitOf(e)}">${shortSha(commitOf(e))}</code></td>
<td>${kindLabel(e)}</td>
<td>${time(e.receivedAt)}</td>
<td class="num" data-cell="delivered">${deliveredText(e.deliveredCount)}</td>
<td data-cell="deployments">${deploymentsCell(deployments)}</td><td class="num" data-cell="latency">${latencyCell(deployments)}</td>
</tr>`;
}

/** The events table's columns (an empty table's one cell spans them). */
const EVENT_COLUMNS = 9;

export function eventsEmptyRow(searching: boolean): Html {
  return html`<tr class="empty"><td colspan="${EVENT_COLUMNS}">${
    searching
      ? 'No event matches this search.'
      : html`No events yet. Point a GitLab webhook at <code>/webhooks/gitlab</code> and push.`
  }</td></tr>`;
}

export function eventsTable(
  rows: EventView[],
  o: { searching: boolean; caption: string; deployments: Map<string, DeploymentView[]> },
): Html {
  return html`<div class="table-wrap" role="region" aria-labelledby="events-caption" tabindex="0">
<table id="events-table">
<caption id="events-caption">${o.caption}</caption>
<thead><tr><th scope="col">Event</th><th scope="col">Project</th><th scope="col">Ref</th><th scope="col">Commit</th><th scope="col">Kind</th><th scope="col">Received</th><th scope="col" class="num">Delivered to</th><th scope="col">Deployments</th><th scope="col" class="num">Latency</th></tr></thead>
<tbody id="events-rows" aria-live="polite" aria-relevant="additions">${
    rows.length
      ? rows.map((e) => eventRow(e, o.deployments.get(e.id)))
      : eventsEmptyRow(o.searching)
  }</tbody>
</table>
</div>`;
}

function step(label: string, at: string | undefined, detail: Html | string, tone: Tone = 'ok'): Html {
  return html`<li class="step step-${tone}">
<span class="step-label">${label}</span>
${at ? html`<time datetime="${at}" class="step-time">${utc(at)}</time>` : ''}
<div class="step-detail">${detail}</div>
</li>`;
}

/** What an open deployment waits for; for an outcome, what Flux said. */
function deploymentDetail(d: DeploymentView): Html | string {
  const source = d.source ? `${d.source.kind} ${d.source.namespace}/${d.source.name}` : 'its source';
  if (d.state === 'pending') return html`<p class="muted">Waiting for ${source} to fetch the commit.</p>`;
  if (d.state === 'fetched') return html`<p class="muted">${source} has it; waiting for ${d.object.kind} ${d.object.namespace}/${d.object.name} to apply it.</p>`;
  const said = [d.reason, d.message].filter(Boolean).join(': ');
  return said ? html`<p>${said}</p>` : '';
}

/** The event page's live part: deliveries and deployments, after the fixed "received" step. */
export function eventTimeline(e: EventView, deliveries: DeliveryView[], deployments: DeploymentView[]): Html {
  const delivered =
    deliveries.length > 0
      ? html`<ul class="plain">${deliveries.map(
          (d) => html`<li><a href="${agentHref(d.agent.id)}">${d.agent.name}</a> at <time datetime="${d.at}">${utc(d.at)}</time></li>`,
        )}</ul>`
      : html`<span data-cell="delivered">${deliveredLong(e.deliveredCount)}</span>`;
  return html`<div id="event-live" data-event-id="${e.id}">
<ol class="timeline">
${step('Received', e.receivedAt, html`From GitLab, stored in the event log as #${e.id}.`)}
${step(
  deliveries.length > 0 ? `Delivered to ${plural(deliveries.length, 'agent')}` : 'Delivered',
  deliveries[0]?.at,
  delivered,
  deliveries.length > 0 || e.deliveredCount > 0 ? 'ok' : 'muted',
)}
${deployments.map((d) =>
  step(
    `${d.object.kind} ${d.object.namespace}/${d.object.name}`,
    d.at,
    html`<p><a href="${agentHref(d.agent.id)}">${d.agent.name}</a>: ${stateBadge(d.state)}${
      d.latencyMs !== null ? html` after ${duration(d.latencyMs)}` : ''
    }${d.revision ? html` · revision <span class="mono">${d.revision}</span>` : ''}</p>
${deploymentDetail(d)}
${
  // One step is the state above at the step's own time: listing it again says nothing.
  d.timeline.length > 1
    ? html`<ol class="substeps">${d.timeline.map((t) => html`<li>${stateBadge(t.state)} <time datetime="${t.at}">${utc(t.at)}</time></li>`)}</ol>`
    : ''
}`,
    STATE_TONE[d.state],
  ),
)}
${
  deployments.length === 0
    ? step('Deployments', undefined, 'No deployment yet: no agent has reported a Kustomization or HelmRelease on a source this push matches.', 'muted')
    : ''
}
</ol>
</div>`;
}

/** What differs between kinds: a push's ref and commits, a pipeline's, a registry push's repository and tag. */
function artifactFacts(e: EventView): Html {
  if (e.kind !== 'artifact') {
    return html`<dt>Ref</dt><dd>${refCell(e.ref)}</dd>
<dt>Commit</dt><dd><code class="wrap">${commitOf(e)}</code></dd>
<dt>Before</dt><dd>${e.before === null ? html`<span class="muted">not given by GitLab</span>` : html`<code class="wrap">${e.before}</code>`}</dd>`;
  }
  if (e.source === 'pipeline') {
    return html`<dt>Ref</dt><dd>${refCell(e.ref)}</dd>
<dt>Commit</dt><dd><code class="wrap">${e.sha}</code></dd>
<dt>Pipeline</dt><dd>#${String(e.pipelineId)}</dd>`;
  }
  return html`<dt>Repository</dt><dd><span class="path">${e.repository}</span></dd>
<dt>Tag</dt><dd><span class="mono">${e.tag}</span></dd>
<dt>Digest</dt><dd>${e.digest === null ? html`<span class="muted">not given</span>` : html`<code class="wrap">${e.digest}</code>`}</dd>`;
}

export function eventFacts(e: EventView): Html {
  return html`<dl class="facts">
<dt>Project</dt><dd><span class="path">${e.projectPath}</span> <span class="muted">(id ${e.projectId})</span></dd>
<dt>Kind</dt><dd>${kindLabel(e)}</dd>
${artifactFacts(e)}
${e.userUsername ? html`<dt>Pushed by</dt><dd>${e.userUsername}</dd>` : ''}
<dt>Received</dt><dd>${time(e.receivedAt)} <span class="muted">(${utc(e.receivedAt)})</span></dd>
</dl>`;
}
