import type { Registry } from 'prom-client';
import type { Component } from '../../lib/component.ts';
import { InputError, OverloadError, VigilError } from '../../lib/errors.ts';
import type { Logsource, NormalizedEvent } from '../../lib/event.ts';
import { createTurnTaker } from '../../lib/turns.ts';
import { type createNormalizer, NORMALIZER_DEFAULTS, notAnEvent, splitJsonYielding } from '../../parse/index.ts';
import { intakeMetrics, type RejectReason } from '../metrics.ts';
import type { HttpIntakeConfig } from './config.ts';
import type { IdempotencyKeys } from './idempotency.ts';
import { decodeCollected } from './collected.ts';
import {
  claimsReservedLogsource,
  isReservedLogsource,
  RESERVED_LOGSOURCE_MESSAGE,
  ReservedLogsourceError,
} from '../reserved.ts';

/** What an ingest request answers: accepted count and, per rejected element, its line and reason. */
export interface IngestResult {
  accepted: number;
  /** The first {@link MAX_REJECTION_DETAILS} rejected elements. */
  rejected: { line: number; error: string }[];
  /** Rejected elements past those listed (absent when none): the answer stays small whatever the body. */
  rejected_omitted?: number;
}

/** Rejected elements listed in an answer; a body of a million bad lines answers with a count, not a list. */
export const MAX_REJECTION_DETAILS = 1000;

export interface IngestRequest {
  body: string;
  tenant: string;
  logsource?: Logsource;
  /** The request's Idempotency-Key: a retry with the same key and body stores nothing twice. */
  idempotencyKey?: string;
}

/** A batch a collector forwards: NDJSON of {@link CollectedEvent}, for the tenant of the collector's key. */
export interface CollectedRequest {
  body: string;
  tenant: string;
}

/** The HTTP/JSON intake: NDJSON or a JSON array in, normalized events published, answered after commit. */
export interface HttpIntake extends Component {
  ingest(req: IngestRequest): Promise<IngestResult>;
  /**
   * Stores events a collector already normalized, with the ids it gave them (only for keys with the
   * `collector` scope: the route checks). Answers after commit, like `ingest`.
   */
  ingestCollected(req: CollectedRequest): Promise<IngestResult>;
}

export { type HttpIntakeConfig, httpIntakeConfigSchema } from './config.ts';
export { createIdempotencyKeys, type IdempotencyKeys } from './idempotency.ts';
export { COLLECTED_PATH, type CollectedEvent, decodeCollected, encodeCollected } from './collected.ts';

const SOURCE = 'http';
/** The metrics label of events forwarded by collectors (each event keeps the `source` its collector gave). */
const COLLECTED_SOURCE = 'collector';
/**
 * A collected line holds the event's text and its parsed fields besides: it may be this many times
 * `max_event_bytes`, while `raw` alone is bounded by `max_event_bytes`.
 */
const COLLECTED_LINE_FACTOR = 4;

