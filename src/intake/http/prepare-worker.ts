/**
 * An intake thread (see prepare-pool.ts): splits and normalizes the body of each ingest request it is sent,
 * builds the store's rows of its events, and answers with both; the rows travel without a copy.
 */
import { parentPort, workerData } from 'node:worker_threads';
import type { NormalizedEvent } from '../../lib/event.ts';
import { createNormalizer, type ParseConfig, splitJsonYielding } from '../../parse/index.ts';
import { eventsToRowBinaryWithEnds } from '../../store/row-binary.ts';
import { prepareElements } from './prepare.ts';
import type { PrepareAnswer, PrepareJob, PrepareNext, PrepareWorkerData } from './prepare-pool.ts';

const data = workerData as PrepareWorkerData;
const normalizer = createNormalizer(data.parse as ParseConfig);
const port = parentPort!;

/**
 * Events sent in one message at most, the next part when the event loop asks for it. The event loop reads the
 * messages waiting on a port in one go: 95,000 events of 570 B held it 1.6 s in one message on a loaded
 * machine, and as long in parts sent all at once; asked for one by one, it turns between them.
 */
const EVENTS_PER_MESSAGE = 500;

/** Answers whose events are being sent, by job id. */
const sending = new Map<number, { answer: PrepareAnswer; events: NormalizedEvent[]; next: number }>();

port.on('message', (msg: PrepareJob | PrepareNext) => {
  if ('next' in msg) {
    sendPart(msg.id);
    return;
  }
  const job = msg;
  run(job).then(
    (answer) => {
      const events = answer.prepared?.events ?? [];
      if (answer.prepared) answer.prepared.events = [];
      sending.set(job.id, { answer, events, next: 0 });
      sendPart(job.id);
    },
    (err: unknown) => port.postMessage({ id: job.id, error: err instanceof Error ? err.message : String(err) }),
  );
});

/** Sends the next part of an answer's events, or the rest of the answer when they are all sent. */
function sendPart(id: number): void {
  const s = sending.get(id);
  if (!s) return;
  if (s.next < s.events.length) {
    const part = s.events.slice(s.next, s.next + EVENTS_PER_MESSAGE);
    s.next += part.length;
    port.postMessage({ id, part } satisfies PrepareAnswer);
    return;
  }
  sending.delete(id);
  const rows = s.answer.rows;
  port.postMessage(s.answer, rows ? [rows.buffer as ArrayBuffer, s.answer.ends!.buffer as ArrayBuffer] : []);
}

async function run(job: PrepareJob): Promise<PrepareAnswer> {
  // One element past the limit is enough to refuse the request: the rest of the body is never split.
  const elements = await splitJsonYielding(job.body, job.maxEvents + 1, Number.POSITIVE_INFINITY);
  if (elements.length > job.maxEvents) return { id: job.id, tooMany: true };
  const prepared = await prepareElements(elements, job.ctx, normalizer, job.maxEventBytes);
  if (!data.buildRows || prepared.events.length === 0) return { id: job.id, prepared };
  const { rows, ends } = eventsToRowBinaryWithEnds(prepared.events);
  // Sent by moving its memory: a buffer of its own (Node hands out small ones from a shared pool, which
  // moving would take from this thread), exactly the rows' length.
  const own = new Uint8Array(new ArrayBuffer(rows.length));
  own.set(rows);
  return { id: job.id, prepared, rows: own, ends };
}
