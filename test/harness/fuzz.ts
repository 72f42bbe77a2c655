/**
 * Settings shared by the fuzz tests (`*.fuzz.test.ts`, fast-check). In `npm test` each runs a small number of
 * cases so the file stays well under 30 s on CI's two cores; `npm run fuzz` sets VIGIL_FUZZ_RUNS high for a
 * run by hand (VIGIL_FUZZ_TIME_MS also bounds the API fuzz by time). A failure prints fast-check's seed and
 * path: VIGIL_FUZZ_SEED (and VIGIL_FUZZ_PATH) replay it.
 */
import type { Parameters } from 'fast-check';

/**
 * The number of cases of a property: VIGIL_FUZZ_RUNS, or `ciRuns` when unset. `maxRuns` caps a property whose
 * cases are slow (deep nesting, alias expansion: tens of milliseconds each), so a long run stays minutes.
 */
export function fuzzRuns(ciRuns: number, maxRuns = Number.POSITIVE_INFINITY): number {
  const env = process.env.VIGIL_FUZZ_RUNS;
  if (env === undefined || env === '') return ciRuns;
  const n = Number(env);
  if (!Number.isSafeInteger(n) || n < 1) throw new Error(`VIGIL_FUZZ_RUNS must be a positive integer, not ${env}`);
  return Math.min(n, Math.max(ciRuns, maxRuns));
}

/** fast-check parameters: the run count, and the seed and path of a failure to replay when given. */
export function fuzzParams<T>(ciRuns: number, extra: Parameters<T> & { maxRuns?: number } = {}): Parameters<T> {
  const { maxRuns, ...rest } = extra;
  const params: Parameters<T> = { numRuns: fuzzRuns(ciRuns, maxRuns), includeErrorInReport: true, ...rest };
  if (process.env.VIGIL_FUZZ_SEED) params.seed = Number(process.env.VIGIL_FUZZ_SEED);
  if (process.env.VIGIL_FUZZ_PATH) params.path = process.env.VIGIL_FUZZ_PATH;
  return params;
}
