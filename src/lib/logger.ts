import pino from 'pino';

/** Structured logger: messages are sentences, context goes in fields. Secrets never go in either. */
export type Logger = pino.Logger;

/** Creates the process logger; `level` comes from config (`log.level`). */
export function createLogger(level = 'info'): Logger {
  return pino({ level, base: { app: 'vigil' }, redact: ['token', '*.token', 'authorization', '*.authorization'] });
}

/** A logger that prints nothing, for tests and library use. */
export const silentLogger: Logger = pino({ level: 'silent' });
