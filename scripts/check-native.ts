/**
 * Smoke check of the native pieces the install must provide, with no install
 * scripts run: esbuild (tsx compiles this file with it), node-llama-cpp's
 * prebuilt CPU binary, and msgpackr's (BullMQ) optional native extension.
 * Usage: tsx scripts/check-native.ts
 */
import { createRequire } from 'node:module';
import { getLlama, LlamaLogLevel } from 'node-llama-cpp';

const started = performance.now();
const llama = await getLlama({ gpu: false, build: 'never', logLevel: LlamaLogLevel.error });
const binding = `node-llama-cpp ${llama.buildType} build, gpu: ${String(llama.gpu)}`;
await llama.dispose();

const require = createRequire(import.meta.url);
const msgpackr = require('msgpackr') as { isNativeAccelerationEnabled?: boolean };
const native = msgpackr.isNativeAccelerationEnabled ? 'native' : 'pure JS (slower, still correct)';

console.log(`check-native: ${binding}; msgpackr ${native}; ${Math.round(performance.now() - started)} ms`);
