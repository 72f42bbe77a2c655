/**
 * The JSON schemas routes declare (`{ schema }` in their options), written in zod and converted with
 * `z.toJSONSchema`: @fastify/swagger builds GET /api/v1/openapi.json from them.
 *
 * Documentation only: the API server turns Fastify's validation and serialization off (server.ts), so no
 * schema here is run. Path and query parameters reach the routes as strings and request bodies as text, and
 * the routes parse them and answer the stable codes of docs/errors.md; answers are sent as the routes build
 * them (never filtered by a response schema).
 */
import type { FastifySchema } from 'fastify';
import { z } from 'zod';

type Json = Record<string, unknown>;

/** A zod schema as JSON Schema (draft 7, readable by the OpenAPI 3 generator). */
export function jsonSchema(schema: z.ZodType): Json {
  const out = z.toJSONSchema(schema, { target: 'draft-7', io: 'input', unrepresentable: 'any' }) as Json;
  delete out.$schema;
  return out;
}

const str = (description: string) => z.string().describe(description);
const time = (what: string) => str(`${what}: now, now-15m, epoch milliseconds or ISO 8601`);

const error = z
  .object({
    error: z.object({
      code: z.string().describe('stable code, listed in docs/errors.md'),
      message: z.string(),
      details: z.record(z.string(), z.unknown()).optional(),
    }),
  })
  .describe('An error answer');

/** What Fastify itself answers to a request that arrives while the server closes (a node stopping). */
const closing = z
  .object({ error: z.literal('Service Unavailable'), message: z.string(), statusCode: z.literal(503) })
  .describe('The answer to a request that arrived while the node was closing; retry on another node');

const errors = { '4XX': jsonSchema(error), '5XX': jsonSchema(z.union([error, closing])) };
const looseObject = (description: string) => z.looseObject({}).describe(description);
const idParams = jsonSchema(z.object({ id: str('the id') }));

interface RouteDoc {
  tags: string[];
  summary: string;
  querystring?: z.ZodObject;
  params?: Json;
  body?: z.ZodType;
  /** The body's media types (one schema for all: @fastify/swagger repeats it under each). */
  bodyTypes?: string[];
  answer?: z.ZodType;
  status?: number;
  /** Other statuses whose answer has the answer's schema (readiness answers 503 with its checks). */
  sameAnswer?: number[];
}

/** Route options carrying the schema, for the OpenAPI document (never run: see the top of this file). */
export interface DocumentedRoute {
  schema: FastifySchema;
}

function route(doc: RouteDoc): DocumentedRoute {
  return { schema: schemaOf(doc) };
}

function schemaOf(doc: RouteDoc): FastifySchema {
  const schema: FastifySchema & Json = { tags: doc.tags, summary: doc.summary };
  if (doc.querystring) schema.querystring = jsonSchema(doc.querystring);
  if (doc.params) schema.params = doc.params;
  if (doc.body) {
    schema.body = jsonSchema(doc.body);
    if (doc.bodyTypes) schema.consumes = doc.bodyTypes;
  }
  const answer = jsonSchema(doc.answer ?? looseObject('the answer'));
  schema.response = {
    [doc.status ?? 200]: answer,
    ...errors,
    ...Object.fromEntries((doc.sameAnswer ?? []).map((status) => [status, answer])),
  };
  return schema;
}

const alert = z
  .looseObject({
    id: z.string(),
    timestamp: z.number().describe('time of the (last) triggering event, epoch ms'),
    created: z.number(),
    tenant: z.string(),
    kind: z.enum(['rule', 'correlation']),
    rule: z.object({ id: z.string(), title: z.string(), level: z.string(), tags: z.array(z.string()) }),
    host: z.string(),
    status: z.string(),
    matched: z.record(z.string(), z.unknown()),
    eventIds: z.array(z.string()),
  })
  .describe('An alert');

const incident = z
  .looseObject({
    id: z.string(),
    tenant: z.string(),
    title: z.string(),
    severity: z.string(),
    status: z.string(),
    assignee: z.string().nullable(),
    tags: z.array(z.string()),
    alertCount: z.number(),
  })
  .describe('An incident');

