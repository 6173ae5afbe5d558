/*
 * bench.h — shared pieces of norn-bench: subcommand entry points, timing,
 * latency samples with percentiles, and option parsing.
 *
 * Exit codes of every subcommand:
 *   0  the run completed without errors
 *   1  some calls failed (RPC error statuses, storage errors)
 *   2  usage error
 *   3  the server could not be reached
 */
#ifndef NORN_BENCH_H
#define NORN_BENCH_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "rpc.h"

enum { BENCH_OK = 0, BENCH_FAILED = 1, BENCH_USAGE = 2, BENCH_UNREACHABLE = 3 };

int bench_ingest(int argc, char **argv);
int bench_list(int argc, char **argv);
int bench_load(int argc, char **argv);

/* CLOCK_MONOTONIC in nanoseconds. */
uint64_t bench_now_ns(void);
/* CLOCK_REALTIME in microseconds since the epoch. */
uint64_t bench_wall_micros(void);

/* A growable array of latency samples in nanoseconds. */
typedef struct LatSamples {
    uint64_t *ns;
    size_t n, cap;
} LatSamples;

void lat_add(LatSamples *l, uint64_t ns);
void lat_merge(LatSamples *dst, const LatSamples *src);
void lat_free(LatSamples *l);
/* Sorts in place; call before lat_pct. */
void lat_sort(LatSamples *l);
/* Nearest-rank percentile (0 < p <= 100) of sorted samples; 0 when empty. */
uint64_t lat_pct(const LatSamples *l, double p);
uint64_t lat_mean(const LatSamples *l);
/* "p50 1.234 ms  p90 ...  p99 ...  max ...  (n=...)" */
void lat_print(FILE *out, const char *label, LatSamples *l);

/* Strict unsigned parse of `s` into [min, max]; -1 (with a message on
 * stderr naming `opt`) when it is not a number in range. */
int bench_parse_u64(const char *opt, const char *s, uint64_t min, uint64_t max, uint64_t *out);
int bench_parse_double(const char *opt, const char *s, double min, double max, double *out);

/* Exit code for a failed call. */
int bench_exit_for(RpcCode code);

/* splitmix64: a fast deterministic generator for synthetic data. */
uint64_t bench_rand(uint64_t *state);

#endif
