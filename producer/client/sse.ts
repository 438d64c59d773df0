/**
 * Server-sent events from a fetch response body, parsed by eventsource-parser
 * (field rules, multi-line data, comments, events split across chunks).
 * Stopping the iteration early cancels the body, which closes the connection.
 */
import { createParser, type EventSourceMessage } from 'eventsource-parser';

export type { EventSourceMessage };

export async function* sseEvents(body: ReadableStream<Uint8Array>): AsyncGenerator<EventSourceMessage> {
  const events: EventSourceMessage[] = [];
  const parser = createParser({ onEvent: (event) => events.push(event) });
  const decoder = new TextDecoder();
  for await (const chunk of body) {
    parser.feed(decoder.decode(chunk, { stream: true }));
    yield* events.splice(0);
  }
  parser.feed(decoder.decode());
  yield* events.splice(0);
}
