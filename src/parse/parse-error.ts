import { InputError } from '../lib/errors.ts';

/** An input that cannot become an event at all (code `parse_error`, HTTP 400), such as a JSON number. */
export class ParseError extends InputError {
  constructor(message: string, details?: Record<string, unknown>) {
    super('parse_error', message, details);
    this.name = 'ParseError';
  }
}
