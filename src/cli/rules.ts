import { importRules } from '../detect/rules-import.ts';
import { checkRules, formatRulesCheck } from '../detect/sigma/index.ts';

export const RULES_USAGE = `Usage: vigil rules check <dir or file> [...] [--json]
       vigil rules import <dir> [--data-dir <dir>] [--json]

check: loads Sigma rules (files and folders, recursively) and prints how many loaded and every rejected
document with its file, position and reason. Exits 1 when any document was rejected.

import: loads a third-party corpus (SigmaHQ, ...) and copies every file whose documents all load and compile
into <data-dir>/rules/imported/<dir name>/ (default data dir: $VIGIL_DATA_DIR or ./data), where the node
loads them at its next start or rule change; prints what loaded, and each file left out with its reasons.
Importing the same folder again replaces it. Exits 0 when anything was imported.
`;

/** `vigil rules check|import`. */
export async function rulesCommand(
  positionals: string[],
  opts: { json?: boolean; 'data-dir'?: string },
): Promise<number> {
  const [sub, ...paths] = positionals;
  if (sub === 'import' && paths.length === 1) {
    const dataDir = opts['data-dir'] ?? process.env.VIGIL_DATA_DIR ?? 'data';
    const report = importRules(paths[0], dataDir);
    if (opts.json) process.stdout.write(`${JSON.stringify(report, null, 2)}\n`);
    else {
      process.stdout.write(`${formatRulesCheck(report)}\n\n`);
      process.stdout.write(
        `Imported ${report.imported} files into ${report.destination}; ${report.skipped.length} files left out.\n`,
      );
      const late = report.skipped.filter((s) => !report.rejected.some((r) => r.file === s.file));
      if (late.length > 0) {
        process.stdout.write('Left out when compiled:\n');
        for (const s of late) process.stdout.write(`  ${s.file}: ${s.reasons.join('; ')}\n`);
      }
      process.stdout.write('A running node loads them at its next start or rule change.\n');
    }
    return report.imported > 0 ? 0 : 1;
  }
  if (sub !== 'check' || paths.length === 0) {
    process.stderr.write(RULES_USAGE);
    return 2;
  }
  const report = checkRules(paths);
  process.stdout.write(opts.json ? `${JSON.stringify(report, null, 2)}\n` : `${formatRulesCheck(report)}\n`);
  return report.rejected.length > 0 ? 1 : 0;
}
