/**
 * The test oracle for "who may receive what": DESIGN.md's access rule, written out again
 * independently of src/agents/access-rule.ts so that a bug there cannot hide in both.
 */
export interface AgentRights {
  configProject: string;
  projects?: string[];
  groups?: string[];
  /** What the agent subscribes to. */
  subscribed: string[];
}

export interface LoggedPush {
  id: string;
  path: string;
  visibility: number | null;
}

const lower = (s: string) => s.toLowerCase();

export function entitled(agent: AgentRights, event: LoggedPush): boolean {
  const path = lower(event.path);
  if (!agent.subscribed.some((p) => lower(p) === path)) return false;
  if (event.visibility === 20) return true;
  if (path === lower(agent.configProject)) return true;
  if ((agent.projects ?? []).some((p) => lower(p) === path)) return true;
  return (agent.groups ?? []).some((g) => path.startsWith(`${lower(g)}/`));
}

/** Ids of the events the agent is entitled to, after `afterId`, in id order. */
export function expectedIds(agent: AgentRights, events: LoggedPush[], afterId = '0'): string[] {
  return events
    .filter((e) => BigInt(e.id) > BigInt(afterId) && entitled(agent, e))
    .sort((a, b) => (BigInt(a.id) < BigInt(b.id) ? -1 : 1))
    .map((e) => e.id);
}
