import { resolve } from 'node:path';

/**
 * The starter rules: Sigma rules written by the team for what Vigil normalizes (Linux auth, Windows
 * security, web and proxy logs), loaded by default before `detect.rules_dirs` (`detect.starter_rules`).
 * Each rule's firing and quiet events are in starter.test.ts.
 */
export const STARTER_RULES_DIR = resolve(import.meta.dirname, 'rules');
