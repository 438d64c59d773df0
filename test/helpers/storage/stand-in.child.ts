/**
 * Child-process entry of a storage stand-in server (see stand-in.ts): starts
 * the GCS or OCI server named in STAND_IN_KIND with the options in
 * STAND_IN_OPTIONS, reports `ready` with its URL, and answers control
 * messages. Exits when the parent goes away.
 */
import { startGcsServer, type StandInServer } from './gcs-server.ts';
import type { StandInOptions } from './memory-store.ts';
import { startOciServer } from './oci-server.ts';

interface ControlMessage {
  type: 'deny' | 'counts';
  id: number;
  bucket?: string;
  denied?: boolean;
}

const options = JSON.parse(process.env.STAND_IN_OPTIONS ?? '{}') as StandInOptions;
const server: StandInServer =
  process.env.STAND_IN_KIND === 'oci' ? await startOciServer(options) : await startGcsServer(options);

process.on('message', (raw) => {
  const msg = raw as ControlMessage;
  if (msg.type === 'deny') server.store.deny(msg.bucket ?? '', msg.denied ?? true);
  process.send!({ type: 'reply', id: msg.id, counts: server.store.counts });
});

const stop = () => void server.close().then(() => process.exit(0));
process.on('disconnect', stop);
process.on('SIGTERM', stop);
process.send!({ type: 'ready', url: server.url });
