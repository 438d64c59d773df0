/** The producer's authentication: API keys → principals, route scopes, tenants and rate limits. */
export { authenticate, BOARD_REALM } from './authenticate.ts';
export { AuthStartError, decideAuth, isLoopback, type AuthDecision } from './auth-mode.ts';
export { KeyFileError, keyDigest, parseKeyFile } from './key-file.ts';
export { KeyTable } from './key-table.ts';
export { loadKeyTable } from './load-keys.ts';
export { registerRateLimit, rateLimitEnabled } from './rate-limit.ts';
export { principalOf } from './request-principal.ts';
export { canSee, jobTenant, listTenant } from './tenant.ts';
