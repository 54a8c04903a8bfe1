/**
 * Local change notices for live views (the status page's server-sent events): which events'
 * deployments and which agents' objects this replica just changed. Changes made on other
 * replicas are not announced here; a view that must see them polls the stores as well.
 */
export interface ChangeFeed {
  /** Deployments or deliveries of these events changed; `deliveriesOnly`: no deployment did. */
  onEvents(listener: (eventIds: string[], deliveriesOnly: boolean) => void): () => void;
  /** This agent's reported objects changed. */
  onObjects(listener: (agentId: string) => void): () => void;
  eventsChanged(eventIds: Iterable<string>, deliveriesOnly?: boolean): void;
  objectsChanged(agentId: string): void;
}

export function createChangeFeed(): ChangeFeed {
  const eventListeners = new Set<(eventIds: string[], deliveriesOnly: boolean) => void>();
  const objectListeners = new Set<(agentId: string) => void>();
  const subscribe = <T>(set: Set<T>, listener: T) => {
    set.add(listener);
    return () => void set.delete(listener);
  };
  return {
    onEvents: (listener) => subscribe(eventListeners, listener),
    onObjects: (listener) => subscribe(objectListeners, listener),
    eventsChanged(eventIds, deliveriesOnly = false) {
      const ids = [...eventIds];
      if (ids.length === 0) return;
      for (const listener of eventListeners) listener(ids, deliveriesOnly);
    },
    objectsChanged(agentId) {
      for (const listener of objectListeners) listener(agentId);
    },
  };
}
