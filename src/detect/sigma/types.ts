/** The data types of the Sigma component: loaded rules and filters, rejections, matches. */
import type { FieldValue, Logsource } from '../../lib/event.ts';
import type { ParsedDetection } from './detection.ts';

/** What a match (and an alert) says about its rule. */
export interface SigmaRuleRef {
  /** The rule's `id`; rules without one get `<file>#<document number>`. */
  readonly id: string;
  readonly name?: string;
  readonly title: string;
  /** Sigma's `level`; a rule without one is treated as `medium` so every alert has a severity. */
  readonly level: string;
  readonly tags: readonly string[];
  /** Sigma's `status` (`stable`, `test`, `experimental`, `deprecated`, `unsupported`), `test` when absent. */
  readonly status: string;
  readonly file: string;
}

/** A loaded rule: its metadata, its logsource and its parsed (layout-independent) detection. */
export interface SigmaRule extends SigmaRuleRef {
  /** Lowercased `product`, `service` and `category`. */
  readonly logsource: Logsource;
  readonly detection: ParsedDetection;
  /** 1-based line of the rule's document in its file. */
  readonly line?: number;
  /** `status: deprecated`: loaded and matchable, flagged for the operator. */
  readonly deprecated: boolean;
  /** `status: unsupported`: loaded and matchable when it parses, flagged for the operator. */
  readonly unsupported: boolean;
  /** The rule document after collection merging (for tools and display). */
  readonly doc: Readonly<Record<string, unknown>>;
}

/** A Sigma filter document (filters specification): an exclusion added to the rules it names. */
export interface SigmaFilter {
  readonly id?: string;
  readonly title: string;
  readonly logsource: Logsource;
  /** Ids or names of the rules the filter applies to. */
  readonly rules: readonly string[];
  readonly detection: ParsedDetection;
  readonly file: string;
  readonly line?: number;
}

/** A correlation document, left for the correlation engine to compile. */
export interface SigmaCorrelationDoc {
  readonly file: string;
  readonly line?: number;
  readonly doc: Readonly<Record<string, unknown>>;
}

/** A document that could not be loaded, with the place and the reason. */
export interface RejectedRule {
  readonly file: string;
  readonly line?: number;
  readonly column?: number;
  readonly ruleId?: string;
  readonly title?: string;
  readonly reason: string;
  /**
   * The bound of `SigmaLoadLimits` (or the condition's `max_condition_depth`) that the file or text passed, when
   * that is the reason.
   */
  readonly limit?: 'max_bytes' | 'max_nodes' | 'max_depth' | 'max_aliases' | 'max_condition_depth';
  /** Set when loading or compiling the document failed unexpectedly: it is skipped, never fatal. */
  readonly unexpected?: boolean;
}

/** Everything found under the loaded paths. */
export interface SigmaLoadResult {
  readonly rules: SigmaRule[];
  readonly filters: SigmaFilter[];
  readonly correlations: SigmaCorrelationDoc[];
  readonly rejected: RejectedRule[];
}

/** One rule that fired on an event. */
export interface SigmaMatch {
  readonly rule: SigmaRuleRef;
  /** Event key -> value for each field tested by the search identifiers that made the rule match. */
  readonly matchedFields: Record<string, FieldValue>;
}
