/*
 * bench_more.h — more norn-bench subcommands: the watch feed (commit-to-
 * watcher latency, memory per idle watcher), BeginStep/EndStep round trips,
 * and the admin reads (ListAuditEvents, GetStats). Same exit codes as the
 * commands in bench.h.
 */
#ifndef NORN_BENCH_MORE_H
#define NORN_BENCH_MORE_H

int bench_watch(int argc, char **argv);
int bench_steps(int argc, char **argv);
int bench_admin(int argc, char **argv);

#endif
