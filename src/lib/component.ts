/** Health of one component, as reported on /health/ready. */
export interface ComponentHealth {
  ok: boolean;
  detail?: string;
}

/**
 * The lifecycle every Vigil component follows: created by a factory that opens nothing, then `start()`,
 * then `stop(deadline)`. The app starts components in dependency order and stops them in reverse.
 */
export interface Component {
  readonly name: string;
  start(): Promise<void>;
  /** Stops taking new work, finishes in-flight work until `deadline` (epoch ms), releases resources. */
  stop(deadline: number): Promise<void>;
  health(): ComponentHealth;
}

/** Components run as one: started in order, stopped in reverse; healthy when all are, with their details. */
export function componentGroup(name: string, parts: readonly Component[]): Component {
  const started: Component[] = [];
  return {
    name,
    async start() {
      for (const p of parts) {
        await p.start();
        started.push(p);
      }
    },
    async stop(deadline) {
      for (const p of started.splice(0).reverse()) await p.stop(deadline);
    },
    health() {
      const all = parts.map((p) => ({ name: p.name, ...p.health() }));
      const details = all.filter((h) => h.detail).map((h) => `${h.name}: ${h.detail}`);
      return { ok: all.every((h) => h.ok), ...(details.length > 0 ? { detail: details.join('; ') } : {}) };
    },
  };
}
