import { statfsSync } from 'node:fs';
import { Gauge, type Registry } from 'prom-client';

/**
 * The file system of `dir` as df counts it: the share in use (0 to 1) and the bytes free for Vigil; undefined
 * when it cannot be read (the folder is gone).
 */
export function readDiskUsage(dir: string): { ratio: number; free: number } | undefined {
  try {
    const s = statfsSync(dir);
    const total = s.blocks * s.bsize;
    // Space for unprivileged users (bavail), as df shows it: the root reserve is not Vigil's to use.
    const free = s.bavail * s.bsize;
    const used = (s.blocks - s.bfree) * s.bsize;
    return { ratio: total > 0 ? used / (used + free) : 0, free };
  } catch {
    return undefined;
  }
}

/**
 * `vigil_data_disk_used_ratio` and `vigil_data_disk_free_bytes`: the file system of the data folder, read
 * when metrics are scraped (one statfs call), for the "disk > 80 %" alert of packaging/prometheus.
 */
export function registerDiskMetrics(registry: Registry, dataDir: string): void {
  const read = () => readDiskUsage(dataDir);
  new Gauge({
    name: 'vigil_data_disk_used_ratio',
    help: 'Share of the data folder file system in use (0 to 1), as df counts it.',
    registers: [registry],
    collect() {
      const r = read();
      if (r) this.set(r.ratio);
    },
  });
  new Gauge({
    name: 'vigil_data_disk_free_bytes',
    help: 'Bytes free for Vigil on the data folder file system.',
    registers: [registry],
    collect() {
      const r = read();
      if (r) this.set(r.free);
    },
  });
}
