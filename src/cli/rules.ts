import { checkRules, formatRulesCheck } from '../detect/sigma/index.ts';

export const RULES_USAGE = `Usage: vigil rules check <dir or file> [...] [--json]

Loads Sigma rules (files and folders, recursively) and prints how many loaded and every rejected
document with its file, position and reason. Exits 1 when any document was rejected.
`;

/** `vigil rules check`: the report of loading a rule folder. */
export async function rulesCommand(positionals: string[], opts: { json?: boolean }): Promise<number> {
  const [sub, ...paths] = positionals;
  if (sub !== 'check' || paths.length === 0) {
    process.stderr.write(RULES_USAGE);
    return 2;
  }
  const report = checkRules(paths);
  process.stdout.write(opts.json ? `${JSON.stringify(report, null, 2)}\n` : `${formatRulesCheck(report)}\n`);
  return report.rejected.length > 0 ? 1 : 0;
}
