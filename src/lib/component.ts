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
