/**
 * Who spends the CPU: user+system time of this process, of child processes
 * (from /proc/<pid>/stat, Linux) and of the Redis server (INFO cpu), sampled
 * around a run so the cost per request of each party can be reported.
 */
import { readFileSync } from 'node:fs';
import type { Redis } from 'ioredis';

const TICKS_PER_S = 100;

/** CPU seconds of a process by pid (user + system, all its threads), or NaN if unreadable. */
export async function procCpuSeconds(pid: number | undefined): Promise<number> {
  return statCpuSeconds(pid === undefined ? undefined : `/proc/${pid}/stat`);
}

/**
 * CPU seconds of a process's main thread alone (its JavaScript; not V8's helper threads, which
 * collect garbage, nor libuv's pool, which does file I/O), or NaN if unreadable.
 */
export async function mainThreadCpuSeconds(pid: number | undefined): Promise<number> {
  return statCpuSeconds(pid === undefined ? undefined : `/proc/${pid}/task/${pid}/stat`);
}

function statCpuSeconds(path: string | undefined): number {
  if (path === undefined) return Number.NaN;
  try {
    const stat = readFileSync(path, 'utf8');
    // The command name (field 2) may contain spaces: split after its closing paren.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(fields[11]) + Number(fields[12])) / TICKS_PER_S;
  } catch {
    return Number.NaN;
  }
}

export async function selfCpuSeconds(): Promise<number> {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1e6;
}

export async function redisCpuSeconds(redis: Redis): Promise<number> {
  const info = await redis.info('cpu');
  const get = (name: string): number => Number(new RegExp(`^${name}:([\\d.]+)`, 'm').exec(info)?.[1] ?? Number.NaN);
  return get('used_cpu_user') + get('used_cpu_sys');
}

export interface CpuProbe {
  name: string;
  read(): Promise<number>;
}

/** Samples every probe; `since()` gives CPU seconds spent by each since the sample. */
export async function sampleCpu(probes: readonly CpuProbe[]): Promise<{ since(): Promise<Record<string, number>> }> {
  const before = await Promise.all(probes.map((p) => p.read()));
  return {
    async since() {
      const after = await Promise.all(probes.map((p) => p.read()));
      return Object.fromEntries(probes.map((p, i) => [p.name, after[i]! - before[i]!]));
    },
  };
}
