/**
 * CPU time of the processes taking part in a benchmark phase, from /proc (Linux): on a shared
 * machine the CPU time per task is steadier than any rate.
 */
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';

let ticksPerSecond = 0;
function hz(): number {
  if (ticksPerSecond === 0) {
    try {
      ticksPerSecond = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;
    } catch {
      ticksPerSecond = 100;
    }
  }
  return ticksPerSecond;
}

/** User + system CPU milliseconds of process `pid` so far (all its threads); NaN if unreadable. */
export function processCpuMs(pid: number): number {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // The command name (field 2) may hold spaces; the fields after it are space-separated.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return ((Number(fields[11]) + Number(fields[12])) * 1000) / hz();
  } catch {
    return NaN;
  }
}

/** This process's user + system CPU milliseconds so far. */
function selfCpuMs(): number {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1000;
}

/**
 * Starts counting the CPU time of this process and of `pids`; the function returned gives the
 * milliseconds used since, all together.
 */
export function cpuMeter(pids: readonly number[]): () => number {
  const total = () => pids.reduce((sum, pid) => sum + processCpuMs(pid), selfCpuMs());
  const start = total();
  return () => total() - start;
}
