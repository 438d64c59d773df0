/**
 * Bull Board behind the API keys: 401 with a Basic challenge without a key,
 * a `read` key views but may not retry or clean (403), an `admin` key may;
 * and headless Chromium logs in with the key as the password and sees the
 * queues.
 */
import { chromium, type Browser } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startFleet, type TestFleet } from '../helpers/fleet.ts';

const READ_KEY = 'board-reader-0123456789abcdef';
const ADMIN_KEY = 'board-admin-0123456789abcdef';
const keysYaml = `
keys:
  - { id: viewer, key: ${READ_KEY}, tenant: ops, scopes: [read] }
  - { id: ops-admin, key: ${ADMIN_KEY}, tenant: ops, scopes: [admin] }
`;

let fleet: TestFleet;
let browser: Browser | undefined;

const basic = (key: string) => `Basic ${Buffer.from(`anyone:${key}`).toString('base64')}`;
const board = (path: string, auth: string | undefined, method = 'GET') =>
  fetch(`${fleet.producer.url}/admin/queues${path}`, {
    method,
    headers: auth === undefined ? {} : { authorization: auth },
  });

beforeAll(async () => {
  fleet = await startFleet({
    yaml: 'pools:\n  - name: tiny\n    backend: echo\n',
    workers: 0,
    env: { INTERFLEET_API_KEYS: keysYaml, INTERFLEET_BOARD_READ_ONLY: 'false' },
  });
});
afterAll(async () => {
  await browser?.close();
  await fleet.stop();
});

describe('Bull Board behind API keys', () => {
  it('asks for a key with a Basic challenge', async () => {
    for (const path of ['', '/api/queues']) {
      const res = await board(path, undefined);
      expect(res.status).toBe(401);
      expect(res.headers.get('www-authenticate')).toBe('Basic realm="interfleet", charset="UTF-8"');
    }
    expect((await board('', basic('wrong-key-0123456789abcdef'))).status).toBe(401);
  });

  it('lets a read key view but not retry or clean; an admin key may', async () => {
    const list = await board('/api/queues', basic(READ_KEY));
    expect(list.status).toBe(200);
    const { queues } = (await list.json()) as { queues: Array<{ name: string; displayName?: string }> };
    const queue = queues.find((q) => q.displayName === 'rt.tiny');
    expect(queue).toBeDefined();
    // Every queue of the pool and the batch control queue, where failed chunks, ranks and plans show.
    expect(queues.map((q) => q.displayName).sort()).toEqual(['batch-control', 'bulk.tiny', 'rt.tiny', 'train.tiny']);
    const name = encodeURIComponent(queue!.name);
    // The key as a Bearer token works as well (scripts).
    expect((await board('/api/queues', `Bearer ${READ_KEY}`)).status).toBe(200);
    for (const action of [`/api/queues/${name}/retry/failed`, `/api/queues/${name}/clean/completed`]) {
      const denied = await board(action, basic(READ_KEY), 'PUT');
      expect(denied.status).toBe(403);
      expect(await denied.json()).toMatchObject({ error: { code: 'forbidden' } });
      expect((await board(action, basic(ADMIN_KEY), 'PUT')).status).toBeLessThan(300);
    }
  });

  it('logs headless Chromium in with the key as the password and shows the queues', async () => {
    browser = await chromium.launch({
      executablePath: '/usr/bin/chromium',
      args: [
        '--headless',
        '--no-sandbox',
        '--disable-gpu',
        '--disable-quic',
        '--no-first-run',
        '--disable-background-networking',
        '--disable-component-update',
        '--disable-sync',
      ],
    });
    // Without a login (or with a wrong one) the browser gets the Basic challenge and cannot answer it.
    for (const login of [undefined, { username: 'ops', password: 'wrong-key-0123456789abcdef' }]) {
      const context = await browser.newContext(login === undefined ? {} : { httpCredentials: login });
      const page = await context.newPage();
      // Chromium shows the 401 page, or gives up on credentials it cannot answer the challenge with.
      const outcome = await page.goto(`${fleet.producer.url}/admin/queues`).then(
        (res) => `HTTP ${res!.status()}`,
        (err: unknown) => String(err),
      );
      expect(outcome).toMatch(/^HTTP 401$|ERR_INVALID_AUTH_CREDENTIALS/);
      await context.close();
    }

    const context = await browser.newContext({ httpCredentials: { username: 'ops', password: READ_KEY } });
    const page = await context.newPage();
    const res = await page.goto(`${fleet.producer.url}/admin/queues`);
    expect(res!.status()).toBe(200);
    // The page's own API calls (the queue list) carry the login too.
    await page.getByText('rt.tiny').first().waitFor({ timeout: 15_000 });
    await context.close();
  });
});