const rule = z.looseObject({
  id: z.string(),
  tenant: z.string().nullable(),
  title: z.string(),
  level: z.string(),
  status: z.string(),
  kind: z.enum(['rule', 'correlation', 'filter']),
  origin: z.enum(['folder', 'api']),
  enabled: z.boolean(),
});

const replica = z
  .object({ node: z.string(), lag_messages: z.number() })
  .describe('cluster: the store replica that answered and how far behind the stream it was');
const fanout = {
  shards: z
    .array(z.object({ shard: z.number(), node: z.string(), lag_messages: z.number() }))
    .describe('sharded store: per shard, the replica that answered and how far behind the stream it was')
    .optional(),
  partial: z.literal(true).describe('sharded store: some shard had no replica that answered').optional(),
  missing_shards: z.array(z.number()).describe('with partial: the shards missing from the answer').optional(),
};
const user = z.looseObject({ id: z.string(), username: z.string(), role: z.string(), tenants: z.array(z.string()) });
const scope = z.object({ scope: str('global: the global scope (global admins); default: your tenant').optional() });

/** The documented routes by name: `app.get(path, routeDocs.search, handler)`. */
export const routeDocs = {
  ingest: route({
    tags: ['ingest'],
    summary: 'Store events: NDJSON or a JSON array; answers after they are committed',
    querystring: z.object({
      product: str('Sigma logsource product of every event').optional(),
      service: str('Sigma logsource service').optional(),
      category: str('Sigma logsource category').optional(),
    }),
    body: z
      .union([z.string(), z.array(z.unknown()), z.looseObject({})])
      .describe(
        'NDJSON lines (application/x-ndjson), or a JSON array of event objects or one event object (application/json)',
      ),
    bodyTypes: ['application/x-ndjson', 'application/json'],
    answer: z.looseObject({
      accepted: z.number(),
      rejected: z
        .array(z.looseObject({ line: z.number().describe('line of the element in the body'), error: z.string() }))
        .describe('the first 1,000 elements refused'),
      rejected_omitted: z.number().describe('refused elements past those listed').optional(),
    }),
  }),
  ingestCollected: route({
    tags: ['ingest'],
    summary:
      'Store events a collector (vigil collect) normalized, with its event ids; API keys with the collector scope only',
    body: z.string().describe('NDJSON lines, each a normalized event without its tenant'),
    bodyTypes: ['application/x-ndjson'],
    answer: z.looseObject({
      accepted: z.number(),
      rejected: z.array(z.looseObject({ line: z.number(), error: z.string() })),
    }),
  }),
  search: route({
    tags: ['search'],
    summary: 'Search events with the query language',
    querystring: z.object({
      q: str('the query, e.g. user.name:bob | stats count() by host.name'),
      from: time('start').optional(),
      to: time('end').optional(),
      limit: str('most events answered (1 to 10,000)').optional(),
    }),
    answer: z.union([
      z.object({
        total: z.number(),
        events: z.array(z.record(z.string(), z.unknown())),
        took_ms: z.number(),
        replica: replica.optional(),
        ...fanout,
      }),
      z.object({
        columns: z.array(z.string()),
        rows: z.array(z.array(z.unknown())),
        took_ms: z.number(),
        replica: replica.optional(),
        ...fanout,
      }),
    ]),
  }),
  shardSearch: route({
    tags: ['cluster'],
    summary: "Node to node: one shard's part of a search (the cluster peer token only, never a client's)",
    body: z.object({
      q: str('the query as the client wrote it'),
      from: z.number(),
      to: z.number(),
      limit: z.number(),
      maxLimit: z.number(),
      tenants: z.array(z.string()),
      now: z.number(),
      user: z.string(),
      shard: z.number(),
      shards: z.number(),
      stale_ok: z
        .boolean()
        .optional()
        .describe(
          'answer from the rows of the shard this node holds even when it does not serve the shard (diagnostics: rows left behind); otherwise 503 shard_not_served',
        ),
    }),
    bodyTypes: ['application/json'],
    answer: z.object({
      rows: z.array(z.record(z.string(), z.unknown())).describe('events, or groups with partial states'),
      count: z.number().optional(),
      node: z.string(),
      lag_messages: z.number(),
    }),
  }),
  alerts: route({
    tags: ['alerts'],
    summary: 'List alerts, newest first',
    querystring: z.object({
      from: time('start').optional(),
      to: time('end').optional(),
      rule: str('rule id').optional(),
      level: str('rule level').optional(),
      host: str('host').optional(),
      status: str('new, acknowledged or closed').optional(),
      limit: str('1 to 10,000; default 100').optional(),
    }),
    answer: z.object({ total: z.number(), alerts: z.array(alert) }),
  }),
  alert: route({ tags: ['alerts'], summary: 'One alert', params: idParams, answer: alert }),
  alertPatch: route({
    tags: ['alerts'],
    summary: 'Acknowledge or close an alert',
    params: idParams,
    body: z.object({ status: z.enum(['new', 'acknowledged', 'closed']) }),
    answer: alert,
  }),
  incidents: route({
    tags: ['incidents'],
    summary: 'List incidents',
    querystring: z.object({
      status: str('comma-separated statuses').optional(),
      severity: str('comma-separated severities').optional(),
      assignee: str('assignee').optional(),
      tag: str('tag').optional(),
      rule: str('rule id').optional(),
      host: str('host').optional(),
      from: time('start').optional(),
      to: time('end').optional(),
      sort: str('created_at, updated_at, severity, ...; - for descending (default -created_at)').optional(),
      limit: str('1 to 1,000; default 50').optional(),
      offset: str('offset (or cursor)').optional(),
      cursor: str('nextCursor of the previous page').optional(),
    }),
    answer: z.object({ total: z.number(), incidents: z.array(incident), nextCursor: z.string().nullish() }),
  }),
  incidentCreate: route({
    tags: ['incidents'],
    summary: 'Open an incident by hand',
    body: looseObject('title, severity, alert ids, ...'),
    answer: incident,
    status: 201,
  }),
  incident: route({ tags: ['incidents'], summary: 'One incident with its alerts', params: idParams, answer: incident }),
  backupCreate: route({
    tags: ['backups'],
    summary: 'Take a backup of this node now (global admin); answers once it is complete',
    body: looseObject('{"full": true} forces a full backup; an empty body is {}'),
    answer: looseObject('the backup: id, kind, base, size, cut time, counts'),
    status: 201,
  }),
  backupList: route({
    tags: ['backups'],
    summary: 'Every backup in backup.dir, oldest first (global admin)',
    answer: z.looseObject({ backups: z.array(z.looseObject({})) }),
  }),
  incidentPatch: route({
    tags: ['incidents'],
    summary: 'Change status, severity, assignee or tags',
    params: idParams,
    body: looseObject('the fields to change'),
    answer: incident,
  }),
  incidentComment: route({
    tags: ['incidents'],
    summary: 'Add a comment to an incident',
    params: idParams,
    body: z.object({ body: z.string().describe('the comment') }),
    answer: z.looseObject({ id: z.number(), author: z.string(), body: z.string(), createdAt: z.number() }),
    status: 201,
  }),
  rules: route({
    tags: ['rules'],
    summary: 'List rules and the documents that could not be loaded',
    answer: z.object({
      version: z.number(),
      total: z.number(),
      rules: z.array(rule),
      rejected: z.array(z.looseObject({ file: z.string(), reason: z.string() })),
    }),
  }),
  ruleSource: route({
    tags: ['rules'],
    summary: 'The Sigma YAML of a rule',
    params: idParams,
    querystring: scope,
    answer: z.string().describe('Sigma YAML'),
  }),
  ruleCreate: route({
    tags: ['rules'],
    summary: 'Add a Sigma rule, correlation or filter (YAML); applies without restart',
    querystring: scope,
    body: z.string().describe('one Sigma YAML document'),
    bodyTypes: ['application/yaml'],
    answer: z.looseObject({ id: z.string(), kind: z.string(), title: z.string(), version: z.number() }),
    status: 201,
  }),
  ruleReplace: route({
    tags: ['rules'],
    summary: 'Replace an API-managed rule',
    params: idParams,
    querystring: scope,
    body: z.string().describe('one Sigma YAML document with the same id'),
    bodyTypes: ['application/yaml'],
  }),
  ruleDelete: route({ tags: ['rules'], summary: 'Delete an API-managed rule', params: idParams, querystring: scope }),
  rulePatch: route({
    tags: ['rules'],
    summary: 'Enable or disable a rule',
    params: idParams,
    querystring: scope,
    body: z.object({ enabled: z.boolean() }),
  }),
  hunt: route({
    tags: ['rules'],
    summary: 'Retro-hunt: run a rule (by id or YAML) over stored events',
    body: z.object({
      rule_id: z.string().optional(),
      rule: z.string().describe('Sigma YAML under test').optional(),
      from: z.string(),
      to: z.string(),
      limit: z.number().optional(),
    }),
  }),
  login: route({
    tags: ['auth'],
    summary: 'Sign in; answers a session token',
    body: z.object({ username: z.string(), password: z.string() }),
    answer: z.object({ token: z.string(), expiresAt: z.number(), user }),
  }),
  logout: route({ tags: ['auth'], summary: 'End this console session', answer: z.object({ loggedOut: z.boolean() }) }),
  me: route({
    tags: ['auth'],
    summary: 'Who the caller is',
    answer: z.looseObject({ name: z.string(), role: z.string(), tenants: z.array(z.string()) }),
  }),
  users: route({
    tags: ['users'],
    summary: 'List users (admins)',
    answer: z.object({ total: z.number(), users: z.array(user) }),
  }),
  userCreate: route({
    tags: ['users'],
    summary: 'Create a user (admins)',
    body: z.object({
      username: z.string(),
      password: z.string(),
      role: z.enum(['viewer', 'analyst', 'admin']),
      tenants: z.array(z.string()).optional(),
    }),
    answer: user,
    status: 201,
  }),
  user: route({ tags: ['users'], summary: 'One user', params: idParams, answer: user }),
  userPatch: route({
    tags: ['users'],
    summary: 'Change a user',
    params: idParams,
    body: looseObject('password, role, tenants, disabled'),
    answer: user,
  }),
  userDelete: route({ tags: ['users'], summary: 'Delete a user', params: idParams }),
  keyCreate: route({
    tags: ['users'],
    summary: 'Create an API key (own; admins: for a user they manage); the answer is the only time its token is shown',
    body: z.object({
      name: z.string(),
      scopes: z.array(z.string()).describe('read, write, admin; or collector alone'),
      expiresInDays: z.number().optional(),
      userId: z.string().optional().describe("another user's (admins); default the caller's own"),
    }),
    answer: looseObject('the key: id, userId, username, name, scopes, createdAt, expiresAt, revokedAt, and token'),
    status: 201,
  }),
  keys: route({
    tags: ['users'],
    summary: 'List API keys (own; admins: of the users they manage), never their tokens',
    answer: z.looseObject({ total: z.number(), keys: z.array(z.looseObject({})) }),
  }),
  keyRevoke: route({ tags: ['users'], summary: 'Revoke an API key', params: idParams, answer: looseObject('the key') }),
  audit: route({
    tags: ['users'],
    summary: 'Audit log entries, newest first (admins)',
    answer: z.looseObject({ total: z.number(), entries: z.array(z.looseObject({})) }),
  }),
  live: route({ tags: ['health'], summary: 'The process answers', answer: z.object({ status: z.literal('live') }) }),
  ready: route({
    tags: ['health'],
    summary: 'Every component is healthy (200) or not (503)',
    sameAnswer: [503],
    answer: z.object({
      status: z.enum(['ready', 'not_ready']),
      checks: z.record(z.string(), z.object({ ok: z.boolean(), detail: z.string().optional() })),
    }),
  }),
  metrics: route({ tags: ['health'], summary: 'Prometheus metrics', answer: z.string() }),
} satisfies Record<string, DocumentedRoute>;