/** Creates the HTTP intake; it publishes through `publish`, which resolves once the events are durable. */
export function createHttpIntake(
  config: HttpIntakeConfig,
  deps: {
    normalizer: ReturnType<typeof createNormalizer>;
    publish: (events: NormalizedEvent[]) => Promise<void>;
    metrics: Registry;
    keys: IdempotencyKeys;
    /**
     * Whether this node takes intake (false during cluster maintenance): when false a request is refused
     * with 503 `draining`, which sends the client (or its balancer) to another node. Default: always.
     */
    admitting?: () => boolean;
    /** The normalizer's `parse.max_fields`: a collected event may have that many, plus the ECS fields. */
    parseMaxFields?: number;
  },
): HttpIntake {
  const m = intakeMetrics(deps.metrics);
  let running = false;

  return {
    name: 'intake-http',
    async start() {
      await deps.keys.start();
      running = true;
    },
    async stop() {
      running = false;
      await deps.keys.stop();
    },
    health: () => (running ? { ok: true } : { ok: false, detail: 'stopped' }),
    async ingest(req) {
      // Checked before anything is read or recorded (the Idempotency-Key included): a draining node spends
      // nothing on a body it will not take.
      if (deps.admitting && !deps.admitting()) {
        const lines = countLines(req.body);
        m.received.inc({ source: SOURCE }, lines);
        m.rejected.inc({ source: SOURCE, reason: 'draining' }, lines);
        throw new OverloadError('this node is in maintenance; send to another node', 1, 503, 'draining');
      }
      // Vigil's own health logsource: the whole request is refused, each of its events counted.
      if (isReservedLogsource(req.logsource)) {
        const lines = countLines(req.body);
        m.received.inc({ source: SOURCE }, lines);
        m.rejected.inc({ source: SOURCE, reason: 'reserved_logsource' }, lines);
        throw new ReservedLogsourceError();
      }
      if (req.idempotencyKey !== undefined && !/^[\x21-\x7e]{1,255}$/.test(req.idempotencyKey)) {
        throw new InputError('bad_idempotency_key', 'Idempotency-Key must be 1 to 255 printable ASCII characters');
      }
      const receivedAt =
        req.idempotencyKey === undefined
          ? Date.now()
          : await deps.keys.firstReceipt(req.tenant, req.idempotencyKey, Date.now());
      const events: NormalizedEvent[] = [];
      const refused: IngestResult['rejected'] = [];
      let omitted = 0;
      const refuse = (line: number, reason: RejectReason, error: string) => {
        if (refused.length < MAX_REJECTION_DETAILS) refused.push({ line, error });
        else omitted++;
        m.rejected.inc({ source: SOURCE, reason });
      };
      // One element past the limit is enough to refuse the request: the rest of the body is never split.
      const elements = await splitJsonYielding(req.body, config.max_events_per_request + 1);
      if (elements.length > config.max_events_per_request) {
        // received = accepted + rejected: the refused element is counted on both sides.
        m.received.inc({ source: SOURCE });
        m.rejected.inc({ source: SOURCE, reason: 'too_many_events' });
        throw new VigilError(
          'too_many_events',
          `more than ${config.max_events_per_request} events in one request (ingest.max_events_per_request); nothing was stored: send them in smaller requests`,
          { status: 413 },
        );
      }
      // 100,000 events of 570 B took 1.3-2.5 s in one synchronous loop, stalling every other request
      // (health probes and searches included) that long: the loop turns every few milliseconds instead.
      const turns = createTurnTaker();
      let index = 0;
      for (const element of elements) {
        if (turns.due()) await turns.take();
        index++;
        m.received.inc({ source: SOURCE });
        if ('error' in element) {
          refuse(element.line, 'malformed_json', element.error);
          continue;
        }
        if (Buffer.byteLength(element.raw) > config.max_event_bytes) {
          refuse(element.line, 'oversize', `event is larger than ${config.max_event_bytes} bytes`);
          continue;
        }
        // Checked here, not by the normalizer's throw: 95,000 lines `1` took 2.5 s of thrown errors.
        const problem = notAnEvent(element.value);
        if (problem !== undefined) {
          refuse(element.line, 'invalid_event', problem);
          continue;
        }
        let event: NormalizedEvent;
        try {
          event = deps.normalizer.fromJson(element.value, element.raw, {
            source: SOURCE,
            receivedAt,
            tenant: req.tenant,
            logsource: req.logsource,
            idSeed: req.idempotencyKey === undefined ? undefined : `${req.idempotencyKey}:${index}`,
          });
        } catch (err) {
          refuse(element.line, 'invalid_event', (err as Error).message);
          continue;
        }
        if (claimsReservedLogsource(event)) {
          refuse(element.line, 'reserved_logsource', RESERVED_LOGSOURCE_MESSAGE);
          continue;
        }
        events.push(event);
      }
      if (index === 0) {
        m.rejected.inc({ source: SOURCE, reason: 'empty' });
        throw new InputError('empty_body', 'the request has no events: send NDJSON lines or a JSON array');
      }
      try {
        await deps.publish(events);
      } catch (err) {
        m.rejected.inc(
          { source: SOURCE, reason: err instanceof OverloadError ? rejectReason(err) : 'publish_error' },
          events.length,
        );
        throw err;
      }
      m.accepted.inc({ source: SOURCE }, events.length);
      return { accepted: events.length, rejected: refused, ...(omitted > 0 ? { rejected_omitted: omitted } : {}) };
    },
    async ingestCollected(req) {
      if (deps.admitting && !deps.admitting()) {
        const lines = countLines(req.body);
        m.received.inc({ source: COLLECTED_SOURCE }, lines);
        m.rejected.inc({ source: COLLECTED_SOURCE, reason: 'draining' }, lines);
        throw new OverloadError('this node is in maintenance; send to another node', 1, 503, 'draining');
      }
      const limits = {
        maxRawBytes: config.max_event_bytes,
        maxFields: (deps.parseMaxFields ?? NORMALIZER_DEFAULTS.max_fields) + COLLECTED_ECS_FIELDS,
      };
      const events: NormalizedEvent[] = [];
      const refused: IngestResult['rejected'] = [];
      let omitted = 0;
      const refuse = (line: number, reason: RejectReason, error: string) => {
        if (refused.length < MAX_REJECTION_DETAILS) refused.push({ line, error });
        else omitted++;
        m.rejected.inc({ source: COLLECTED_SOURCE, reason });
      };
      const elements = await splitJsonYielding(req.body, config.max_events_per_request + 1);
      if (elements.length > config.max_events_per_request) {
        m.received.inc({ source: COLLECTED_SOURCE });
        m.rejected.inc({ source: COLLECTED_SOURCE, reason: 'too_many_events' });
        throw new VigilError(
          'too_many_events',
          `more than ${config.max_events_per_request} events in one request (ingest.max_events_per_request); nothing was stored: send them in smaller requests`,
          { status: 413 },
        );
      }
      const turns = createTurnTaker();
      let index = 0;
      for (const element of elements) {
        if (turns.due()) await turns.take();
        index++;
        m.received.inc({ source: COLLECTED_SOURCE });
        if ('error' in element) {
          refuse(element.line, 'malformed_json', element.error);
          continue;
        }
        if (Buffer.byteLength(element.raw) > COLLECTED_LINE_FACTOR * config.max_event_bytes) {
          refuse(
            element.line,
            'oversize',
            `collected event is larger than ${COLLECTED_LINE_FACTOR * config.max_event_bytes} bytes`,
          );
          continue;
        }
        const decoded = decodeCollected(element.value, req.tenant, limits);
        if ('error' in decoded) refuse(element.line, 'invalid_event', decoded.error);
        // A collector forwards what its sources sent: Vigil's own logsource is no more theirs than a client's.
        else if (claimsReservedLogsource(decoded.event))
          refuse(element.line, 'reserved_logsource', RESERVED_LOGSOURCE_MESSAGE);
        else events.push(decoded.event);
      }
      if (index === 0) {
        m.rejected.inc({ source: COLLECTED_SOURCE, reason: 'empty' });
        throw new InputError('empty_body', 'the request has no events: send NDJSON lines of collected events');
      }
      try {
        await deps.publish(events);
      } catch (err) {
        m.rejected.inc(
          { source: COLLECTED_SOURCE, reason: err instanceof OverloadError ? rejectReason(err) : 'publish_error' },
          events.length,
        );
        throw err;
      }
      m.accepted.inc({ source: COLLECTED_SOURCE }, events.length);
      return { accepted: events.length, rejected: refused, ...(omitted > 0 ? { rejected_omitted: omitted } : {}) };
    },
  };
}

/** Fields a collected event may have past `parse.max_fields`: the ECS fields the normalizer adds. */
const COLLECTED_ECS_FIELDS = 256;

/**
 * Non-blank lines of a body, without parsing it: what a draining node counts as refused (NDJSON has one
 * event a line; a JSON array counts as its lines).
 */
function countLines(body: string): number {
  let count = 0;
  let start = 0;
  while (start < body.length) {
    let end = body.indexOf('\n', start);
    if (end < 0) end = body.length;
    for (let i = start; i < end; i++) {
      const c = body.charCodeAt(i);
      if (c !== 0x20 && c !== 0x09 && c !== 0x0d) {
        count++;
        break;
      }
    }
    start = end + 1;
  }
  return count;
}

/** A node in maintenance refuses with code `draining`; other overloads are `overloaded`. */
function rejectReason(err: OverloadError): 'draining' | 'overloaded' {
  return err.code === 'draining' ? 'draining' : 'overloaded';
}
