import { copyFileSync, existsSync, mkdirSync, rmSync } from 'node:fs';
import { basename, dirname, join, relative, resolve } from 'node:path';
import { InputError } from '../lib/errors.ts';
import { compileRuleFolders, type ScopedRejectedRule } from './rule-set.ts';
import { checkRules, listRuleFiles, loadSigmaRules, type Placeholders, type RulesCheckReport } from './sigma/index.ts';

/** What `vigil rules import` did. */
export interface RulesImportReport extends RulesCheckReport {
  /** Where the imported files are: `<data_dir>/rules/imported/<folder name>`. */
  destination: string;
  /** Files copied (every document of each loaded and compiled). */
  imported: number;
  /** Files left out, with the reasons of their documents. */
  skipped: { file: string; reasons: string[] }[];
}

/**
 * Imports a third-party rule corpus (SigmaHQ, ...) into a node's data folder: every file whose documents all
 * load and compile is copied under `<data_dir>/rules/imported/<folder name>/` (a second import of the same
 * folder replaces the first), where the node loads it beside the API's rules at its next start or rule
 * change. Files with a rejected document are left out, each with its reasons.
 */
export function importRules(folder: string, dataDir: string, placeholders: Placeholders = {}): RulesImportReport {
  const source = resolve(folder);
  if (!existsSync(source)) throw new InputError('not_found', `no rule folder ${folder}`);
  const report = checkRules(source, { placeholders });
  const reasons = new Map<string, string[]>();
  const reject = (r: { file: string; reason: string; line?: number }) => {
    const list = reasons.get(r.file) ?? [];
    list.push(`${r.line ? `line ${r.line}: ` : ''}${r.reason}`);
    reasons.set(r.file, list);
  };
  for (const r of report.rejected) reject(r);

  const destination = join(resolve(dataDir), 'rules', 'imported', basename(source));
  rmSync(destination, { recursive: true, force: true });
  const copy = (files: string[]) => {
    for (const file of files) {
      if (reasons.has(file)) continue;
      const to = join(destination, relative(source, file));
      mkdirSync(dirname(to), { recursive: true });
      copyFileSync(file, to);
    }
  };
  copy(listRuleFiles(source));
  // Compiling may refuse more (a correlation whose rule was left out, a field no engine supports): such files
  // go too, until what remains compiles clean.
  for (let round = 0; round < 5 && existsSync(destination); round++) {
    const late: ScopedRejectedRule[] = [
      ...compileRuleFolders([destination], placeholders).rejected,
      ...unresolved(destination, placeholders),
    ];
    if (late.length === 0) break;
    for (const r of late) {
      const original = join(source, relative(destination, r.file));
      reject({ ...r, file: original });
      rmSync(r.file, { force: true });
    }
  }
  const imported = existsSync(destination) ? listRuleFiles(destination).length : 0;
  return {
    ...report,
    destination,
    imported,
    skipped: [...reasons].map(([file, list]) => ({ file, reasons: list })),
  };
}

/** Correlations naming a rule that is not there (it was left out): they would never fire. */
function unresolved(folder: string, placeholders: Placeholders): ScopedRejectedRule[] {
  const loaded = loadSigmaRules(folder, { placeholders });
  const known = new Set<string>();
  for (const r of loaded.rules) {
    known.add(r.id);
    if (r.name) known.add(r.name);
  }
  for (const c of loaded.correlations) {
    for (const key of ['id', 'name'] as const) if (typeof c.doc[key] === 'string') known.add(c.doc[key] as string);
  }
  const out: ScopedRejectedRule[] = [];
  for (const c of loaded.correlations) {
    const refs = (c.doc.correlation as { rules?: unknown } | undefined)?.rules;
    const list = Array.isArray(refs) ? refs : typeof refs === 'string' ? [refs] : [];
    const missing = list.filter((ref) => typeof ref === 'string' && !known.has(ref));
    if (missing.length > 0) {
      out.push({
        file: c.file,
        tenant: null,
        reason: `correlation references rules that did not load: ${missing.join(', ')}`,
      });
    }
  }
  return out;
}
