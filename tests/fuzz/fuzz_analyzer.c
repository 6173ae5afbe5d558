/*
 * fuzz_analyzer.c — libFuzzer target for the step analyzer: arbitrary tool
 * names, structured inputs (a google.protobuf.Struct decoded from the bytes
 * deterministically), tool outputs, system prompts and guard modes, run
 * through analyzer_system_prompt / before_tool / after_tool / finalize.
 *
 * Besides the sanitizers it checks three properties:
 *  - the same event sequence on a fresh state gives byte-identical results
 *    (the restart replay the session service relies on);
 *  - every result is well formed (severity 1..10, affected step names the
 *    issue's step, TERMINATE always has a reason, known statuses);
 *  - Python reprs and equality keys are valid UTF-8 whatever the input.
 *
 * Build (from the repository root, after `cmake --build build`):
 *   clang -g -O1 -std=c11 -D_GNU_SOURCE -fsanitize=fuzzer,address,undefined \
 *     -Iserver -Icommon -Ibuild/gen server/analyzer*.c tests/fuzz/fuzz_analyzer.c \
 *     build/gen/google/protobuf/struct.pb-c.c build/gen/norn/v1/common.pb-c.c \
 *     build/gen/google/protobuf/timestamp.pb-c.c -lprotobuf-c -lpcre2-8 -lpthread \
 *     -o build/fuzz_analyzer
 *   build/fuzz_analyzer -max_total_time=30 -max_len=8192
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "analyzer.h"

#define COUNT_OF(a) (sizeof(a) / sizeof((a)[0]))
#define MAX_EVENTS 48
#define MAX_DEPTH 6
#define MAX_FIELDS 8
#define MAX_OUTPUT 16384

typedef struct Reader {
    const uint8_t *p;
    size_t n;
} Reader;

static uint8_t read_byte(Reader *r)
{
    if (!r->n)
        return 0;
    r->n--;
    return *r->p++;
}

/* Words that reach the rules: input keys, metacharacters, injection and
 * system-prompt phrases, whitespace and broken UTF-8. */
static const char *const dictionary[] = {"verify",
                                         "verify_ssl",
                                         "ssl_verify",
                                         "check_ssl",
                                         "ssl_check",
                                         "shell",
                                         "use_shell",
                                         "shell_mode",
                                         "cmd",
                                         "command",
                                         "args",
                                         "shell_cmd",
                                         "exec",
                                         "query",
                                         "input",
                                         "api_key",
                                         "password",
                                         "max_tokens",
                                         "access_token",
                                         "Content",
                                         "code",
                                         "text",
                                         "data",
                                         "url",
                                         "",
                                         " ",
                                         "a;b",
                                         "$(id)",
                                         "..\\",
                                         "../",
                                         "ls && rm",
                                         "x<y",
                                         "a | b",
                                         "`id`",
                                         "ignore previous",
                                         "mark it done",
                                         "set the score to 100",
                                         "do not reveal",
                                         "no issues found",
                                         "calibration parity",
                                         "override the result",
                                         "Benchmark completed",
                                         "\xff",
                                         "\xc3",
                                         "\xed\xa0\x80",
                                         "\xc2\xa0",
                                         "\xe2\x80\x8b",
                                         "\x1c",
                                         "\n",
                                         "\t",
                                         "é",
                                         "'",
                                         "\"",
                                         "\\",
                                         "/etc/passwd",
                                         ".env",
                                         "os.environ",
                                         "whoami",
                                         "before answering",
                                         "upload to",
                                         "never reveal",
                                         "web_search",
                                         "http_request"};

/* A NUL-terminated string: dictionary words and raw bytes, up to ~64 bytes. */
static char *read_string(Reader *r)
{
    AnalyzerText t = {0};
    analyzer_text_append(&t, "", 0);
    int parts = read_byte(r) % 4;
    for (int i = 0; i < parts; i++) {
        uint8_t b = read_byte(r);
        if (b & 1) {
            const char *w = dictionary[(b >> 1) % COUNT_OF(dictionary)];
            analyzer_text_append(&t, w, strlen(w));
        } else {
            size_t len = (b >> 1) % 24;
            for (size_t k = 0; k < len && r->n; k++) {
                char c = (char)read_byte(r);
                if (c)
                    analyzer_text_append(&t, &c, 1);
            }
        }
    }
    char *s = analyzer_text_take(&t);
    if (!s)
        abort();
    return s;
}

