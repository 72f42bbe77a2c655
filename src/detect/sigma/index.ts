/**
 * Vigil's native Sigma engine (Sigma v2.1): load rules, filters and correlation documents; compile rules once
 * into matcher closures routed by logsource; match normalized events; check a rule folder.
 */
export type { CondNode } from './condition.ts';
export { parseCondition } from './condition.ts';
export type { Placeholders } from './detection.ts';
export type { SigmaEngine, SigmaEngineOptions, SigmaEngineStats } from './engine.ts';
export { createSigmaEngine } from './engine.ts';
export type { LoadOptions, SigmaLoadLimits } from './load.ts';
export { FILE_LIMITS, listRuleFiles, loadSigmaRules, loadSigmaText, REQUEST_LIMITS } from './load.ts';
export type { SigmaMappings } from './mapping.ts';
export { DEFAULT_MAPPINGS_DIR, defaultSigmaMappings, loadMappings } from './mapping.ts';
export type { RulesCheckOptions, RulesCheckReport } from './rules-check.ts';
export { checkRules, formatRulesCheck } from './rules-check.ts';
export type {
  RejectedRule,
  SigmaCorrelationDoc,
  SigmaFilter,
  SigmaLoadResult,
  SigmaMatch,
  SigmaRule,
  SigmaRuleRef,
} from './types.ts';
