/**
 * OCI credentials for tests against the OCI stand-in: an RSA key pair made
 * per run (the stand-in checks every request's signature against the public
 * half), as an auth provider or as an OCI config file (the config-file auth
 * path a deployment uses).
 */
import { generateKeyPairSync } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import * as common from 'oci-common';
import { afterAll, beforeAll } from 'vitest';

export const ociTestIdentity = {
  tenancy: 'ocid1.tenancy.oc1..interfleettest',
  user: 'ocid1.user.oc1..interfleettest',
  fingerprint: '12:34:56',
} as const;

export function ociKeyPair(): { publicKey: string; privateKey: string } {
  return generateKeyPairSync('rsa', {
    modulusLength: 2048,
    publicKeyEncoding: { type: 'spki', format: 'pem' },
    privateKeyEncoding: { type: 'pkcs8', format: 'pem' },
  });
}

export function ociSigner(privateKey: string): common.SimpleAuthenticationDetailsProvider {
  const { tenancy, user, fingerprint } = ociTestIdentity;
  return new common.SimpleAuthenticationDetailsProvider(tenancy, user, fingerprint, privateKey, null);
}

/** Writes the private key and an OCI config file naming it into `dir`; returns the config file's path. */
export async function writeOciConfigFile(dir: string, privateKey: string, name = 'oci'): Promise<string> {
  const keyFile = join(dir, `${name}-key.pem`);
  const configFile = join(dir, `${name}-config`);
  await writeFile(keyFile, privateKey);
  const { tenancy, user, fingerprint } = ociTestIdentity;
  const lines = ['[DEFAULT]', `user=${user}`, `fingerprint=${fingerprint}`, `tenancy=${tenancy}`];
  await writeFile(configFile, [...lines, 'region=us-ashburn-1', `key_file=${keyFile}`, ''].join('\n'));
  return configFile;
}

/** The SDK console.warn()s every non-retryable answer (404, 409, 416), which tests provoke on purpose. */
export function quietOciSdkWarnings(): void {
  const warn = console.warn;
  beforeAll(() => {
    console.warn = (...args: unknown[]) => {
      if (!String(args[0]).startsWith('Request cannot be retried')) warn(...args);
    };
  });
  afterAll(() => {
    console.warn = warn;
  });
}
