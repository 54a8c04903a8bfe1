/**
 * Local change notices for live views (the status page's server-sent events): which events'
 * deployments and which agents' objects this replica just changed. Changes made on other
 * replicas are not announced here; a view that must see them polls the stores as well.
 */
export interface ChangeFeed {
  /** Deployments (and maybe deliveries) of these events changed. */
  onEvents(listener: (eventIds: string[]) => void): () => void;
  /** Only deliveries of these events changed. */
  onDeliveries(listener: (eventIds: string[]) => void): () => void;
  /** This agent's reported objects changed. */
  onObjects(listener: (agentId: string) => void): () => void;
  eventsChanged(eventIds: Iterable<string>): void;
  deliveriesChanged(eventIds: Iterable<string>): void;
  objectsChanged(agentId: string): void;
}

export function createChangeFeed(): ChangeFeed {
  const eventListeners = new Set<(eventIds: string[]) => void>();
  const deliveryListeners = new Set<(eventIds: string[]) => void>();
  const objectListeners = new Set<(agentId: string) => void>();
  const subscribe = <T>(set: Set<T>, listener: T) => {
    set.add(listener);
    return () => void set.delete(listener);
  };
  return {
    onEvents: (listener) => subscribe(eventListeners, listener),
    onDeliveries: (listener) => subscribe(deliveryListeners, listener),
    onObjects: (listener) => subscribe(objectListeners, listener),
    eventsChanged(eventIds) {
      const ids = [...eventIds];
      if (ids.length === 0) return;
      for (const listener of eventListeners) listener(ids);
    },
    deliveriesChanged(eventIds) {
      const ids = [...eventIds];
      if (ids.length === 0) return;
      for (const listener of deliveryListeners) listener(ids);
    },
    objectsChanged(agentId) {
      for (const listener of objectListeners) listener(agentId);
    },
  };
}
