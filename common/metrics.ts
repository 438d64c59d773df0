/** Shared Prometheus conventions. */

/** Seconds; resolves single milliseconds, since real-time answers are measured in them. */
export const latencyBuckets = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60];
