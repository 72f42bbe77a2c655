"""Sums a `perf script -F comm,tid,ip,sym` profile of a Vigil process by kind of thread and task (bench/perf-ingest.sh).

A thread's kind comes from what any of its samples shows at the base of its stack (V8's platform workers, Node's
worker threads, libuv's pool `worker`); the rest are the engine's own threads. V8's helpers are then split by task,
and the libuv pool by what runs there (the engine's calls, file writes, memory handed back to the system).
"""
import collections
import re
import sys

V8_TASKS = [
    ('TurboFan (JavaScript)', r'OptimizingCompileDispatcher'),
    ('WebAssembly compile', r'wasm::'),
    ('concurrent marking', r'ConcurrentMarking|MarkCompact|IncrementalMarking|MarkingVisitor'),
    ('sweeping', r'Sweeper'),
    ('scavenge', r'Scaveng|MinorMark'),
]
POOL_TASKS = [
    ('madvise (engine memory purge)', r'madvise'),
    ('file writes', r'__GI___libc_write|__libc_write|ext4_'),
    ('engine calls', r'libchdb|\[unknown\]'),
]


def read(path):
    samples = []
    for line in open(path, errors='replace'):
        if line.strip() == '':
            continue
        if not line[0].isspace():
            head = line.split()
            # `comm tid`: the engine names its threads (QueryPipelineEx, ThreadPool, MergeMutate...); Node 20
            # leaves its own (libuv's pool, V8's helpers) named after the process, `node`.
            samples.append((head[-1], [], ' '.join(head[:-1])))
        elif samples:
            parts = line.strip().split(None, 1)
            samples[-1][1].append(parts[1] if len(parts) > 1 else '?')
    return samples


def main(path, pid, log=None):
    samples = read(path)
    kinds = {}
    for tid, stack, comm in samples:
        names = '\n'.join(stack)
        if tid == pid:
            kinds[tid] = 'JavaScript (main) thread'
        elif 'PlatformWorkerThread' in names:
            kinds[tid] = 'V8 helpers'
        elif 'node::worker::Worker' in names:
            kinds[tid] = 'worker thread (PGlite)'
        elif tid not in kinds and (comm == 'node' or re.search(r'^worker$', names, re.M)):
            kinds[tid] = 'libuv pool'
        elif tid not in kinds:
            kinds[tid] = 'engine threads'
    counts = collections.Counter()
    for tid, stack, _ in samples:
        kind = kinds.get(tid, 'engine threads')
        names = '\n'.join(stack)
        tasks = V8_TASKS if kind == 'V8 helpers' else POOL_TASKS if kind == 'libuv pool' else []
        task = next((t for t, p in tasks if re.search(p, names)), 'other' if tasks else None)
        counts[f'{kind}: {task}' if task else kind] += 1
    total = sum(counts.values())
    events = cpu_s = None
    if log:
        text = open(log).read()
        m = re.search(r'"accepted": (\d+)', text)
        events = int(m.group(1)) if m else None
        m = re.search(r'"vigil_cpu_s": ([\d.]+)', text)
        cpu_s = float(m.group(1)) if m else None
    print(f'{total} samples' + (f', {events} events, {cpu_s} CPU-s of the process' if events and cpu_s else ''))
    groups = collections.Counter()
    for k, n in counts.items():
        groups[k.split(':')[0]] += n
    for group, g in groups.most_common():
        for kind, n in counts.most_common():
            if kind.split(':')[0] != group:
                continue
            share = n / total
            per_event = f'  ~{share * cpu_s / events * 1e6:4.0f} µs an event' if events and cpu_s else ''
            print(f'{kind:50s} {n:6d} {100 * share:5.1f}%{per_event}')


if __name__ == '__main__':
    main(*sys.argv[1:4])
