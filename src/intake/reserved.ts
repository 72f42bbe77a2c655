import { InputError } from '../lib/errors.ts';
import type { FieldValue, Logsource, NormalizedEvent } from '../lib/event.ts';

/**
 * The Sigma product of Vigil's own health events (`product: vigil, service: health`, src/selfmon/). Only the
 * node emits it: no intake takes an event that declares it, so no tenant can forge a health event (and the
 * health rules of the starter set stay about Vigil). The whole product is reserved, not just its `health`
 * service, so that a declared `product: vigil` with another service or a category cannot reach those rules.
 */
export const RESERVED_PRODUCT = 'vigil';

/** The stored field that carries a declared product (src/store/rows.ts); a catch-up reads it back as the logsource. */
const STORED_PRODUCT_FIELD = 'vigil.logsource.product';

const isReserved = (v: FieldValue | undefined): boolean =>
  typeof v === 'string'
    ? v.trim().toLowerCase() === RESERVED_PRODUCT
    : Array.isArray(v) && v.some((x) => typeof x === 'string' && x.trim().toLowerCase() === RESERVED_PRODUCT);

/** Whether a declared logsource names the reserved product (compared as the Sigma engine compares: case aside). */
export function isReservedLogsource(ls: Logsource | undefined): boolean {
  return ls?.product !== undefined && isReserved(ls.product);
}

/**
 * Whether an event a client sent claims Vigil's product: by its declared logsource, or by a field spelling the
 * stored logsource column (`vigil.logsource.product`), which the detection catch-up after a restart and the
 * retro-hunts read back as the event's logsource.
 */
export function claimsReservedLogsource(event: NormalizedEvent): boolean {
  return isReservedLogsource(event.logsource) || isReserved(event.fields[STORED_PRODUCT_FIELD]);
}

/** Why such an event is refused, in the words every intake uses (HTTP answer, RELP answer, logs). */
export const RESERVED_LOGSOURCE_MESSAGE =
  `logsource product '${RESERVED_PRODUCT}' is reserved for Vigil's own health events ` +
  `(product: vigil, service: health), which only Vigil emits; declare another product`;

/** The refusal of a request or an event that claims the reserved product (400 `reserved_logsource`). */
export class ReservedLogsourceError extends InputError {
  constructor() {
    super('reserved_logsource', RESERVED_LOGSOURCE_MESSAGE);
    this.name = 'ReservedLogsourceError';
  }
}
