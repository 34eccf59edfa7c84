// Defaults of the configuration that the help names: a module with no imports, so the global
// options' help can say them without loading config.ts.

/** Seconds of replay lag a read replica may have and still answer reads (--max-replica-lag). */
export const DEFAULT_MAX_REPLICA_LAG = 30;
