/**
 * Bull Board at /admin/queues over every queue of every pool. Read-only
 * unless `producer.boardReadOnly` is false: retry/clean/remove buttons on a
 * production fleet are a decision, not a default. With auth on, the auth hook
 * (producer/auth/) guards it like the API: a browser logs in with HTTP Basic
 * (any user name, the API key as the password); viewing needs `read`, every
 * other method of its API (retry, clean, remove, promote, pause) `admin`.
 */
import { createBullBoard } from '@bull-board/api';
import { BullMQAdapter } from '@bull-board/api/bullMQAdapter';
import { FastifyAdapter } from '@bull-board/fastify';
import type { Queue } from 'bullmq';
import type { FastifyInstance } from 'fastify';
import { FleetError } from '../common/errors.ts';
import { sendError } from './http-errors.ts';

export const BOARD_PATH = '/admin/queues';

export interface BoardQueue {
  queue: Queue;
  displayName: string;
}

export async function registerBoard(
  app: FastifyInstance,
  queues: readonly BoardQueue[],
  readOnly: boolean,
): Promise<void> {
  const serverAdapter = new FastifyAdapter();
  serverAdapter.setBasePath(BOARD_PATH);
  createBullBoard({
    queues: queues.map((q) => new BullMQAdapter(q.queue, { readOnlyMode: readOnly, displayName: q.displayName })),
    serverAdapter,
    options: { uiConfig: { boardTitle: 'interfleet' } },
  });
  await app.register(
    async (board) => {
      // Bull Board decodes some query values a second time (activeQueue, queueName): a '%' left
      // after the first decoding made decodeURIComponent throw, a 500 instead of a 400.
      board.addHook('onRequest', async (request, reply) => {
        const bad = undecodableQueryKey(request.query);
        if (bad !== undefined) {
          return sendError(
            reply,
            new FleetError('bad_request', `${bad}: not a valid percent-encoded value`, { param: bad }),
          );
        }
      });
      await board.register(serverAdapter.registerPlugin());
    },
    { prefix: BOARD_PATH },
  );
}

/** The first query parameter whose value decodeURIComponent cannot decode. */
function undecodableQueryKey(query: unknown): string | undefined {
  for (const [key, value] of Object.entries((query ?? {}) as Record<string, unknown>)) {
    for (const v of Array.isArray(value) ? value : [value]) {
      if (typeof v !== 'string') continue;
      try {
        decodeURIComponent(v);
      } catch {
        return key;
      }
    }
  }
  return undefined;
}
