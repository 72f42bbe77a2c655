import { z } from 'zod';

const SITE = /^[A-Za-z0-9_-]{1,32}$/;

/**
 * Settings of cluster mode (`cluster:` in the config file). etcd holds membership, partition leases and
 * fencing tokens. Times are milliseconds; etcd leases count whole seconds, so `lease_ttl_ms` is a multiple
 * of 1000.
 */
export const clusterConfigSchema = z
  .object({
    /** Run in cluster mode (register in etcd, own correlation partitions through leases). */
    enabled: z.boolean().default(false),
    /** This node's unique name; the host name when unset. */
    node_id: z
      // VIGIL_CLUSTER__NODE_ID=7 arrives as a number.
      .preprocess(
        (v) => (typeof v === 'number' ? String(v) : v),
        z.string().regex(/^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/, 'letters, digits, ".", "_" and "-", at most 128'),
      )
      .optional(),
    /** host:port where other nodes and operators reach this node's HTTP API; `http.addr` when unset. */
    advertise_addr: z
      .string()
      .regex(/^(\[[0-9a-fA-F:]+\]|[^:\s]+):\d{1,5}$/, 'expected host:port, for example 10.0.0.5:8080')
      .optional(),
    /** etcd client URLs (`http://host:2379`); the client spreads calls over them and skips dead ones. */
    etcd_endpoints: z
      .array(z.string().regex(/^https?:\/\/[^/\s]+$/, 'expected http://host:port or https://host:port'))
      .min(1)
      .default(['http://127.0.0.1:2379']),
    /** Prefix of every key Vigil writes in etcd (`<prefix>nodes/<id>`, `<prefix>partitions/<p>`). */
    key_prefix: z
      .string()
      .regex(/^[A-Za-z0-9._-]+(\/[A-Za-z0-9._-]+)*\/$/, 'path segments ending in "/", for example vigil/')
      .default('vigil/'),
    /** TTL of this node's etcd lease: how long after a crash its partitions move (whole seconds). */
    lease_ttl_ms: z.number().int().min(2000).multipleOf(1000, 'etcd leases count whole seconds').default(5000),
    /** How often the lease is renewed. */
    keepalive_interval_ms: z.number().int().min(50).default(1000),
    /**
     * This node stops acting as owner this long before its lease could expire in etcd, counted from the
     * sending of the last renewal etcd answered (covers timer lateness and clock-rate drift).
     */
    lease_safety_margin_ms: z.number().int().min(100).default(1000),
    /** Longest one etcd call may take before it counts as failed. */
    etcd_timeout_ms: z.number().int().min(50).default(1000),
    /** How long start() waits for the first lease before failing. */
    connect_timeout_ms: z.number().int().min(100).default(10000),
    /** A node whose last heartbeat (lease renewal) is older than this is Suspect. */
    suspect_after_ms: z.number().int().min(100).default(2500),
    /** How long a Dead node stays in the status API. */
    dead_retention_ms: z.number().int().min(0).default(600000),
    /** How often membership and partition ownership are re-read from etcd (watches give the fast path). */
    refresh_interval_ms: z.number().int().min(50).default(1000),
    /** Number of correlation partitions; every node of a cluster must agree on it. */
    partitions: z.number().int().min(1).max(4096).default(16),
    /** Longest a partition's owner may take to flush when handing it over before the key is released. */
    handover_timeout_ms: z.number().int().min(0).default(10000),
    /** Longest maintenance waits for in-flight batches once partitions are handed over. */
    drain_timeout_ms: z.number().int().min(0).default(60000),
    /**
     * This cluster's site name in a two-site deployment (`a`, `b`): also the JetStream domain of the site's
     * NATS servers. Unset: one site, no replication, no `dr` commands.
     */
    site: z.string().regex(SITE, 'letters, digits, "_" and "-", at most 32').optional(),
    /** The other site's name (its NATS servers' JetStream domain), reached over a NATS leafnode. */
    peer_site: z.string().regex(SITE, 'letters, digits, "_" and "-", at most 32').optional(),
    /**
     * The role written in the site record the first time a site starts (a record in etcd is kept over
     * restarts): `auto` makes the site whose name sorts first active and the other standby.
     */
    site_role_at_start: z.enum(['auto', 'active', 'standby']).default('auto'),
    /** Longest wait for the peer site's answer to a status request over NATS. */
    peer_timeout_ms: z.number().int().min(100).default(2000),
    /**
     * A file holding the cluster's peer token, the same on every node: node-to-node calls (`/internal/`
     * routes) carry it and only they accept it, so no client credential reaches them and this one opens
     * nothing else. Read at start; needed when the store is split into shards.
     */
    peer_token_file: z.string().min(1).optional(),
    /**
     * How often an active site asks its peer for its epoch: a site that hears a greater epoch (the peer was
     * activated while this one was dead or cut off) turns standby by itself.
     */
    peer_poll_ms: z.number().int().min(200).default(2000),
    /**
     * At start, how long a site whose record says active waits to hear its peer before it detects: a
     * returning old site learns the peer's greater epoch first and comes back standby. Past it (the peer is
     * gone) the site runs as its record says.
     */
    start_peer_wait_ms: z.number().int().min(0).default(15000),
  })
  .strict()
  .superRefine((c, ctx) => {
    if (c.lease_safety_margin_ms + 2 * c.keepalive_interval_ms > c.lease_ttl_ms) {
      ctx.addIssue({
        code: 'custom',
        path: ['lease_safety_margin_ms'],
        message: 'lease_safety_margin_ms + 2 x keepalive_interval_ms must not exceed lease_ttl_ms',
      });
    }
    if ((c.site === undefined) !== (c.peer_site === undefined)) {
      ctx.addIssue({ code: 'custom', path: ['peer_site'], message: 'site and peer_site are set together' });
    } else if (c.site !== undefined && c.site === c.peer_site) {
      ctx.addIssue({ code: 'custom', path: ['peer_site'], message: 'must differ from site' });
    }
    if (c.suspect_after_ms >= c.lease_ttl_ms) {
      ctx.addIssue({ code: 'custom', path: ['suspect_after_ms'], message: 'must be less than lease_ttl_ms' });
    }
  });

/** Cluster settings, defaults applied. */
export type ClusterConfig = z.infer<typeof clusterConfigSchema>;
