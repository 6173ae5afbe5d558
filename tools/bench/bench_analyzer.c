/*
 * bench_analyzer.c — times the step analyzer alone (no gRPC, no storage):
 * microseconds per step and per KB of payload, for small tool inputs with
 * 1 KB and 64 KB tool outputs (ASCII, and UTF-8 which takes the slower
 * Unicode regexes), a 64 KB input, and a regex-hostile output. Target:
 * under 10 µs per KB of payload.
 *
 * Build and run (from the repository root, after `cmake --build build`):
 *   cc -O2 -std=c11 -D_GNU_SOURCE -Iserver -Icommon -Ibuild/gen server/analyzer*.c \
 *     tools/bench/bench_analyzer.c build/gen/google/protobuf/struct.pb-c.c \
 *     build/gen/norn/v1/common.pb-c.c build/gen/google/protobuf/timestamp.pb-c.c \
 *     -lprotobuf-c -lpcre2-8 -lpthread -o build/bench_analyzer
 *   build/bench_analyzer
 */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "analyzer.h"

/* Steps per invocation before the state starts over, like a long session. */
#define STEPS_PER_INVOCATION 50

static double now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e6 + (double)ts.tv_nsec / 1e3;
}

/* English-like tool output full of the injection patterns' first words
 * ("set", "mark", "do not", "ignore", "no issues") so the regexes work for
 * their living, without ever reaching two matches. */
static char *make_output(size_t bytes, bool non_ascii)
{
    static const char *const words[] = {
        "the",   "settings", "market", "do",      "not",   "ignore",  "ignored", "no",
        "issue", "checks",   "all",    "results", "score", "quality", "data",    "request",
        "page",  "returned", "status", "200",     "with",  "content", "about",   "python",
        "async", "tutorial", "offset", "dataset", "asset", "remark",  "done.",   "overall"};
    char *s = malloc(bytes + 1);
    if (!s)
        abort();
    size_t len = 0;
    unsigned seed = 12345;
    while (len < bytes) {
        seed = seed * 1103515245u + 12345u;
        const char *w = words[(seed >> 16) % (sizeof words / sizeof words[0])];
        if (non_ascii && (seed >> 4) % 16 == 0)
            w = "caf\xc3\xa9"; /* takes the scan off its ASCII fast path */
        size_t n = strlen(w);
        for (size_t i = 0; i < n && len < bytes; i++)
            s[len++] = w[i];
        if (len < bytes)
            s[len++] = (seed >> 8) % 11 == 0 ? '\n' : ' ';
    }
    s[len] = '\0';
    return s;
}

/* {"query": "<text> <i>", "max_results": 5, "verify": true} */
static Google__Protobuf__Struct *make_input(const char *query_text, int i)
{
    static Google__Protobuf__Struct__FieldsEntry entries[3];
    static Google__Protobuf__Struct__FieldsEntry *fields[3];
    static Google__Protobuf__Value values[3];
    static Google__Protobuf__Struct s;
    static char *query;
    free(query);
    size_t n = strlen(query_text) + 16;
    query = malloc(n);
    if (!query)
        abort();
    snprintf(query, n, "%s %d", query_text, i);
    google__protobuf__struct__init(&s);
    for (int k = 0; k < 3; k++) {
        google__protobuf__struct__fields_entry__init(&entries[k]);
        google__protobuf__value__init(&values[k]);
        entries[k].value = &values[k];
        fields[k] = &entries[k];
    }
    entries[0].key = "query";
    values[0].kind_case = GOOGLE__PROTOBUF__VALUE__KIND_STRING_VALUE;
    values[0].string_value = query;
    entries[1].key = "max_results";
    values[1].kind_case = GOOGLE__PROTOBUF__VALUE__KIND_NUMBER_VALUE;
    values[1].number_value = 5;
    entries[2].key = "verify";
    values[2].kind_case = GOOGLE__PROTOBUF__VALUE__KIND_BOOL_VALUE;
    values[2].bool_value = 1;
    s.n_fields = 3;
    s.fields = fields;
    return &s;
}

typedef struct Case {
    const char *name;
    const char *input_text; /* the query string (payload of the input) */
    const char *output;
    size_t output_len;
    int steps;
} Case;

static void run_case(const Case *c)
{
    AnalyzerConfig cfg = analyzer_config_default();
    AnalyzerState *st = analyzer_state_new(&cfg);
    if (!st)
        abort();
    AnalyzerResult r = {0};
    size_t issues = 0;
    double before_us = 0, after_us = 0;
    for (int i = 0; i < c->steps; i++) {
        uint32_t step = (uint32_t)(i % STEPS_PER_INVOCATION) + 1;
        if (step == 1)
            analyzer_begin_invocation(st, NORN__V1__GUARD_MODE__GUARD_MODE_MONITOR);
        /* Every fourth step repeats the previous input: duplicates and loop
         * rules get exercised too. */
        Google__Protobuf__Struct *in = make_input(c->input_text, i - (i % 4 == 3));
        double t0 = now_us();
        if (analyzer_before_tool(st, step, "web_search", in, &r) != 0)
            abort();
        double t1 = now_us();
        issues += r.n_issues;
        if (analyzer_after_tool(st, step, "web_search", c->output, c->output_len,
                                NORN__V1__RESULT_STATUS__RESULT_STATUS_SUCCESS, &r) != 0)
            abort();
        double t2 = now_us();
        issues += r.n_issues;
        before_us += t1 - t0;
        after_us += t2 - t1;
    }
    analyzer_result_clear(&r);
    analyzer_state_free(st);
    double payload_kb = (double)(strlen(c->input_text) + c->output_len) / 1024.0;
    double step_us = (before_us + after_us) / c->steps;
    printf("%-34s %7d steps  before %7.2f us  after %8.2f us  step %8.2f us", c->name, c->steps,
           before_us / c->steps, after_us / c->steps, step_us);
    /* Per KB only where the payload is large enough for it to mean much. */
    if (payload_kb >= 1.0)
        printf("  %6.2f us/KB", step_us / payload_kb);
    printf("  (payload %.1f KB, %zu issues)\n", payload_kb, issues);
}

int main(void)
{
    char *out1k = make_output(1024, false);
    char *out64k = make_output(64 * 1024, false);
    char *utf64k = make_output(64 * 1024, true);
    char *in64k = make_output(64 * 1024, false);
    /* Worst case for pattern 1: "set" everywhere, each start backtracks
     * through .{0,20}. */
    char *hostile = malloc(64 * 1024 + 1);
    if (!hostile)
        abort();
    for (size_t i = 0; i < 64 * 1024; i++)
        hostile[i] = "set quality "[i % 12];
    hostile[64 * 1024] = '\0';

    const Case cases[] = {
        {"small input, 1 KB output", "python asyncio tutorial", out1k, 1024, 20000},
        {"small input, 64 KB output", "python asyncio tutorial", out64k, 64 * 1024, 2000},
        {"small input, 64 KB UTF-8 output", "python asyncio tutorial", utf64k, 64 * 1024, 2000},
        {"64 KB input, 1 KB output", in64k, out1k, 1024, 2000},
        {"small input, 64 KB 'set quality'", "python asyncio tutorial", hostile, 64 * 1024, 500},
        {"small input, empty output", "python asyncio tutorial", "", 0, 50000},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        run_case(&cases[i]);
    free(out1k);
    free(out64k);
    free(utf64k);
    free(in64k);
    free(hostile);
    return 0;
}
