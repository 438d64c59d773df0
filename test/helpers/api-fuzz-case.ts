/** What the API fuzzer sends (test/helpers/api-fuzz.ts) and what it aims at. */

export interface FuzzTargets {
  /** A pool of the fleet under test (model / pool name). */
  readonly pool: string;
  /** Bull Board's names of the fleet's queues ('rt.p' and its hash-tagged '{rt.p}'). */
  readonly boardQueues: readonly string[];
  /** An existing file:// object: training bodies are valid before they are mutated. */
  readonly dataUri: string;
  readonly checkpointUri: string;
  /** The producer's bodyLimitBytes, for bodies just over it. */
  readonly bodyLimitBytes: number;
}

export interface FuzzCase {
  readonly kind: 'body' | 'path' | 'board';
  readonly method: 'GET' | 'POST' | 'PUT';
  readonly path: string;
  readonly headers: Readonly<Record<string, string>>;
  readonly body?: Buffer;
  /** Names a 400 may cite instead of `param` (the mutated fields, headers, query keys, or `body`). */
  readonly names: readonly string[];
  /** What was done, for a counterexample that reads. */
  readonly label: string;
}
