import { Ajv, type ValidateFunction } from 'ajv';

/**
 * OpenAPI conformance of a test's own traffic (issue 18): every exchange a test has with a node it started
 * (test/harness/vigil.ts watches `fetch` for the node's URL) is checked against the node's
 * `GET /api/v1/openapi.json`: the route and the answer's status are documented, a JSON answer validates
 * against its schema, and a JSON request that the node accepted (2xx) validates against the request body
 * schema. A request the node refused may break the schema: that is what the test sent it for.
 */

interface Operation {
  requestBody?: { content: Record<string, { schema?: object }> };
  responses: Record<string, { content?: Record<string, { schema?: object }> }>;
}
interface Document {
  paths: Record<string, Record<string, Operation>>;
}

/** One exchange as the test saw it. */
export interface Exchange {
  method: string;
  /** The path without the query string. */
  path: string;
  status: number;
  requestType?: string;
  requestBody?: string;
  responseType?: string;
  responseBody: string;
}

/** Paths served outside the API document on purpose: the console's files and the metrics scrape. */
const UNDOCUMENTED = [/^\/metrics$/, /^\/api\/v1\/openapi\.json$/, /^\/(?!api\/|admin\/|health\/)/];

/** The document's path templates as regular expressions, most literal segments first. */
function matchers(doc: Document): { template: string; re: RegExp; literals: number }[] {
  return Object.keys(doc.paths)
    .map((template) => {
      const parts = template.split('/').map((seg) => {
        if (seg === '{*}') return '.*';
        if (/^\{\w+\}$/.test(seg)) return '[^/]+';
        return seg.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
      });
      return {
        template,
        re: new RegExp(`^${parts.join('/')}$`),
        literals: template.split('/').filter((s) => !s.startsWith('{')).length,
      };
    })
    .sort((a, b) => b.literals - a.literals);
}

const jsonType = (t: string | undefined) => t?.split(';')[0].trim() === 'application/json';

/** A checker of exchanges against one node's document, fetched once from `url`. */
export function createConformance(url: string) {
  let loaded: Promise<{ doc: Document; routes: ReturnType<typeof matchers> }> | undefined;
  const ajv = new Ajv({ strict: false, allErrors: true });
  const validators = new Map<object, ValidateFunction>();
  /** Each problem once, with how many exchanges had it and the first one's answer. */
  const problems = new Map<string, { n: number; example: string }>();
  const problem = (text: string, example = '') => {
    const p = problems.get(text);
    if (p) p.n++;
    else problems.set(text, { n: 1, example: example.slice(0, 200) });
  };
  let checked = 0;
  const validate = (schema: object, value: unknown): string | undefined => {
    let v = validators.get(schema);
    if (!v) {
      v = ajv.compile(schema);
      validators.set(schema, v);
    }
    return v(value) ? undefined : ajv.errorsText(v.errors);
  };
  const load = () => {
    loaded ??= (async () => {
      // The document itself is fetched without going through the watched fetch.
      const res = await originalFetch(`${url}/api/v1/openapi.json`);
      const doc = (await res.json()) as Document;
      return { doc, routes: matchers(doc) };
    })();
    return loaded;
  };

  async function check(x: Exchange): Promise<void> {
    if (UNDOCUMENTED.some((re) => re.test(x.path))) return;
    const { doc, routes } = await load();
    let where = `${x.method} ${x.path} -> ${x.status}`;
    const route = routes.find((r) => r.re.test(x.path) && doc.paths[r.template][x.method.toLowerCase()]);
    if (!route) {
      // A path no route serves answers 404 (or 405): not a route to document.
      if (x.status === 404 || x.status === 405) return;
      problem(`${where}: the route is not in the OpenAPI document`);
      return;
    }
    const op = doc.paths[route.template][x.method.toLowerCase()];
    const template = `${x.method} ${route.template}`;
    where = `${template} -> ${x.status}`;
    const answer = op.responses[String(x.status)] ?? op.responses[`${String(x.status)[0]}XX`] ?? op.responses.default;
    if (!answer) {
      problem(`${where}: the status is not documented`, x.responseBody);
      return;
    }
    checked++;
    const schema = answer.content?.['application/json']?.schema;
    if (schema && jsonType(x.responseType) && x.responseBody !== '') {
      const error = validate(schema, JSON.parse(x.responseBody));
      if (error) problem(`${where}: the answer does not match the document: ${error}`, x.responseBody);
    }
    if (x.status < 300 && x.requestBody !== undefined && jsonType(x.requestType)) {
      const body = op.requestBody?.content['application/json']?.schema;
      if (!body) problem(`${where}: the route takes a JSON body the document does not describe`);
      else {
        let value: unknown;
        try {
          value = JSON.parse(x.requestBody);
        } catch {
          problem(`${where}: the node accepted a request body that is not JSON`);
          return;
        }
        const error = validate(body, value);
        if (error) problem(`${where}: the accepted request does not match the document: ${error}`, x.requestBody);
      }
    }
  }

  void load().catch(() => undefined);
  const skipped: string[] = [];
  return {
    check,
    /** An exchange that could not be checked (the document was never read: the node stopped first). */
    unchecked: (why: string) => skipped.push(why),
    skipped: () => [...skipped],
    /** What did not conform so far, one line each. */
    problems: () =>
      [...problems].map(
        ([text, p]) => `${text}${p.n > 1 ? ` (${p.n} times)` : ''}${p.example ? `; e.g. ${p.example}` : ''}`,
      ),
    /** Exchanges checked against a documented route and status. */
    checked: () => checked,
  };
}

/** The fetch of the process before the harness watched it. */
const originalFetch = globalThis.fetch;

type Conformance = ReturnType<typeof createConformance>;
const watched = new Map<string, Conformance>();
/** Checks still running: a node's close waits for them before it reports. */
const pending = new Set<Promise<unknown>>();

/**
 * Watches the process's `fetch` for requests to `url` (a node the harness started) and checks each exchange
 * against the node's document. Returns the node's conformance record; `unwatch` stops watching it.
 */
export function watchNode(url: string): Conformance & { unwatch(): Promise<void> } {
  if (globalThis.fetch === originalFetch) globalThis.fetch = watchedFetch;
  const conformance = createConformance(url);
  watched.set(url, conformance);
  return {
    ...conformance,
    async unwatch() {
      await Promise.allSettled([...pending]);
      watched.delete(url);
    },
  };
}

async function watchedFetch(input: string | URL | Request, init?: RequestInit): Promise<Response> {
  const res = await originalFetch(input, init);
  const href = typeof input === 'string' ? input : input instanceof URL ? input.href : input.url;
  const u = new URL(href);
  const conformance = watched.get(u.origin);
  if (!conformance) return res;
  const headers = new Headers(init?.headers ?? (input instanceof Request ? input.headers : undefined));
  const body = typeof init?.body === 'string' ? init.body : undefined;
  // The answer is read from a copy, so the test reads its own as if nothing watched it.
  const copy = res.clone();
  const work = (async () => {
    const text = await copy.text().catch(() => undefined);
    if (text === undefined) return;
    await conformance.check({
      method: (init?.method ?? (input instanceof Request ? input.method : 'GET')).toUpperCase(),
      path: u.pathname,
      status: res.status,
      requestType: headers.get('content-type') ?? undefined,
      requestBody: body,
      responseType: res.headers.get('content-type') ?? undefined,
      responseBody: text,
    });
  })().catch((err: unknown) => {
    conformance.unchecked(`${u.pathname}: ${(err as Error).message}`);
  });
  pending.add(work);
  void work.finally(() => pending.delete(work));
  return res;
}
