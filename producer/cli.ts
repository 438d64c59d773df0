/** Entry point of the `interfleet` CLI: `tsx producer/cli.ts batch submit …` (bin/interfleet runs it). */
import { InterfleetClient } from './client/index.ts';
import { describeError, EXIT_FAILED } from './cli/errors.ts';
import { buildProgram } from './cli/program.ts';

const program = buildProgram({
  stdout: process.stdout,
  // The key is a global option, read when a command makes its client (after parsing).
  client: (baseUrl) => new InterfleetClient({ baseUrl, apiKey: program.opts<{ apiKey?: string }>().apiKey }),
  now: Date.now,
  setExitCode: (code) => {
    process.exitCode = code;
  },
});

try {
  await program.parseAsync(process.argv);
} catch (err) {
  process.stderr.write(`interfleet: ${describeError(err, program.opts<{ url: string }>().url)}\n`);
  process.exitCode = EXIT_FAILED;
}