static Google__Protobuf__Struct *read_struct(Reader *r, int depth);

static Google__Protobuf__Value *read_value(Reader *r, int depth)
{
    Google__Protobuf__Value *v = malloc(sizeof *v);
    if (!v)
        abort();
    google__protobuf__value__init(v);
    uint8_t kind = read_byte(r) % 8;
    if (depth >= MAX_DEPTH && (kind == 4 || kind == 5))
        kind = 0;
    switch (kind) {
    case 0: v->kind_case = GOOGLE__PROTOBUF__VALUE__KIND_NULL_VALUE; break;
    case 1: {
        uint8_t how = read_byte(r);
        v->kind_case = GOOGLE__PROTOBUF__VALUE__KIND_NUMBER_VALUE;
        if (how & 1) {
            uint64_t bits = 0;
            for (int i = 0; i < 8; i++)
                bits = (bits << 8) | read_byte(r);
            memcpy(&v->number_value, &bits, sizeof bits);
        } else {
            v->number_value = (double)(int8_t)read_byte(r) / ((how & 2) ? 4.0 : 1.0);
        }
        break;
    }
    case 2:
    case 6:
        v->kind_case = GOOGLE__PROTOBUF__VALUE__KIND_STRING_VALUE;
        v->string_value = read_string(r);
        break;
    case 3:
        v->kind_case = GOOGLE__PROTOBUF__VALUE__KIND_BOOL_VALUE;
        v->bool_value = read_byte(r) & 1;
        break;
    case 4:
        v->kind_case = GOOGLE__PROTOBUF__VALUE__KIND_STRUCT_VALUE;
        v->struct_value = read_struct(r, depth + 1);
        break;
    case 5: {
        Google__Protobuf__ListValue *l = malloc(sizeof *l);
        if (!l)
            abort();
        google__protobuf__list_value__init(l);
        size_t n = read_byte(r) % 5;
        l->values = calloc(n + 1, sizeof *l->values);
        if (!l->values)
            abort();
        for (size_t i = 0; i < n; i++)
            l->values[l->n_values++] = read_value(r, depth + 1);
        v->kind_case = GOOGLE__PROTOBUF__VALUE__KIND_LIST_VALUE;
        v->list_value = l;
        break;
    }
    default: break; /* kind not set */
    }
    return v;
}

static Google__Protobuf__Struct *read_struct(Reader *r, int depth)
{
    Google__Protobuf__Struct *s = malloc(sizeof *s);
    if (!s)
        abort();
    google__protobuf__struct__init(s);
    size_t n = read_byte(r) % (MAX_FIELDS + 1);
    s->fields = calloc(n + 1, sizeof *s->fields);
    if (!s->fields)
        abort();
    for (size_t i = 0; i < n; i++) {
        Google__Protobuf__Struct__FieldsEntry *e = malloc(sizeof *e);
        if (!e)
            abort();
        google__protobuf__struct__fields_entry__init(e);
        e->key = read_string(r);
        e->value = read_value(r, depth);
        s->fields[s->n_fields++] = e;
    }
    return s;
}

typedef enum EventKind { EV_PROMPT, EV_BEFORE, EV_AFTER, EV_BEGIN } EventKind;

typedef struct Event {
    EventKind kind;
    uint32_t step;
    char *tool;
    Google__Protobuf__Struct *input;
    char *text; /* prompt or tool output (may hold NUL bytes) */
    size_t len;
    Norn__V1__ResultStatus rs;
    Norn__V1__GuardMode mode;
} Event;

