/**
 * interfleet callers: POST /v1/infer over keep-alive HTTP/1.1 connections
 * (node:http, at most `maxSockets` of them), as a service in front of the
 * producer would call it. A non-200 answer counts as an error.
 */
import http from 'node:http';
import type { Call } from './load.ts';

export const INFER_BODY = { model: 'bench', input: { task: 'sentiment', text: 'hi' } };

export interface HttpCaller {
  call: Call;
  /** One request whose parsed answer is returned (to show what is measured). */
  probe(): Promise<{ status: number; body: unknown }>;
  close(): void;
}

/**
 * @param payload the JSON body sent with every call
 * @param expectStatus the status a call must answer to count as a success
 */
export function startHttpCaller(
  baseUrl: string,
  maxSockets: number,
  payload: unknown = INFER_BODY,
  expectStatus = 200,
  timeoutMs = 10_000,
): HttpCaller {
  const url = new URL('/v1/infer', baseUrl);
  const agent = new http.Agent({ keepAlive: true, maxSockets, scheduling: 'lifo' });
  const body = Buffer.from(JSON.stringify(payload));
  const options: http.RequestOptions = {
    host: url.hostname,
    port: url.port,
    path: url.pathname,
    method: 'POST',
    agent,
    timeout: timeoutMs,
    headers: { 'content-type': 'application/json', 'content-length': body.length },
  };
  const send = (): Promise<{ status: number; text: string }> =>
    new Promise((resolve, reject) => {
      const req = http.request(options, (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('error', reject);
        res.on('end', () => resolve({ status: res.statusCode ?? 0, text: Buffer.concat(chunks).toString('utf8') }));
      });
      req.on('timeout', () => req.destroy(new Error(`no answer within ${timeoutMs} ms`)));
      req.on('error', reject);
      req.end(body);
    });
  return {
    async call() {
      const res = await send();
      if (res.status !== expectStatus) throw new Error(`HTTP ${res.status}: ${res.text.slice(0, 200)}`);
    },
    async probe() {
      const res = await send();
      return { status: res.status, body: JSON.parse(res.text) as unknown };
    },
    close() {
      agent.destroy();
    },
  };
}
