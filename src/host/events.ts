/**
 * The host's event stream: VM state changes, settings changes and policy actions, each with its reason. The
 * API serves it as Server-Sent Events (GET /events) and `typevisor events` prints it; the daemon logs every
 * event. A bounded buffer of recent events lets a new subscriber see what just happened.
 */
export interface EventBase {
  /** Increasing per daemon run; SSE clients resume with Last-Event-ID. */
  id: number;
  time: string;
  /** Why it happened, for a person. */
  reason: string;
}

export type HostEvent = EventBase &
  (
    | { type: 'vm-state'; vm: string; state: string; previous: string }
    | { type: 'vm-created'; vm: string }
    | { type: 'vm-deleted'; vm: string }
    /** Settings changed by a user (typevisor set / PATCH), with the new values. */
    | { type: 'settings'; vm: string; changes: Record<string, unknown> }
    /** An action a policy took on its own (burst granted or taken back, ...). */
    | { type: 'policy'; vm: string; policy: string; action: string; values: Record<string, unknown> }
  );

export type HostEventType = HostEvent['type'];
/** An event before the bus numbers and stamps it. */
export type NewHostEvent = HostEvent extends infer E ? (E extends HostEvent ? Omit<E, 'id' | 'time'> : never) : never;

export type EventListener = (e: HostEvent) => void;

export class EventBus {
  private nextId = 1;
  private readonly recent: HostEvent[] = [];
  private readonly listeners = new Set<EventListener>();

  constructor(private readonly keep = 1000) {}

  emit(e: NewHostEvent): HostEvent {
    const event = { ...e, id: this.nextId++, time: new Date().toISOString() } as HostEvent;
    this.recent.push(event);
    if (this.recent.length > this.keep) this.recent.shift();
    for (const l of this.listeners) {
      try {
        l(event);
      } catch {
        /* a failing listener must not stop the others */
      }
    }
    return event;
  }

  /** Events after `afterId` (all kept ones by default), oldest first. */
  since(afterId = 0): HostEvent[] {
    return this.recent.filter((e) => e.id > afterId);
  }

  subscribe(l: EventListener): () => void {
    this.listeners.add(l);
    return () => this.listeners.delete(l);
  }
}