static void read_output(Reader *r, Event *e)
{
    uint8_t how = read_byte(r);
    if (how & 1) {
        /* Raw bytes, NULs included. */
        size_t len = ((size_t)read_byte(r) << 8 | read_byte(r)) % MAX_OUTPUT;
        if (len > r->n)
            len = r->n;
        e->text = malloc(len + 1);
        if (!e->text)
            abort();
        memcpy(e->text, r->p, len);
        e->text[len] = '\0';
        e->len = len;
        r->p += len;
        r->n -= len;
    } else {
        AnalyzerText t = {0};
        analyzer_text_append(&t, "", 0);
        int words = read_byte(r) % 16;
        for (int i = 0; i < words; i++) {
            const char *w = dictionary[read_byte(r) % COUNT_OF(dictionary)];
            analyzer_text_append(&t, w, strlen(w));
            analyzer_text_append(&t, " ", 1);
        }
        e->len = t.len;
        e->text = analyzer_text_take(&t);
        if (!e->text)
            abort();
    }
}

/* Strict UTF-8 cannot encode surrogates, so the decoder returns one only
 * for an invalid byte. */
static bool is_utf8(const char *s, size_t len)
{
    for (size_t i = 0; i < len;) {
        uint32_t cp = analyzer_utf8_next(s, len, &i);
        if (cp >= 0xDC80 && cp <= 0xDCFF)
            return false;
    }
    return true;
}

static void check_result(const AnalyzerResult *r)
{
    if ((r->action == NORN__V1__ACTION__ACTION_TERMINATE) != (r->reason != NULL))
        abort();
    for (size_t i = 0; i < r->n_issues; i++) {
        const AnalyzerIssue *is = &r->issues[i];
        if (is->severity < 1 || is->severity > 10 || !is->description || !is->recommendation)
            abort();
        if (is->affected_step[0]) {
            char want[24];
            snprintf(want, sizeof want, "step_%u", is->step_number);
            if (strcmp(want, is->affected_step) != 0)
                abort();
        }
    }
}

static void log_result(AnalyzerText *log, const AnalyzerResult *r)
{
    analyzer_text_appendf(log, "%d %d %s|", r->action, r->status, r->reason ? r->reason : "-");
    for (size_t i = 0; i < r->n_issues; i++)
        analyzer_text_appendf(log, "%d:%d:%u:%s:%s:%s;", r->issues[i].type, r->issues[i].severity,
                              r->issues[i].step_number, r->issues[i].affected_step,
                              r->issues[i].description, r->issues[i].recommendation);
    analyzer_text_append(log, "\n", 1);
}

static void run_events(const AnalyzerConfig *cfg, const Event *ev, size_t n, AnalyzerText *log)
{
    AnalyzerState *st = analyzer_state_new(cfg);
    if (!st)
        abort();
    AnalyzerIssueRef refs[MAX_EVENTS * 8];
    size_t n_refs = 0;
    uint32_t steps = 0;
    AnalyzerResult r = {0};
    for (size_t i = 0; i < n; i++) {
        const Event *e = &ev[i];
        int rc = 0;
        switch (e->kind) {
        case EV_BEGIN:
            analyzer_begin_invocation(st, e->mode);
            n_refs = 0;
            steps = 0;
            analyzer_text_append(log, "begin\n", 6);
            continue;
        case EV_PROMPT: rc = analyzer_system_prompt(st, e->text, &r); break;
        case EV_BEFORE: rc = analyzer_before_tool(st, e->step, e->tool, e->input, &r); break;
        case EV_AFTER:
            rc = analyzer_after_tool(st, e->step, e->tool, e->text, e->len, e->rs, &r);
            steps++;
            break;
        }
        if (rc != 0)
            abort();
        check_result(&r);
        log_result(log, &r);
        for (size_t k = 0; k < r.n_issues && n_refs < COUNT_OF(refs); k++) {
            refs[n_refs].type = r.issues[k].type;
            refs[n_refs].severity = r.issues[k].severity;
            n_refs++;
        }
    }
    analyzer_result_clear(&r);
    AnalyzerSessionFacts f = {0};
    f.total_steps = steps;
    f.has_task = n & 1;
    f.quality = (Norn__V1__SessionQuality)(n % 7);
    f.issues = refs;
    f.n_issues = n_refs;
    AnalyzerFinal fin = {0};
    if (analyzer_finalize(st, &f, &fin) != 0)
        abort();
    analyzer_text_appendf(log, "final %d %d %d %d %d %d %d %d %zu\n", fin.quality,
                          fin.has_security_score, fin.security_score, fin.has_efficiency_score,
                          fin.efficiency_score, fin.loop_detected, fin.security_breach_detected,
                          fin.status, fin.n_issues);
    analyzer_final_clear(&fin);
    analyzer_state_free(st);
}

