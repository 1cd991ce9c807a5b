#!/usr/bin/env python3
"""The biggest blocks of a folded-stacks file (inferno-collapse-perf's
output), in percent of all samples, so two profiles compare as text:

- by component: every sample goes to the system call it is in (sleeping
  in futex, fsync, TCP send, ...), else to the first frame from the leaf up
  that belongs to a known component (SQLite, logging, HTTP/2, allocation,
  ...), so the shares add up to 100%;
- by subsystem: samples with the subsystem anywhere in their stack
  (logging and its allocations and writes together, for example);
- the functions with the most samples of their own, and per thread name.

Usage: python3 load/folded-summary.py FILE.folded [TOP]
"""

import collections
import re
import sys

# The system call a sample is in decides first (a context switch inside
# futex_wait is time spent going to sleep), then the first user-space
# component from the leaf up, then the kernel's leftovers.
SYSCALLS = [
    ("kernel: fsync (SQLite commit/WAL sync, ext4 + virtio disk)", r"^(__x64_sys_fsync|__x64_sys_fdatasync)$"),
    ("kernel: futex wait (a thread goes to sleep)", r"^(futex_wait|__futex_wait)$"),
    ("kernel: futex wake (waking another thread)", r"^futex_wake$"),
    ("kernel: epoll_wait (I/O driver parks)", r"^__x64_sys_epoll_wait$"),
    ("kernel: eventfd write (waking the I/O driver)", r"^eventfd_write$"),
    ("kernel: TCP send", r"^(tcp_sendmsg|sock_write_iter|__sys_sendto)$"),
    ("kernel: TCP receive", r"^(tcp_recvmsg|sock_read_iter|__sys_recvfrom)$"),
    ("kernel: file pread/pwrite (SQLite pages, WAL)", r"^(__x64_sys_pread64|__x64_sys_pwrite64)$"),
    ("kernel: nanosleep/sched_yield", r"nanosleep|sched_yield"),
]
COMPONENTS = [
    ("SQLite engine (sqlite3*)", r"^sqlite3"),
    ("crypto (ed25519, sha2)", r"ed25519|curve25519|sha2::|^subtle::"),
    ("logging: tracing-subscriber fmt (formatting, writing)", r"tracing_subscriber::fmt"),
    ("OpenTelemetry (span export, context)", r"opentelemetry"),
    ("spans: tracing registry/core", r"tracing_subscriber|tracing_core|^tracing::|<tracing::"),
    ("metrics (prometheus-client)", r"prometheus_client"),
    ("JSON (serde_json)", r"serde_json"),
    ("transcoding (prost-reflect)", r"prost_reflect"),
    ("protobuf (prost)", r"^prost::|<prost::|prost::encoding"),
    ("memcpy/memmove", r"memmove|memcpy"),
    ("allocation (malloc/free)", r"^(malloc|cfree@GLIBC_2.2.5|free|realloc|calloc|_int_malloc|_int_free|_int_realloc|unlink_chunk.*|malloc_consolidate|__rust_alloc|__rust_dealloc|__rust_realloc)$"),
    ("HTTP/2 (h2)", r"^h2::|<h2::|h2::proto|h2::codec"),
    ("HTTP/1 (hyper h1)", r"hyper::proto::h1"),
    ("hyper (other)", r"hyper"),
    ("tonic (codec, transport)", r"tonic"),
    ("sqlx (driver, pool, Any)", r"sqlx"),
    ("flume channel (sqlx-sqlite worker)", r"flume"),
    ("tower layers", r"^tower|<tower"),
    ("tokio runtime (scheduler, I/O, timers)", r"tokio"),
    ("kernel: preemption and other context switches", r"^(schedule|__schedule|finish_task_switch.*)$"),
    ("kernel: other syscalls and interrupts", r"^(do_syscall_64|entry_SYSCALL_64.*|asm_common_interrupt|handle_softirqs)$"),
]

# Samples with any of these anywhere in the stack.
SUBSYSTEMS = [
    ("fsync", r"^(__x64_sys_fsync|__x64_sys_fdatasync)$"),
    ("SQLite engine, its I/O and fsync included", r"^sqlite3"),
    ("sqlx-sqlite worker threads (all they do)", r"^sqlx-sqlite-wor$"),
    ("futex (wait + wake)", r"^__x64_sys_futex$"),
    ("scheduler: schedule()", r"^schedule$"),
    ("epoll_wait", r"^__x64_sys_epoll_wait$"),
    ("sqlx pool acquire/release", r"sqlx_core::pool"),
    ("sqlx Any driver (conversion layer)", r"sqlx_core::any"),
    ("crypto: ed25519 verify/sign", r"ed25519|curve25519"),
    ("crypto: sha2", r"sha2::"),
    ("logging: tracing-subscriber fmt", r"tracing_subscriber::fmt"),
    ("tracing-subscriber (fmt + registry + layers)", r"tracing_subscriber"),
    ("OpenTelemetry / tracing-opentelemetry", r"opentelemetry"),
    ("metrics (prometheus-client)", r"prometheus_client"),
    ("JSON (serde_json)", r"serde_json"),
    ("transcoding (prost-reflect)", r"prost_reflect"),
    ("HTTP/2 (h2)", r"^h2::|<h2::"),
    ("HTTP/1 (hyper h1)", r"hyper::proto::h1"),
    ("tonic", r"tonic"),
    ("TCP send", r"^tcp_sendmsg$"),
    ("TCP receive", r"^tcp_recvmsg$"),
    ("allocation (malloc/free)", r"^(malloc|cfree@GLIBC_2.2.5|free|realloc|_int_malloc|_int_free)$"),
]


def main():
    path = sys.argv[1]
    top = int(sys.argv[2]) if len(sys.argv) > 2 else 25
    syscalls = [(name, re.compile(p)) for name, p in SYSCALLS]
    components = [(name, re.compile(p)) for name, p in COMPONENTS]
    subsystems = [(name, re.compile(p)) for name, p in SUBSYSTEMS]
    total = 0
    by_component = collections.Counter()
    by_subsystem = collections.Counter()
    own = collections.Counter()
    threads = collections.Counter()
    for line in open(path):
        stack, _, count = line.rstrip("\n").rpartition(" ")
        if not stack:
            continue
        n = int(count)
        total += n
        frames = [re.sub(r"::h[0-9a-f]{16}$", "", f) for f in stack.split(";")]
        threads[frames[0]] += n
        own[frames[-1]] += n
        component = next(
            (name for name, rx in syscalls if any(rx.search(f) for f in frames)),
            None,
        ) or next(
            (name for frame in reversed(frames) for name, rx in components if rx.search(frame)),
            "other",
        )
        by_component[component] += n
        for name, rx in subsystems:
            if any(rx.search(f) for f in frames):
                by_subsystem[name] += n
    if not total:
        sys.exit(f"error: no samples in {path}")

    def show(title, counter, limit, minimum=0.0):
        print(title)
        for name, n in counter.most_common(limit):
            if 100 * n / total >= minimum:
                print(f"  {100 * n / total:5.1f}%  {name[:160]}")

    show("by thread", threads, 8)
    show("by component (each sample once: its system call, else the first known component from the leaf up; adds up to 100%)", by_component, 40)
    show("by subsystem (anywhere in the stack)", by_subsystem, 40, 0.5)
    show("functions, self", own, top)


if __name__ == "__main__":
    main()
