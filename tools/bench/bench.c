/*
 * bench.c — norn-bench: load and latency benchmarks for nornd, on the
 * generated client stubs (see docs/benchmarks.md for the numbers).
 *
 *   norn-bench ingest   RecordSteps throughput over concurrent streams
 *   norn-bench load     bulk-loads synthetic sessions straight into a store
 *   norn-bench list     ListSessions latency (first pages and following pages)
 *
 * This file holds the dispatcher and the helpers the subcommands share;
 * each subcommand lives in its own bench_<name>.c.
 */
#include "bench.h"
#include "bench_more.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static void usage(FILE *out)
{
    fputs("usage: norn-bench COMMAND [options]\n"
          "\n"
          "Benchmarks for nornd (the Norn gRPC server).\n"
          "\n"
          "commands:\n"
          "  ingest   RecordSteps throughput (steps/s) over N concurrent streams\n"
          "  load     bulk-load N synthetic sessions into a data dir (nornd not running)\n"
          "  list     ListSessions latency p50/p99/max, first and following pages\n"
          "  watch    WatchSessions commit-to-watcher latency; memory per idle watcher\n"
          "  steps    BeginStep + EndStep round trips per second\n"
          "  admin    ListAuditEvents and GetStats latency p50/p99\n"

          "\n"
          "`norn-bench COMMAND --help` describes each command's options.\n"
          "\n"
          "exit codes: 0 ok, 1 some calls failed, 2 usage, 3 server unreachable\n",
          out);
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return BENCH_USAGE;
    }
    const char *cmd = argv[1];
    if (strcmp(cmd, "-h") == 0 || strcmp(cmd, "--help") == 0 || strcmp(cmd, "help") == 0) {
        usage(stdout);
        return BENCH_OK;
    }
    if (strcmp(cmd, "ingest") == 0)
        return bench_ingest(argc - 1, argv + 1);
    if (strcmp(cmd, "load") == 0)
        return bench_load(argc - 1, argv + 1);
    if (strcmp(cmd, "list") == 0)
        return bench_list(argc - 1, argv + 1);
    if (strcmp(cmd, "watch") == 0)
        return bench_watch(argc - 1, argv + 1);
    if (strcmp(cmd, "steps") == 0)
        return bench_steps(argc - 1, argv + 1);
    if (strcmp(cmd, "admin") == 0)
        return bench_admin(argc - 1, argv + 1);
    fprintf(stderr, "norn-bench: unknown command '%s'\n\n", cmd);
    usage(stderr);
    return BENCH_USAGE;
}

/* ---- shared helpers ------------------------------------------------------ */

uint64_t bench_now_ns(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (uint64_t)t.tv_sec * 1000000000u + (uint64_t)t.tv_nsec;
}

uint64_t bench_wall_micros(void)
{
    struct timespec t;
    clock_gettime(CLOCK_REALTIME, &t);
    return (uint64_t)t.tv_sec * 1000000u + (uint64_t)t.tv_nsec / 1000u;
}

void lat_add(LatSamples *l, uint64_t ns)
{
    if (l->n == l->cap) {
        size_t nc = l->cap ? l->cap * 2 : 4096;
        uint64_t *p = realloc(l->ns, nc * sizeof *p);
        if (!p) {
            fputs("norn-bench: out of memory\n", stderr);
            abort();
        }
        l->ns = p;
        l->cap = nc;
    }
    l->ns[l->n++] = ns;
}

void lat_merge(LatSamples *dst, const LatSamples *src)
{
    for (size_t i = 0; i < src->n; i++)
        lat_add(dst, src->ns[i]);
}

void lat_free(LatSamples *l)
{
    free(l->ns);
    memset(l, 0, sizeof *l);
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

void lat_sort(LatSamples *l)
{
    if (l->n)
        qsort(l->ns, l->n, sizeof *l->ns, cmp_u64);
}

uint64_t lat_pct(const LatSamples *l, double p)
{
    if (!l->n)
        return 0;
    double rank = ceil(p / 100.0 * (double)l->n);
    size_t i = rank < 1 ? 0 : (size_t)rank - 1;
    return l->ns[i < l->n ? i : l->n - 1];
}

uint64_t lat_mean(const LatSamples *l)
{
    if (!l->n)
        return 0;
    long double sum = 0;
    for (size_t i = 0; i < l->n; i++)
        sum += (long double)l->ns[i];
    return (uint64_t)(sum / (long double)l->n);
}

void lat_print(FILE *out, const char *label, LatSamples *l)
{
    lat_sort(l);
    fprintf(out,
            "%-22s p50 %8.3f ms  p90 %8.3f ms  p99 %8.3f ms  max %8.3f ms  mean %8.3f ms  "
            "(n=%zu)\n",
            label, (double)lat_pct(l, 50) / 1e6, (double)lat_pct(l, 90) / 1e6,
            (double)lat_pct(l, 99) / 1e6, l->n ? (double)l->ns[l->n - 1] / 1e6 : 0.0,
            (double)lat_mean(l) / 1e6, l->n);
}

int bench_parse_u64(const char *opt, const char *s, uint64_t min, uint64_t max, uint64_t *out)
{
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || end == s || *end || *s == '-' || v < min || v > max) {
        fprintf(stderr, "norn-bench: %s: expected a whole number in [%llu, %llu], got '%s'\n", opt,
                (unsigned long long)min, (unsigned long long)max, s);
        return -1;
    }
    *out = v;
    return 0;
}

int bench_parse_double(const char *opt, const char *s, double min, double max, double *out)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end || !isfinite(v) || v < min || v > max) {
        fprintf(stderr, "norn-bench: %s: expected a number in [%g, %g], got '%s'\n", opt, min, max,
                s);
        return -1;
    }
    *out = v;
    return 0;
}

int bench_exit_for(RpcCode code)
{
    if (code == RPC_OK)
        return BENCH_OK;
    if (code == RPC_UNAVAILABLE || code == RPC_DEADLINE_EXCEEDED)
        return BENCH_UNREACHABLE;
    return BENCH_FAILED;
}

uint64_t bench_rand(uint64_t *state)
{
    uint64_t z = (*state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}
