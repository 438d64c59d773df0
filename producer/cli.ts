/** Entry point of the `interfleet` CLI: `tsx producer/cli.ts batch submit …` (bin/interfleet runs it). */
import { InterfleetClient } from './client/index.ts';
import { describeError, EXIT_FAILED } from './cli/errors.ts';
import { buildProgram } from './cli/program.ts';

const program = buildProgram({
  stdout: process.stdout,
  client: (baseUrl) => new InterfleetClient({ baseUrl }),
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
