import type { Registry } from 'prom-client';
import { type BodyBytes, bodyText } from '../../lib/body-bytes.ts';
import type { Component } from '../../lib/component.ts';
import { InputError, OverloadError, VigilError } from '../../lib/errors.ts';
import type { Logsource, NormalizedEvent } from '../../lib/event.ts';
import { createTurnTaker } from '../../lib/turns.ts';
import { type Logger, silentLogger } from '../../lib/logger.ts';
import {
  type createNormalizer,
  NORMALIZER_DEFAULTS,
  type ParseConfig,
  parseConfigSchema,
  splitJsonBytes,
  splitJsonYielding,
} from '../../parse/index.ts';
import { attachRows } from '../../store/row-binary.ts';
import { intakeMetrics, type RejectReason } from '../metrics.ts';
import type { HttpIntakeConfig } from './config.ts';
import type { IdempotencyKeys } from './idempotency.ts';
import { decodeCollected } from './collected.ts';
import { MAX_REJECTION_DETAILS, type PrepareContext, prepareOnLoop } from './prepare.ts';
import { createPreparePool, type PrepareResult } from './prepare-pool.ts';
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

export { MAX_REJECTION_DETAILS } from './prepare.ts';

export interface IngestRequest {
  /** The body as text, or as its bytes (the ingest route's: split from the bytes, see src/parse/json-bytes.ts). */
  body: string | BodyBytes;
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
    /** The normalizer's settings, for the intake threads (`ingest.threads`); the defaults when absent. */
    parse?: ParseConfig;
    /**
     * Whether the intake threads build the store's rows too: true when the events go to the store as they
     * are (the in-process bus); on JetStream the store's rows are built from the stream's copy.
     */
    buildRows?: boolean;
    logger?: Logger;
  },
): HttpIntake {
  const m = intakeMetrics(deps.metrics);
  let running = false;
  const pool =
    config.threads > 0
      ? createPreparePool(
          {
            threads: config.threads,
            parse: deps.parse ?? parseConfigSchema.parse({}),
            buildRows: deps.buildRows ?? false,
          },
          { metrics: deps.metrics, logger: deps.logger ?? silentLogger },
        )
      : undefined;

  /** Splits and normalizes a body on the event loop, turning it every few milliseconds. */
  const prepareHere = async (body: string | BodyBytes, ctx: PrepareContext): Promise<PrepareResult> => {
    // One element past the limit is enough to refuse the request: the rest of the body is never split.
    const max = config.max_events_per_request + 1;
    const elements = typeof body === 'string' ? await splitJsonYielding(body, max) : await splitJsonBytes(body, max);
    if (elements.length > config.max_events_per_request) return { tooMany: true };
    return { prepared: await prepareOnLoop(elements, ctx, deps.normalizer, config.max_event_bytes) };
  };

  return {
    name: 'intake-http',
    async start() {
      await deps.keys.start();
      pool?.start();
      running = true;
    },
    async stop(deadline) {
      running = false;
      // The requests in the threads are answered first (published or failed), then the threads stop.
      await pool?.stop(deadline);
      await deps.keys.stop();
    },
    health: () => (running ? (pool?.health() ?? { ok: true }) : { ok: false, detail: 'stopped' }),
    async ingest(req) {
      // Checked before anything is read or recorded (the Idempotency-Key included): a draining node spends
      // nothing on a body it will not take.
      if (deps.admitting && !deps.admitting()) {
        const lines = countLines(await textOf(req.body));
        m.received.inc({ source: SOURCE }, lines);
        m.rejected.inc({ source: SOURCE, reason: 'draining' }, lines);
        throw new OverloadError('this node is in maintenance; send to another node', 1, 503, 'draining');
      }
      // Vigil's own health logsource: the whole request is refused, each of its events counted.
      if (isReservedLogsource(req.logsource)) {
        const lines = countLines(await textOf(req.body));
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
      const ctx: PrepareContext = {
        tenant: req.tenant,
        logsource: req.logsource,
        receivedAt,
        idempotencyKey: req.idempotencyKey,
      };
      const prepared = pool
        ? await pool.prepare({
            body: await textOf(req.body),
            ctx,
            maxEvents: config.max_events_per_request,
            maxEventBytes: config.max_event_bytes,
          })
        : await prepareHere(req.body, ctx);
      if (prepared.tooMany) {
        // received = accepted + rejected: the refused element is counted on both sides.
        m.received.inc({ source: SOURCE });
        m.rejected.inc({ source: SOURCE, reason: 'too_many_events' });
        throw new VigilError(
          'too_many_events',
          `more than ${config.max_events_per_request} events in one request (ingest.max_events_per_request); nothing was stored: send them in smaller requests`,
          { status: 413 },
        );
      }
      const { events, refused, omitted, received, rejected } = prepared.prepared;
      if (prepared.rows && prepared.ends) attachRows(events, prepared.rows, prepared.ends);
      m.received.inc({ source: SOURCE }, received);
      for (const [reason, n] of Object.entries(rejected)) m.rejected.inc({ source: SOURCE, reason }, n);
      if (received === 0) {
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

/** A body as text: a body still in bytes is decoded (taking turns of the event loop). */
function textOf(body: string | BodyBytes): Promise<string> | string {
  return typeof body === 'string' ? body : bodyText(body);
}

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
