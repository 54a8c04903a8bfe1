/** The way back: what agents report of their clusters, and what became of each event. */
import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import { z } from 'zod';
import { isUuid } from '../../agents/agent-store.js';
import { errorResponses, notFound } from '../../http/errors.js';
import { EventId } from '../../protocol/kasgate-v1.js';
import { LoggedPush, LoggedPipelineArtifact, LoggedRegistryArtifact } from './observe.js';
import { AgentIdParams } from './schemas.js';

const security = [{ adminToken: [] }];

const ObjectRef = z.object({ kind: z.string(), namespace: z.string(), name: z.string() });
const nullableText = z.string().nullable();

const ClusterObject = z
  .object({
    kind: z.enum(['GitRepository', 'OCIRepository', 'Kustomization', 'HelmRelease']),
    namespace: z.string(),
    name: z.string(),
    ready: z.enum(['True', 'False', 'Unknown']).meta({ description: "The Ready condition's status" }),
    reason: nullableText,
    message: nullableText,
    revision: nullableText.meta({ description: 'Sources: status.artifact.revision; Kustomizations: status.lastAppliedRevision' }),
    originRevision: nullableText.meta({ description: "Sources: the artifact's org.opencontainers.image.revision" }),
    originSource: nullableText.meta({ description: "OCI sources: the artifact's org.opencontainers.image.source" }),
    attemptedRevision: nullableText.meta({ description: 'Kustomizations and HelmReleases: the last attempted revision' }),
    sourceRef: ObjectRef.nullable(),
    url: nullableText.meta({ description: 'Sources: spec.url' }),
    project: nullableText.meta({ description: 'Sources: the GitLab project path the agent matched it to' }),
    ref: z.record(z.string(), z.string()).nullable().meta({ description: 'Sources: spec.ref as Flux has it' }),
    suspended: z.boolean(),
    updatedAt: nullableText.meta({ description: "The Ready condition's last transition" }),
    reportedAt: z.string().meta({ description: 'When the gateway last received this object' }),
    stale: z.boolean().meta({ description: 'No live connection of the agent reports it: the last word of a connection that closed' }),
  })
  .meta({ id: 'ClusterObject' });

const DeploymentState = z.enum(['pending', 'fetched', 'applied', 'failed', 'superseded', 'timed_out']);
const AgentRef = z.object({ id: z.string(), name: z.string() });

const Deployment = z
  .object({
    agent: AgentRef,
    object: ObjectRef.meta({ description: 'The Kustomization or HelmRelease' }),
    source: ObjectRef.meta({ description: 'The source it goes through' }),
    state: DeploymentState.meta({ description: 'The latest state' }),
    revision: nullableText.meta({ description: 'The revision seen with the latest state' }),
    at: z.string().meta({ description: 'When the latest state was reached' }),
    latencyMs: z.number().nullable().meta({ description: "From the webhook's arrival to the outcome; null while pending or fetched" }),
    reason: nullableText.meta({ description: "Flux's Ready reason with the outcome" }),
    message: nullableText.meta({ description: "Flux's Ready message with the outcome, or why it was superseded or timed out" }),
    commitSha: nullableText.meta({ description: 'The commit its GitLab status is for' }),
    timeline: z.array(z.object({ state: DeploymentState, at: z.string() })).meta({ description: 'Every state reached, in order' }),
  })
  .meta({ id: 'Deployment' });

const eventOutcome = {
  deliveries: z.array(z.object({ agent: AgentRef, at: z.string().meta({ description: 'First delivery to a connection of the agent' }) })),
  deployments: z.array(Deployment),
};

const EventDetail = z
  .union([LoggedPush.extend(eventOutcome), LoggedPipelineArtifact.extend(eventOutcome), LoggedRegistryArtifact.extend(eventOutcome)])
  .meta({ id: 'EventDetail', description: 'An event (push or artifact) with its deliveries and deployments' });

export const deploymentRoutes: FastifyPluginAsyncZod = async (app) => {
  const { ctx } = app;

  app.get(
    '/agents/:id/objects',
    {
      schema: {
        tags: ['observe'],
        summary: "The agent's Flux objects as its connections last reported them",
        description:
          'The union over the agent\'s connections; objects no live connection reports are marked `stale`. ' +
          '`truncated`: the agent has more objects than it may report, or the gateway refused some (KASGATE_MAX_STATUS_OBJECTS).',
        security,
        params: AgentIdParams,
        response: {
          200: z.object({ objects: z.array(ClusterObject), truncated: z.boolean() }).describe("The agent's Flux objects"),
          ...errorResponses(401, 404),
        },
      },
    },
    async (request) => {
      const { id } = request.params;
      if (!isUuid(id) || !(await ctx.agents.get(id))) throw notFound('agent');
      return ctx.cluster.objectsOf(id);
    },
  );

  app.get(
    '/events/:id',
    {
      schema: {
        tags: ['observe'],
        summary: 'One event: the agents it was delivered to, and its deployments with their timelines',
        security,
        params: z.object({ id: EventId }),
        response: { 200: EventDetail.describe('The event, its deliveries and its deployments'), ...errorResponses(400, 401, 404) },
      },
    },
    async (request) => {
      const event = await ctx.events.get(request.params.id);
      if (!event) throw notFound('event');
      return { ...event, ...(await ctx.deployments.forEvent(event.id)) };
    },
  );
};
