/**
 * Preloaded into a Vigil node by the cluster benchmark (`NODE_OPTIONS=--import <this file>`: Node 20 refuses
 * `--cpu-prof` there): the first SIGUSR2 starts V8's CPU profiler on the main thread, the second stops it and
 * writes `$BENCH_PROFILE_DIR/<pid>.cpuprofile` (not a VIGIL_ variable: the dev cluster keeps those from its members), so that a profile covers exactly
 * the benchmark's measured window, not the node's start. Plain JavaScript: it runs before tsx is loaded.
 */
import { writeFileSync } from 'node:fs';
import { Session } from 'node:inspector';
import { join } from 'node:path';

const dir = process.env.BENCH_PROFILE_DIR;
if (dir) {
  const session = new Session();
  session.connect();
  const post = (method, params) =>
    new Promise((resolve, reject) =>
      session.post(method, params, (err, result) => (err ? reject(err) : resolve(result))),
    );
  let profiling = false;
  process.on('SIGUSR2', () => {
    const step = profiling
      ? post('Profiler.stop').then(({ profile }) =>
          writeFileSync(join(dir, `${process.pid}.cpuprofile`), JSON.stringify(profile)),
        )
      : post('Profiler.enable')
          .then(() => post('Profiler.setSamplingInterval', { interval: 500 }))
          .then(() => post('Profiler.start'));
    profiling = !profiling;
    step.catch((err) => process.stderr.write(`cpu profile: ${err}\n`));
  });
}
