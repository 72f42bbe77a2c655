/**
 * Sigma correlation rules: compile correlation documents, then feed Sigma matches to the engine to get
 * correlation alerts. The public API of src/detect/correlation; everything else in the folder is internal.
 */
export {
  type CompiledCorrelation,
  type ConditionOperator,
  type CorrelationCondition,
  type CorrelationLevel,
  type CorrelationType,
  compileCorrelation,
  isCorrelationDocument,
  parseTimespan,
} from './compile.ts';
export {
  type CorrelationAlert,
  type CorrelationEngine,
  type CorrelationEngineOptions,
  createCorrelationEngine,
  type MatchedRule,
  type SigmaMatch,
} from './engine.ts';
