/**
 * Whether the producer checks API keys, decided once at start from the
 * configured mode, the listen address and how many keys were loaded. A pure
 * function: the producer (and the npm start launcher) print its notice.
 */
import type { Config } from '../../common/config.ts';

export type AuthMode = Config['producer']['auth']['mode'];

export type AuthDecision =
  { readonly enabled: true; readonly keys: number } | { readonly enabled: false; readonly notice: string };

export class AuthStartError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'AuthStartError';
  }
}

const HOW_TO_TURN_ON =
  'set INTERFLEET_API_KEYS_FILE to a key file (or producer.auth.keysFile; README: "Authentication and tenants")';

/** 127.0.0.0/8, ::1 and localhost: only this machine can connect. */
export function isLoopback(host: string): boolean {
  const h = host.replace(/^\[|\]$/g, '').toLowerCase();
  return h === 'localhost' || h === '::1' || /^127(\.\d{1,3}){3}$/.test(h) || h === '::ffff:127.0.0.1';
}

export function decideAuth(mode: AuthMode, host: string, keys: number): AuthDecision {
  if (mode === 'none') {
    if (keys > 0) {
      throw new AuthStartError(
        `producer.auth.mode is none but ${keys} API key(s) are configured: remove the keys or the mode`,
      );
    }
    return { enabled: false, notice: `auth is off (producer.auth: none): every caller may do anything` };
  }
  if (keys > 0) return { enabled: true, keys };
  if (mode === 'keys') {
    throw new AuthStartError(`producer.auth.mode is keys but no API keys are configured: ${HOW_TO_TURN_ON}`);
  }
  if (isLoopback(host)) {
    return {
      enabled: false,
      notice: `auth is off: no API keys and the API listens on loopback (${host}) only. To turn it on, ${HOW_TO_TURN_ON}`,
    };
  }
  throw new AuthStartError(
    `refusing to listen on ${host} without API keys: anyone who reaches it could run anything. ` +
      `Either ${HOW_TO_TURN_ON}, or set producer.auth: none (env INTERFLEET_AUTH=none) to run without auth on purpose`,
  );
}
