import type { Component } from '../lib/component.ts';
import type { NormalizedEvent } from '../lib/event.ts';

/** Handles one batch of events; resolving means the batch is done with (committed, for a durable one). */
export type BatchHandler = (events: NormalizedEvent[]) => Promise<void>;

/**
 * The event log between intake and its consumers. `publish` resolves only once the batch is durable:
 * for the in-process bus, once every durable subscriber (the store) has committed it.
 */
export interface Bus extends Component {
  /** Rejects with OverloadError when the bus is full: the caller pushes back on its client. */
  publish(events: NormalizedEvent[]): Promise<void>;
  /**
   * Adds a consumer. In-process bus: a durable one commits before publishers are answered (the store);
   * the others (detection) receive each batch after it is committed, one batch at a time, in order (with
   * `bus.detection_overlap`, while the durable ones commit the next batch, at most one batch ahead of them).
   * JetStream bus: a durable consumer survives restarts and is shared by every node subscribing by its name.
   * `first` (in-process bus): runs before the consumers subscribed earlier, e.g. detection recording where it
   * stands before the store commits a batch.
   */
  subscribe(name: string, handler: BatchHandler, opts?: { durable?: boolean; first?: boolean }): void;
  /** Events accepted and not yet committed. */
  pending(): number;
}

export { busConfigSchema, type BusConfig } from './config.ts';
export {
  type BusSite,
  createJetStreamBus,
  type EventStream,
  type JetStreamBus,
  type JetStreamConnection,
  type SourceLag,
} from './jetstream/index.ts';
export { createMemoryBus } from './memory.ts';
export { streamNames } from './jetstream/names.ts';
