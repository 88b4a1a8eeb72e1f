import { execFileSync } from 'node:child_process';
import { cpus as machineCpus } from 'node:os';

/**
 * Load-test hygiene on a small machine: the app gets a CPU of its own, the load generator (this process) and the
 * upstream simulator share the rest, so the latencies measured are the app's and not the harness's scheduling.
 * Without taskset or a second CPU nothing is pinned.
 */
export function pinCpus(appPid: number, harnessPids: number[]): string {
  // The machine's CPUs, not this process's (availableParallelism shrinks once the harness has pinned itself).
  const cpus = machineCpus().length;
  if (cpus < 2) return 'not pinned (one CPU)';
  try {
    execFileSync('taskset', ['-cp', '0', String(appPid)], { stdio: 'ignore' });
    for (const pid of harnessPids) execFileSync('taskset', ['-cp', `1-${cpus - 1}`, String(pid)], { stdio: 'ignore' });
    return `app on CPU 0, load generator and simulator on CPU 1-${cpus - 1}`;
  } catch {
    return 'not pinned (no taskset)';
  }
}