static void check_text_helpers(const Event *e)
{
    if (e->input) {
        char *key = analyzer_canonical_input(e->tool, e->input);
        Google__Protobuf__Struct *masked = analyzer_mask_credentials(e->input);
        AnalyzerText t = {0};
        analyzer_repr_struct(&t, masked);
        if (!key || !masked || t.failed || !is_utf8(t.data, t.len))
            abort();
        free(key);
        analyzer_text_free(&t);
        google__protobuf__struct__free_unpacked(masked, NULL);
    }
    if (e->text) {
        AnalyzerText t = {0};
        analyzer_repr_string(&t, e->text, e->len);
        if (t.failed || !is_utf8(t.data, t.len))
            abort();
        analyzer_text_free(&t);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    Reader r = {data, size};
    AnalyzerConfig cfg = analyzer_config_default();
    uint8_t c0 = read_byte(&r), c1 = read_byte(&r);
    cfg.loop_window = 1 + c0 % 10;
    cfg.loop_threshold = 1 + (c0 >> 4) % 4;
    cfg.guard_mode = (Norn__V1__GuardMode)(1 + c1 % 3);
    cfg.max_steps = 1 + (c1 >> 2) % 40;
    cfg.max_seen_inputs = (c1 & 0x80) ? ANALYZER_MIN_SEEN_INPUTS : 4096;

    Event ev[MAX_EVENTS];
    size_t n = 0;
    uint32_t step = 0;
    while (r.n && n < MAX_EVENTS) {
        Event *e = &ev[n];
        memset(e, 0, sizeof *e);
        uint8_t op = read_byte(&r);
        switch (op % 8) {
        case 0:
            e->kind = EV_PROMPT;
            read_output(&r, e);
            break;
        case 1:
            e->kind = EV_BEGIN;
            e->mode = (Norn__V1__GuardMode)(read_byte(&r) % 4);
            break;
        case 2:
            /* An after_tool for a step that was never begun. */
            e->kind = EV_AFTER;
            e->step = read_byte(&r);
            e->tool = read_string(&r);
            e->rs = (Norn__V1__ResultStatus)(read_byte(&r) % 4);
            read_output(&r, e);
            break;
        default:
            e->kind = EV_BEFORE;
            e->step = (op & 0x80) ? step : ++step;
            e->tool = read_string(&r);
            e->input = read_struct(&r, 0);
            if (n + 1 < MAX_EVENTS && (op & 0x40) == 0) {
                Event *a = &ev[++n];
                memset(a, 0, sizeof *a);
                a->kind = EV_AFTER;
                a->step = e->step;
                a->tool = strdup(e->tool);
                if (!a->tool)
                    abort();
                a->rs = (Norn__V1__ResultStatus)(read_byte(&r) % 4);
                read_output(&r, a);
            }
            break;
        }
        n++;
    }

    for (size_t i = 0; i < n; i++)
        check_text_helpers(&ev[i]);
    AnalyzerText first = {0}, second = {0};
    run_events(&cfg, ev, n, &first);
    run_events(&cfg, ev, n, &second);
    if (first.failed || second.failed || first.len != second.len ||
        (first.len && memcmp(first.data, second.data, first.len) != 0))
        abort();
    analyzer_text_free(&first);
    analyzer_text_free(&second);

    for (size_t i = 0; i < n; i++) {
        free(ev[i].tool);
        free(ev[i].text);
        if (ev[i].input)
            google__protobuf__struct__free_unpacked(ev[i].input, NULL);
    }
    return 0;
}
