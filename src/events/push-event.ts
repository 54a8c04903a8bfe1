/** The event types moved to event.ts when the log began to hold artifacts; this keeps older imports working. */
export type { PushEvent, StoredEvent } from './event.js';
