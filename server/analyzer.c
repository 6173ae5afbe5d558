/*
 * analyzer.c — the deterministic rules of reference §3: input checks 0a–0e,
 * duplicate and loop detection, the prompt-injection scan of tool output, the
 * system-prompt scan, step status, efficiency, the final overrides and the
 * guard-mode actions. Texts are the original's, values filled in.
 */
#include "analyzer.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include "error.h"

#define IT(x) NORN__V1__ISSUE_TYPE__ISSUE_TYPE_##x
#define SS(x) NORN__V1__STEP_STATUS__STEP_STATUS_##x
#define GM(x) NORN__V1__GUARD_MODE__GUARD_MODE_##x
#define SQ(x) NORN__V1__SESSION_QUALITY__QUALITY_##x
#define RS(x) NORN__V1__RESULT_STATUS__RESULT_STATUS_##x
#define ACT(x) NORN__V1__ACTION__ACTION_##x
#define SST(x) NORN__V1__SESSION_STATUS__SESSION_STATUS_##x

#define COUNT_OF(a) (sizeof(a) / sizeof((a)[0]))

/* ---- configuration ------------------------------------------------------ */

AnalyzerConfig analyzer_config_default(void)
{
    AnalyzerConfig c = {
        .loop_window = 5,
        .loop_threshold = 3,
        .max_steps = 50,
        .guard_mode = GM(MONITOR),
        .max_seen_inputs = 4096,
    };
    return c;
}

static int config_error(char *err, size_t cap, const char *msg)
{
    if (err && cap)
        snprintf(err, cap, "%s", msg);
    return NORN_ERR_INVALID;
}

int analyzer_config_validate(const AnalyzerConfig *c, char *err, size_t cap)
{
    if (!c)
        return config_error(err, cap, "analyzer config missing");
    if (c->loop_window < 1 || c->loop_window > ANALYZER_MAX_LOOP_WINDOW)
        return config_error(err, cap, "loop_window must be 1..100");
    if (c->loop_threshold < 1)
        return config_error(err, cap, "loop_threshold must be >= 1");
    if (c->max_steps < 1)
        return config_error(err, cap, "max_steps must be >= 1");
    if (c->guard_mode < GM(UNSPECIFIED) || c->guard_mode > GM(ENFORCE))
        return config_error(err, cap, "guard_mode unknown");
    if (c->max_seen_inputs < ANALYZER_MIN_SEEN_INPUTS ||
        c->max_seen_inputs > ANALYZER_MAX_SEEN_INPUTS)
        return config_error(err, cap, "max_seen_inputs must be 16..1048576");
    return NORN_OK;
}

/* ---- issue types ---------------------------------------------------------- */

const char *analyzer_issue_type_name(Norn__V1__IssueType t)
{
    switch (t) {
    case IT(INFINITE_LOOP): return "INFINITE_LOOP";
    case IT(TASK_DRIFT): return "TASK_DRIFT";
    case IT(INEFFICIENCY): return "INEFFICIENCY";
    case IT(INCOMPLETE): return "INCOMPLETE";
    case IT(TOOL_MISUSE): return "TOOL_MISUSE";
    case IT(ERROR_HANDLING): return "ERROR_HANDLING";
    case IT(DATA_EXFILTRATION): return "DATA_EXFILTRATION";
    case IT(PROMPT_INJECTION): return "PROMPT_INJECTION";
    case IT(UNAUTHORIZED_ACCESS): return "UNAUTHORIZED_ACCESS";
    case IT(SUSPICIOUS_BEHAVIOR): return "SUSPICIOUS_BEHAVIOR";
    case IT(CREDENTIAL_LEAK): return "CREDENTIAL_LEAK";
    case IT(SECURITY_BYPASS): return "SECURITY_BYPASS";
    case IT(MISSING_CONFIG): return "MISSING_CONFIG";
    case IT(EXECUTION_ERROR): return "EXECUTION_ERROR";
    case IT(TIMEOUT): return "TIMEOUT";
    case IT(AGENT_TERMINATED): return "AGENT_TERMINATED";
    default: return "UNSPECIFIED";
    }
}

bool analyzer_issue_type_is_hard(Norn__V1__IssueType t)
{
    return t == IT(SECURITY_BYPASS) || t == IT(PROMPT_INJECTION) || t == IT(DATA_EXFILTRATION) ||
           t == IT(CREDENTIAL_LEAK) || t == IT(UNAUTHORIZED_ACCESS);
}

/* The compound-signal rule (check 2) uses its own hard set, without
 * PROMPT_INJECTION (reference §1.1). */
static bool is_compound_hard(Norn__V1__IssueType t)
{
    return t == IT(SECURITY_BYPASS) || t == IT(CREDENTIAL_LEAK) || t == IT(DATA_EXFILTRATION) ||
           t == IT(UNAUTHORIZED_ACCESS);
}

/* ---- results ---------------------------------------------------------------- */

static void issues_free(AnalyzerIssue *issues, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(issues[i].description);
        free(issues[i].recommendation);
    }
    free(issues);
}

void analyzer_result_clear(AnalyzerResult *r)
{
    if (!r)
        return;
    issues_free(r->issues, r->n_issues);
    free(r->reason);
    memset(r, 0, sizeof *r);
}

void analyzer_final_clear(AnalyzerFinal *f)
{
    if (!f)
        return;
    issues_free(f->issues, f->n_issues);
    memset(f, 0, sizeof *f);
}

/* Issues under construction; `failed` is sticky so rules need not check
 * every allocation. */
typedef struct IssueList {
    AnalyzerIssue *items;
    size_t n, cap;
    bool failed;
} IssueList;

/* Appends an issue, taking ownership of `description` and `recommendation`
 * (either may be NULL after a failed allocation: the list then fails). */
static void issue_push(IssueList *l, Norn__V1__IssueType type, int severity, uint32_t step_number,
                       bool affected, char *description, char *recommendation)
{
    if (l->failed || !description || !recommendation)
        goto fail;
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 4;
        AnalyzerIssue *p = realloc(l->items, cap * sizeof *p);
        if (!p)
            goto fail;
        l->items = p;
        l->cap = cap;
    }
    AnalyzerIssue *is = &l->items[l->n++];
    memset(is, 0, sizeof *is);
    is->type = type;
    is->severity = severity;
    is->step_number = step_number;
    if (affected)
        snprintf(is->affected_step, sizeof is->affected_step, "step_%u", step_number);
    is->description = description;
    is->recommendation = recommendation;
    return;
fail:
    free(description);
    free(recommendation);
    l->failed = true;
}

static char *format_text(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static char *format_text(const char *fmt, ...)
{
    char *s;
    va_list ap;
    va_start(ap, fmt);
    int rc = vasprintf(&s, fmt, ap);
    va_end(ap);
    return rc < 0 ? NULL : s;
}

/* issue_push with a fixed recommendation and a formatted description. */
static void issue_add(IssueList *l, Norn__V1__IssueType type, int severity, uint32_t step_number,
                      bool affected, const char *recommendation, const char *fmt, ...)
    __attribute__((format(printf, 7, 8)));

static void issue_add(IssueList *l, Norn__V1__IssueType type, int severity, uint32_t step_number,
                      bool affected, const char *recommendation, const char *fmt, ...)
{
    if (l->failed)
        return;
    char *description;
    va_list ap;
    va_start(ap, fmt);
    if (vasprintf(&description, fmt, ap) < 0)
        description = NULL;
    va_end(ap);
    issue_push(l, type, severity, step_number, affected, description, strdup(recommendation));
}

/* Moves the issues into `out`, or frees them and reports the failure. */
static int issues_hand_over(IssueList *l, AnalyzerIssue **items, size_t *n)
{
    if (l->failed) {
        issues_free(l->items, l->n);
        memset(l, 0, sizeof *l);
        return NORN_ERR_NO_MEMORY;
    }
    *items = l->items;
    *n = l->n;
    memset(l, 0, sizeof *l);
    return NORN_OK;
}

/* ---- regular expressions (compiled once) ---------------------------------- */

/* Python's \s for str patterns is exactly str.isspace(): Unicode separators
 * plus \t..\r, \x1c..\x1f and \x85. PCRE2's \s lacks \x1c..\x1f, so the
 * patterns spell the class out. */
#define PY_S "[\\t-\\r\\x{1c}-\\x{20}\\x{85}\\p{Z}]"

/* §3.4, in the original's order. Differs from the original in patterns 1
 * and 2, which start with \b here: the original matched "set" and "mark"
 * inside words, so "Benchmark completed ... All checks passed" (patterns 2
 * and 7) and "the dataset quality is excellent" were prompt injections that
 * failed the session (§12.4 F9). Real instructions ("Set the quality score",
 * "mark this review as completed", "marked as done") still match, with the
 * same match text.
 *
 * Pattern 7, (no\s+issues?\s+found|all\s+checks?\s+pass), is compiled as
 * its two branches: they start with different letters, so its leftmost match
 * is whichever branch matches first, and each branch alone gets PCRE2's
 * first-character search (the alternation got none). */
static const char *const injection_regexes[] = {
    "\\bset.{0,20}(score|quality|rating).{0,20}(100|perfect|excellent)",
    "\\bmark.{0,20}(completed|success|passed|done)",
    "do" PY_S "+not" PY_S "+(mention|include|report|reveal|disclose|show)",
    "ignore" PY_S "+(this|these|the" PY_S "+above|previous)",
    "override.{0,30}(score|quality|rating|result)",
    "calibration.{0,40}(score|quality|override|parity)",
    "no" PY_S "+issues?" PY_S "+found",
    "all" PY_S "+checks?" PY_S "+pass",
};
#define N_INJECTION_REGEXES COUNT_OF(injection_regexes)
#define N_INJECTION_PATTERNS 7 /* the original's count: the last two regexes are one */

/* Each regex is compiled twice. The UTF + UCP form serves any text. For
 * pure ASCII text a form without UTF gives the same matches (ASCII letters
 * only fold to ASCII letters there, \b and the space class agree on ASCII)
 * and is much faster: in UTF mode a caseless "s" may also be U+017F and "k"
 * U+212A, which rules out PCRE2's first-character search. */
typedef struct CompiledRegex {
    pcre2_code *code;
    bool jit;
} CompiledRegex;

static pthread_once_t regex_once = PTHREAD_ONCE_INIT;
static CompiledRegex injection_utf[N_INJECTION_REGEXES];
static CompiledRegex injection_ascii[N_INJECTION_REGEXES];
static bool regex_ready;

static bool regex_compile(CompiledRegex *out, const char *pattern, uint32_t options,
                          pcre2_compile_context *cctx)
{
    int err;
    PCRE2_SIZE off;
    out->code = pcre2_compile((PCRE2_SPTR)pattern, PCRE2_ZERO_TERMINATED,
                              options | PCRE2_CASELESS | PCRE2_NO_AUTO_CAPTURE, &err, &off, cctx);
    if (!out->code)
        return false;
    /* JIT is an optimisation only: without it pcre2_match interprets. */
    out->jit = pcre2_jit_compile(out->code, PCRE2_JIT_COMPLETE) == 0;
    return true;
}

static void regex_compile_all(void)
{
    /* Python re semantics: caseless Unicode matching, '.' stops only at
     * '\n' (hence LF-only newlines). */
    pcre2_compile_context *cctx = pcre2_compile_context_create(NULL);
    if (!cctx)
        return;
    pcre2_set_newline(cctx, PCRE2_NEWLINE_LF);
    bool ok = true;
    for (size_t i = 0; i < N_INJECTION_REGEXES && ok; i++)
        ok = regex_compile(&injection_utf[i], injection_regexes[i], PCRE2_UTF | PCRE2_UCP, cctx) &&
             regex_compile(&injection_ascii[i], injection_regexes[i], 0, cctx);
    pcre2_compile_context_free(cctx);
    regex_ready = ok;
}

static bool regex_init(void)
{
    pthread_once(&regex_once, regex_compile_all);
    return regex_ready;
}

/* First match of `re` in the subject: true and [*start, *end) on a match. A
 * match-limit error counts as no match (these patterns cannot hit it: their
 * backtracking per start position is bounded). */
static bool regex_search(const CompiledRegex *re, const char *subject, size_t len,
                         pcre2_match_data *md, size_t *start, size_t *end)
{
    int rc;
    if (re->jit)
        rc = pcre2_jit_match(re->code, (PCRE2_SPTR)subject, len, 0, 0, md, NULL);
    else
        rc = pcre2_match(re->code, (PCRE2_SPTR)subject, len, 0, PCRE2_NO_UTF_CHECK, md, NULL);
    if (rc <= 0)
        return false;
    PCRE2_SIZE *ov = pcre2_get_ovector_pointer(md);
    *start = ov[0];
    *end = ov[1];
    return true;
}

/* ---- 128-bit digests of equality keys ------------------------------------ */

/* The state remembers inputs as digests, not copies, so its memory does not
 * grow with input size. SipHash-2-4 with 128-bit output and a fixed key:
 * deterministic across restarts (a replay must find the same duplicates),
 * and finding a collision still takes ~2^64 work. */
typedef struct Digest {
    uint64_t a, b;
} Digest;

#define ROTL64(x, r) (((x) << (r)) | ((x) >> (64 - (r))))
#define SIPROUND                                                                                   \
    do {                                                                                           \
        v0 += v1;                                                                                  \
        v1 = ROTL64(v1, 13);                                                                       \
        v1 ^= v0;                                                                                  \
        v0 = ROTL64(v0, 32);                                                                       \
        v2 += v3;                                                                                  \
        v3 = ROTL64(v3, 16);                                                                       \
        v3 ^= v2;                                                                                  \
        v0 += v3;                                                                                  \
        v3 = ROTL64(v3, 21);                                                                       \
        v3 ^= v0;                                                                                  \
        v2 += v1;                                                                                  \
        v1 = ROTL64(v1, 17);                                                                       \
        v1 ^= v2;                                                                                  \
        v2 = ROTL64(v2, 32);                                                                       \
    } while (0)

static uint64_t load_le64(const unsigned char *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = (v << 8) | p[i];
    return v;
}

static Digest digest_of(const char *data, size_t len)
{
    const uint64_t k0 = 0x6e6f726e2d616e61ULL, k1 = 0x6c797a65722d7631ULL; /* "norn-analyzer-v1" */
    uint64_t v0 = 0x736f6d6570736575ULL ^ k0, v1 = 0x646f72616e646f6dULL ^ k1;
    uint64_t v2 = 0x6c7967656e657261ULL ^ k0, v3 = 0x7465646279746573ULL ^ k1;
    v1 ^= 0xee;
    const unsigned char *p = (const unsigned char *)data;
    size_t whole = len - len % 8;
    for (size_t i = 0; i < whole; i += 8) {
        uint64_t m = load_le64(p + i);
        v3 ^= m;
        SIPROUND;
        SIPROUND;
        v0 ^= m;
    }
    uint64_t b = (uint64_t)len << 56;
    for (size_t i = 0; i < len % 8; i++)
        b |= (uint64_t)p[whole + i] << (8 * i);
    v3 ^= b;
    SIPROUND;
    SIPROUND;
    v0 ^= b;
    v2 ^= 0xee;
    SIPROUND;
    SIPROUND;
    SIPROUND;
    SIPROUND;
    Digest d;
    d.a = v0 ^ v1 ^ v2 ^ v3;
    v1 ^= 0xdd;
    SIPROUND;
    SIPROUND;
    SIPROUND;
    SIPROUND;
    d.b = v0 ^ v1 ^ v2 ^ v3;
    return d;
}

static bool digest_eq(Digest x, Digest y)
{
    return x.a == y.a && x.b == y.b;
}

static uint64_t name_hash(const char *s)
{
    uint64_t h = 0xcbf29ce484222325ULL; /* FNV-1a: only speeds up lookups */
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 0x100000001b3ULL;
    return h;
}

/* ---- state ------------------------------------------------------------------ */

/* One tool's last W input digests (the original's per-tool deque). */
typedef struct ToolHistory {
    char *name;
    uint64_t name_hash;
    uint64_t last_used; /* call sequence number of its latest call */
    uint32_t n, head;   /* ring: oldest at head once full */
    Digest *inputs;     /* loop_window slots */
} ToolHistory;

/* One entry of the global recent-call window: the (tool, input) signature.
 * `tool` stays valid: only the least recently used tool is ever evicted,
 * and with more tools than window slots that tool is never in the window. */
typedef struct WindowEntry {
    Digest sig;
    ToolHistory *tool;
} WindowEntry;

/* A begun tool call whose result may still come, and whether it repeats a
 * loop (decided before the tool runs, used for the status after it). */
typedef struct PendingStep {
    uint32_t step_number;
    bool used;
    bool redundant;
} PendingStep;

struct AnalyzerState {
    AnalyzerConfig cfg;
    Norn__V1__GuardMode mode;
    uint64_t seq;

    WindowEntry *window; /* loop_window slots, oldest at win_head once full */
    uint32_t win_n, win_head;

    ToolHistory **tools;
    size_t n_tools;

    /* Duplicate set: digests in insertion order (a ring once max_seen_inputs
     * is reached) indexed by an open-addressing table of ring index + 1. */
    Digest *seen;
    size_t seen_n, seen_alloc, seen_head;
    uint32_t *slots;
    size_t slot_cap;

    PendingStep pending[ANALYZER_MAX_PENDING_STEPS];
    size_t pending_next;

    bool loop_seen;         /* an INFINITE_LOOP was raised this invocation */
    bool loop_flag;         /* intervene mode terminated on a loop */
    bool breach;            /* security_breach_detected */
    bool terminated;        /* the guard answered TERMINATE */
    bool prompt_terminated; /* ... on the system prompt, before any tool */

    pcre2_match_data *md;
    AnalyzerText scratch; /* equality keys, lower-cased text, clean UTF-8 */
};

static void tools_free(AnalyzerState *st)
{
    for (size_t i = 0; i < st->n_tools; i++) {
        free(st->tools[i]->name);
        free(st->tools[i]->inputs);
        free(st->tools[i]);
    }
    st->n_tools = 0;
}

AnalyzerState *analyzer_state_new(const AnalyzerConfig *cfg)
{
    if (analyzer_config_validate(cfg, NULL, 0) != NORN_OK || !regex_init())
        return NULL;
    AnalyzerState *st = calloc(1, sizeof *st);
    if (!st)
        return NULL;
    st->cfg = *cfg;
    st->window = calloc((size_t)cfg->loop_window, sizeof *st->window);
    st->tools = calloc(ANALYZER_MAX_TOOLS, sizeof *st->tools);
    st->md = pcre2_match_data_create(1, NULL);
    if (!st->window || !st->tools || !st->md) {
        analyzer_state_free(st);
        return NULL;
    }
    analyzer_begin_invocation(st, GM(UNSPECIFIED));
    return st;
}

void analyzer_state_free(AnalyzerState *st)
{
    if (!st)
        return;
    if (st->tools)
        tools_free(st);
    free(st->tools);
    free(st->window);
    free(st->seen);
    free(st->slots);
    if (st->md)
        pcre2_match_data_free(st->md);
    analyzer_text_free(&st->scratch);
    free(st);
}

void analyzer_begin_invocation(AnalyzerState *st, Norn__V1__GuardMode mode)
{
    if (mode == GM(UNSPECIFIED))
        mode = st->cfg.guard_mode;
    if (mode < GM(MONITOR) || mode > GM(ENFORCE))
        mode = GM(MONITOR);
    st->mode = mode;
    st->seq = 0;
    st->win_n = st->win_head = 0;
    tools_free(st);
    st->seen_n = st->seen_head = 0;
    if (st->slots)
        memset(st->slots, 0, st->slot_cap * sizeof *st->slots);
    memset(st->pending, 0, sizeof st->pending);
    st->pending_next = 0;
    st->loop_seen = st->loop_flag = st->breach = false;
    st->terminated = st->prompt_terminated = false;
}

Norn__V1__GuardMode analyzer_guard_mode(const AnalyzerState *st)
{
    return st->mode;
}

/* ---- duplicate set ------------------------------------------------------ */

static size_t slot_home(const AnalyzerState *st, Digest d)
{
    return (size_t)d.a & (st->slot_cap - 1);
}

static bool seen_contains(const AnalyzerState *st, Digest d)
{
    if (!st->slot_cap)
        return false;
    for (size_t i = slot_home(st, d);; i = (i + 1) & (st->slot_cap - 1)) {
        uint32_t s = st->slots[i];
        if (!s)
            return false;
        if (digest_eq(st->seen[s - 1], d))
            return true;
    }
}

static void slots_put(AnalyzerState *st, size_t ring_index)
{
    size_t i = slot_home(st, st->seen[ring_index]);
    while (st->slots[i])
        i = (i + 1) & (st->slot_cap - 1);
    st->slots[i] = (uint32_t)ring_index + 1;
}

/* Linear-probing deletion by backward shift: entries after the hole move
 * back unless their home lies cyclically in (hole, position]. */
static void slots_remove(AnalyzerState *st, size_t ring_index)
{
    size_t mask = st->slot_cap - 1;
    size_t i = slot_home(st, st->seen[ring_index]);
    while (st->slots[i] != ring_index + 1)
        i = (i + 1) & mask;
    st->slots[i] = 0;
    for (size_t j = (i + 1) & mask; st->slots[j]; j = (j + 1) & mask) {
        size_t k = slot_home(st, st->seen[st->slots[j] - 1]);
        bool stays = i <= j ? (i < k && k <= j) : (i < k || k <= j);
        if (!stays) {
            st->slots[i] = st->slots[j];
            st->slots[j] = 0;
            i = j;
        }
    }
}

static int seen_insert(AnalyzerState *st, Digest d)
{
    size_t max = (size_t)st->cfg.max_seen_inputs;
    if (st->seen_n == max) {
        /* Full: the oldest digest makes room (FIFO). */
        slots_remove(st, st->seen_head);
        st->seen[st->seen_head] = d;
        slots_put(st, st->seen_head);
        st->seen_head = (st->seen_head + 1) % max;
        return NORN_OK;
    }
    if (st->seen_n == st->seen_alloc) {
        size_t alloc = st->seen_alloc ? st->seen_alloc * 2 : 32;
        if (alloc > max)
            alloc = max;
        Digest *p = realloc(st->seen, alloc * sizeof *p);
        if (!p)
            return NORN_ERR_NO_MEMORY;
        st->seen = p;
        st->seen_alloc = alloc;
    }
    /* Keep the table at most half full. */
    if ((st->seen_n + 1) * 2 > st->slot_cap) {
        size_t cap = st->slot_cap ? st->slot_cap * 2 : 64;
        uint32_t *slots = calloc(cap, sizeof *slots);
        if (!slots)
            return NORN_ERR_NO_MEMORY;
        free(st->slots);
        st->slots = slots;
        st->slot_cap = cap;
        for (size_t i = 0; i < st->seen_n; i++)
            slots_put(st, i);
    }
    st->seen[st->seen_n] = d;
    slots_put(st, st->seen_n);
    st->seen_n++;
    return NORN_OK;
}

/* ---- tools and the window -------------------------------------------------- */

static ToolHistory *tool_get(AnalyzerState *st, const char *name)
{
    uint64_t h = name_hash(name);
    for (size_t i = 0; i < st->n_tools; i++) {
        ToolHistory *t = st->tools[i];
        if (t->name_hash == h && strcmp(t->name, name) == 0)
            return t;
    }
    char *copy = strdup(name);
    if (!copy)
        return NULL;
    ToolHistory *t;
    if (st->n_tools < ANALYZER_MAX_TOOLS) {
        t = calloc(1, sizeof *t);
        Digest *inputs = calloc((size_t)st->cfg.loop_window, sizeof *inputs);
        if (!t || !inputs) {
            free(t);
            free(inputs);
            free(copy);
            return NULL;
        }
        t->inputs = inputs;
        st->tools[st->n_tools++] = t;
    } else {
        /* Bounded memory: the least recently used tool is forgotten. */
        t = st->tools[0];
        for (size_t i = 1; i < st->n_tools; i++)
            if (st->tools[i]->last_used < t->last_used)
                t = st->tools[i];
        free(t->name);
    }
    t->name = copy;
    t->name_hash = h;
    t->n = t->head = 0;
    return t;
}

static void tool_remember_input(AnalyzerState *st, ToolHistory *t, Digest d)
{
    uint32_t w = (uint32_t)st->cfg.loop_window;
    if (t->n < w) {
        t->inputs[(t->head + t->n) % w] = d;
        t->n++;
    } else {
        t->inputs[t->head] = d;
        t->head = (t->head + 1) % w;
    }
}

/* unique / total over the tool's remembered inputs; 1.0 for <= 1 entry. */
static double tool_input_diversity(const ToolHistory *t)
{
    if (t->n <= 1)
        return 1.0;
    uint32_t unique = 0;
    for (uint32_t i = 0; i < t->n; i++) {
        bool earlier = false;
        for (uint32_t j = 0; j < i && !earlier; j++)
            earlier = digest_eq(t->inputs[j], t->inputs[i]);
        unique += !earlier;
    }
    return (double)unique / (double)t->n;
}

static const WindowEntry *window_at(const AnalyzerState *st, uint32_t k)
{
    return &st->window[(st->win_head + k) % (uint32_t)st->cfg.loop_window];
}

static void window_push(AnalyzerState *st, WindowEntry e)
{
    uint32_t w = (uint32_t)st->cfg.loop_window;
    if (st->win_n < w) {
        st->window[(st->win_head + st->win_n) % w] = e;
        st->win_n++;
    } else {
        st->window[st->win_head] = e;
        st->win_head = (st->win_head + 1) % w;
    }
}

/* Counter(window).most_common(1): ties go to the entry seen first. */
static const WindowEntry *window_most_common(const AnalyzerState *st, uint32_t *count)
{
    const WindowEntry *best = NULL;
    uint32_t best_count = 0;
    for (uint32_t i = 0; i < st->win_n; i++) {
        const WindowEntry *e = window_at(st, i);
        bool counted = false;
        for (uint32_t j = 0; j < i && !counted; j++)
            counted = digest_eq(window_at(st, j)->sig, e->sig);
        if (counted)
            continue;
        uint32_t c = 0;
        for (uint32_t j = i; j < st->win_n; j++)
            c += digest_eq(window_at(st, j)->sig, e->sig);
        if (c > best_count) {
            best = e;
            best_count = c;
        }
    }
    *count = best_count;
    return best;
}

static void pending_record(AnalyzerState *st, uint32_t step_number, bool redundant)
{
    PendingStep *p = &st->pending[st->pending_next];
    p->step_number = step_number;
    p->used = true;
    p->redundant = redundant;
    st->pending_next = (st->pending_next + 1) % ANALYZER_MAX_PENDING_STEPS;
}

static bool pending_redundant(const AnalyzerState *st, uint32_t step_number)
{
    /* Newest first, so a reused step number finds its latest call. */
    for (size_t k = 1; k <= ANALYZER_MAX_PENDING_STEPS; k++) {
        const PendingStep *p = &st->pending[(st->pending_next + ANALYZER_MAX_PENDING_STEPS - k) %
                                            ANALYZER_MAX_PENDING_STEPS];
        if (p->used && p->step_number == step_number)
            return p->redundant;
    }
    return false;
}

/* ---- input checks helpers ------------------------------------------------- */

static const Google__Protobuf__Value *dict_get(const AnalyzerDictItem *sorted, size_t n,
                                               const char *key)
{
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        int c = strcmp(key, sorted[mid].key);
        if (c == 0)
            return sorted[mid].value;
        if (c < 0)
            hi = mid;
        else
            lo = mid + 1;
    }
    return NULL;
}

static const char *value_string(const Google__Protobuf__Value *v)
{
    if (!v || v->kind_case != GOOGLE__PROTOBUF__VALUE__KIND_STRING_VALUE)
        return NULL;
    return v->string_value ? v->string_value : "";
}

static bool value_is_bool(const Google__Protobuf__Value *v, bool want)
{
    return v && v->kind_case == GOOGLE__PROTOBUF__VALUE__KIND_BOOL_VALUE &&
           (bool)v->bool_value == want;
}

/* len(s.strip()) as far as it matters: exact below `limit`, else >= limit.
 * Stops early so a 64 KB "content" costs a few bytes, not a full decode. */
static size_t stripped_length_below(const char *s, size_t len, size_t limit)
{
    size_t i = 0, count = 0, trailing_space = 0;
    bool started = false;
    while (i < len) {
        uint32_t cp = analyzer_utf8_next(s, len, &i);
        bool space = analyzer_is_py_space(cp);
        if (!started) {
            if (space)
                continue;
            started = true;
        }
        count++;
        trailing_space = space ? trailing_space + 1 : 0;
        if (count - trailing_space >= limit)
            return limit;
    }
    return count - trailing_space;
}

/* Empties a reused buffer, forgetting an earlier allocation failure. */
static void text_reset(AnalyzerText *t)
{
    t->len = 0;
    t->failed = false;
    if (t->data)
        t->data[0] = '\0';
}

/* The scratch buffer keeps its size between calls, except after a huge
 * input: a session's idle memory stays small. */
#define SCRATCH_KEEP_BYTES (256 * 1024)

static void scratch_trim(AnalyzerState *st)
{
    if (st->scratch.cap > SCRATCH_KEEP_BYTES)
        analyzer_text_free(&st->scratch);
}

/* Lower-cases `s` into the state's scratch buffer. */
static const char *lowered(AnalyzerState *st, const char *s, size_t len)
{
    text_reset(&st->scratch);
    analyzer_py_lower(&st->scratch, s, len);
    return st->scratch.failed ? NULL : (st->scratch.data ? st->scratch.data : "");
}

static bool ends_with(const char *s, const char *suffix)
{
    size_t n = strlen(s), m = strlen(suffix);
    return n >= m && memcmp(s + n - m, suffix, m) == 0;
}

/* Check 0d. Differs from the original, which tested the substring "token",
 * so max_tokens, num_tokens or token_count were "credentials" (§12.4 F9). A
 * key now names a token only when it ends with "token" (token, access_token,
 * csrf_token, accessToken); the other markers stay substrings. */
static bool is_credential_field(const char *lower)
{
    static const char *const markers[] = {"password",    "passwd",     "secret",  "api_key",
                                          "private_key", "access_key", "auth_key"};
    for (size_t i = 0; i < COUNT_OF(markers); i++)
        if (strstr(lower, markers[i]))
            return true;
    return ends_with(lower, "token");
}

/* §3.10 masking keys, with the same "token" correction as check 0d. */
static bool is_masked_field(const char *lower)
{
    static const char *const markers[] = {"password",      "passwd",      "secret",     "api_key",
                                          "apikey",        "private_key", "access_key", "auth_key",
                                          "authorization", "credential"};
    for (size_t i = 0; i < COUNT_OF(markers); i++)
        if (strstr(lower, markers[i]))
            return true;
    return ends_with(lower, "token");
}

static bool is_content_key(const char *lower)
{
    static const char *const keys[] = {"code",   "source",   "source_code",  "content", "data",
                                       "text",   "snippet",  "code_snippet", "body",    "query",
                                       "html",   "markdown", "script",       "payload", "message",
                                       "prompt", "document"};
    for (size_t i = 0; i < COUNT_OF(keys); i++)
        if (strcmp(lower, keys[i]) == 0)
            return true;
    return false;
}

/* Python repr of s[:max_cp] (code points). */
static void repr_prefix(AnalyzerText *t, const char *s, size_t max_cp)
{
    size_t len = strlen(s), i = 0;
    for (size_t k = 0; k < max_cp && i < len; k++)
        analyzer_utf8_next(s, len, &i);
    analyzer_repr_string(t, s, i);
}

/* ---- checks 0a–0e ------------------------------------------------------------ */

static void check_ssl_bypass(IssueList *l, uint32_t step, const AnalyzerDictItem *sorted, size_t n)
{
    static const char *const keys[] = {"verify_ssl", "verify", "ssl_verify", "check_ssl",
                                       "ssl_check"};
    for (size_t i = 0; i < COUNT_OF(keys); i++) {
        /* Only JSON false counts: 0, "false" and null do not (the original
         * tested `is False`). */
        if (value_is_bool(dict_get(sorted, n, keys[i]), false)) {
            issue_push(l, IT(SECURITY_BYPASS), 8, step, true,
                       format_text("'%s=False' detected: SSL certificate verification is "
                                   "disabled. This exposes the connection to man-in-the-middle "
                                   "(MITM) attacks.",
                                   keys[i]),
                       format_text("Remove '%s' or set it to True. If you are hitting SSL "
                                   "errors, install the proper CA bundle (e.g. certifi).",
                                   keys[i]));
            return;
        }
    }
}

static void check_shell_true(IssueList *l, uint32_t step, const AnalyzerDictItem *sorted, size_t n)
{
    static const char *const keys[] = {"shell", "use_shell", "shell_mode"};
    for (size_t i = 0; i < COUNT_OF(keys); i++) {
        if (value_is_bool(dict_get(sorted, n, keys[i]), true)) {
            issue_add(l, IT(SECURITY_BYPASS), 9, step, true,
                      "Use list-form subprocess calls instead of shell=True.",
                      "'%s=True' detected: shell injection risk. Arbitrary OS commands can be "
                      "executed via shell metacharacters.",
                      keys[i]);
            return;
        }
    }
}

/* Check 0c. Differs from the original for the data fields `query` and
 * `input`: there the original flagged every shell metacharacter, so SQL
 * comparisons (age > 30), SQL string concatenation (||), statement ends (;)
 * and search pipes (a | b) failed the session as "command injection"
 * (§12.4 F9, fixture F8). In those two fields only command substitution
 * "$(" — meaningless in SQL, search syntax or prose, and executed if the
 * value ever reaches a shell — still counts. The command fields keep the
 * full list. */
static void check_metacharacters(IssueList *l, uint32_t step, const AnalyzerDictItem *sorted,
                                 size_t n)
{
    static const char *const keys[] = {"cmd",  "command", "args", "shell_cmd",
                                       "exec", "query",   "input"};
    static const char *const shell_chars[] = {"&&", "||", ";", "|",   "`",
                                              "$(", ">",  "<", "../", "..\\"};
    static const char *const data_chars[] = {"$("};
    for (size_t i = 0; i < COUNT_OF(keys); i++) {
        const char *val = value_string(dict_get(sorted, n, keys[i]));
        if (!val)
            continue;
        bool data_field = strcmp(keys[i], "query") == 0 || strcmp(keys[i], "input") == 0;
        const char *const *chars = data_field ? data_chars : shell_chars;
        size_t n_chars = data_field ? COUNT_OF(data_chars) : COUNT_OF(shell_chars);
        for (size_t c = 0; c < n_chars; c++) {
            if (!strstr(val, chars[c]))
                continue;
            AnalyzerText char_repr = {0}, value_repr = {0};
            analyzer_repr_string(&char_repr, chars[c], strlen(chars[c]));
            repr_prefix(&value_repr, val, 80);
            if (char_repr.failed || value_repr.failed)
                l->failed = true;
            issue_add(l, IT(SECURITY_BYPASS), 8, step, true,
                      "Sanitize command inputs. Avoid shell metacharacters.",
                      "Potential command injection in '%s': shell metacharacter %s detected in "
                      "input: %s",
                      keys[i], char_repr.data, value_repr.data);
            analyzer_text_free(&char_repr);
            analyzer_text_free(&value_repr);
            return;
        }
    }
}

static void check_credential_field(AnalyzerState *st, IssueList *l, uint32_t step,
                                   const AnalyzerDictItem *entry_order, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (!value_string(entry_order[i].value))
            continue;
        const char *lower = lowered(st, entry_order[i].key, strlen(entry_order[i].key));
        if (!lower) {
            l->failed = true;
            return;
        }
        if (is_credential_field(lower)) {
            issue_add(l, IT(SECURITY_BYPASS), 7, step, true,
                      "Avoid passing credentials as tool arguments.",
                      "Potential credential passed as tool argument in field '%s'",
                      entry_order[i].key);
            return;
        }
    }
}

static void check_trivial_input(AnalyzerState *st, IssueList *l, uint32_t step, const char *tool,
                                const AnalyzerDictItem *entry_order, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        const char *val = value_string(entry_order[i].value);
        if (!val)
            continue;
        const char *lower = lowered(st, entry_order[i].key, strlen(entry_order[i].key));
        if (!lower) {
            l->failed = true;
            return;
        }
        if (!is_content_key(lower))
            continue;
        size_t stripped = stripped_length_below(val, strlen(val), 5);
        if (stripped < 5) {
            issue_add(l, IT(SUSPICIOUS_BEHAVIOR), 7, step, true,
                      "Verify the agent is passing actual data to analysis tools. An empty input "
                      "may indicate the agent is bypassing analysis.",
                      "Tool '%s' received empty/trivial input for '%s' (length=%zu). The tool "
                      "likely cannot produce meaningful results with no data.",
                      tool, entry_order[i].key, stripped);
            return;
        }
    }
}

/* ---- guard ------------------------------------------------------------------ */

static int set_reason(AnalyzerResult *out, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static int set_reason(AnalyzerResult *out, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int rc = vasprintf(&out->reason, fmt, ap);
    va_end(ap);
    if (rc < 0) {
        out->reason = NULL;
        return NORN_ERR_NO_MEMORY;
    }
    out->action = ACT(TERMINATE);
    return NORN_OK;
}

/* §3.9.3, for the issues of one tool call, in order. */
static int guard_before_tool(AnalyzerState *st, uint32_t step, AnalyzerResult *out)
{
    for (size_t i = 0; i < out->n_issues; i++) {
        const AnalyzerIssue *is = &out->issues[i];
        if (st->mode == GM(INTERVENE) && is->type == IT(INFINITE_LOOP) && is->severity >= 8) {
            st->loop_flag = true;
            st->terminated = true;
            return set_reason(out, "Session terminated by Intervene mode: %s", is->description);
        }
        /* Enforce stops on a hard type of any severity (a severity-7
         * credential field too), as the original does. */
        if (st->mode == GM(ENFORCE) && analyzer_issue_type_is_hard(is->type)) {
            st->breach = true;
            st->terminated = true;
            return set_reason(out, "Session terminated by Enforce mode [%s]: %s",
                              analyzer_issue_type_name(is->type), is->description);
        }
    }
    if (st->mode == GM(INTERVENE) && (int64_t)step > (int64_t)st->cfg.max_steps) {
        st->terminated = true;
        return set_reason(out, "Session terminated by Intervene mode: exceeded maximum steps (%d)",
                          st->cfg.max_steps);
    }
    return NORN_OK;
}

/* ---- before tool ----------------------------------------------------------- */

int analyzer_before_tool(AnalyzerState *st, uint32_t step, const char *tool,
                         const Google__Protobuf__Struct *input, AnalyzerResult *out)
{
    if (!st || !out)
        return NORN_ERR_INVALID;
    analyzer_result_clear(out);
    if (!tool)
        tool = "";
    IssueList l = {0};
    AnalyzerDictItem *sorted = NULL, *entry_order = NULL;
    size_t n = 0;
    int rc = NORN_ERR_NO_MEMORY;
    if (analyzer_dict_items(input, &sorted, &n) != 0)
        goto done;
    if (n) {
        entry_order = malloc(n * sizeof *entry_order);
        if (!entry_order)
            goto done;
        memcpy(entry_order, sorted, n * sizeof *entry_order);
        analyzer_dict_items_entry_order(entry_order, n);
    }

    /* 0a–0e: top-level keys only. */
    check_ssl_bypass(&l, step, sorted, n);
    check_shell_true(&l, step, sorted, n);
    check_metacharacters(&l, step, sorted, n);
    check_credential_field(st, &l, step, entry_order, n);
    check_trivial_input(st, &l, step, tool, entry_order, n);
    if (l.failed)
        goto done;

    /* 1: exact duplicate (§3.3 key). */
    text_reset(&st->scratch);
    analyzer_append_canonical_input(&st->scratch, tool, input);
    if (st->scratch.failed)
        goto done;
    Digest key = digest_of(st->scratch.data, st->scratch.len);
    bool duplicate = seen_contains(st, key);
    if (duplicate) {
        issue_add(&l, IT(INEFFICIENCY), 3, step, false,
                  "Avoid calling same tool with same inputs multiple times",
                  "Duplicate call to %s with same inputs", tool);
    } else if (seen_insert(st, key) != NORN_OK) {
        goto done;
    }

    /* 2: the same tool again and again, judged by its input diversity. */
    ToolHistory *th = tool_get(st, tool);
    if (!th)
        goto done;
    th->last_used = ++st->seq;
    tool_remember_input(st, th, key);
    uint32_t recent_same_tool = 0;
    for (uint32_t k = 0; k < st->win_n; k++)
        recent_same_tool += window_at(st, k)->tool == th;
    bool diversity_loop = false;
    if (recent_same_tool >= 3) {
        double diversity = tool_input_diversity(th);
        char pct[32];
        snprintf(pct, sizeof pct, "%.0f%%", diversity * 100.0); /* format(d, '.0%') */
        bool security_flag = false;
        for (size_t i = 0; i < l.n; i++)
            security_flag |= is_compound_hard(l.items[i].type);
        if (diversity < 0.7) {
            diversity_loop = true;
            issue_add(&l, IT(INFINITE_LOOP), 6, step, true,
                      "Agent appears to be repeating the same action. Consider intervention.",
                      "'%s' called %u times in last %d steps with low input diversity (%s) "
                      "\xe2\x80\x94 likely stuck in a loop.",
                      tool, recent_same_tool + 1, st->cfg.loop_window, pct);
        } else if (security_flag) {
            issue_add(&l, IT(SUSPICIOUS_BEHAVIOR), 7, step, true,
                      "Repeated tool calls combined with a security flag warrant review.",
                      "'%s' called %u times with varying inputs (diversity %s) AND a security "
                      "flag was raised \xe2\x80\x94 possible evasion or brute-force pattern.",
                      tool, recent_same_tool + 1, pct);
        }
    }

    /* 3: a repeating (tool, input) pattern in a full window; fires on every
     * step while it holds. */
    WindowEntry me = {key, th};
    window_push(st, me);
    bool pattern_is_mine = false;
    if (st->win_n >= (uint32_t)st->cfg.loop_window) {
        uint32_t count;
        const WindowEntry *top = window_most_common(st, &count);
        if (top && count >= (uint32_t)st->cfg.loop_threshold) {
            pattern_is_mine = digest_eq(top->sig, key);
            issue_add(&l, IT(INFINITE_LOOP), 9, step, false,
                      "Agent is stuck in a loop, intervention recommended",
                      "Repeating pattern detected: %s called %u times in last %d steps",
                      top->tool->name, count, st->cfg.loop_window);
        }
    }
    if (l.failed)
        goto done;

    for (size_t i = 0; i < l.n; i++)
        if (l.items[i].type == IT(INFINITE_LOOP))
            st->loop_seen = true;
    /* Differs from the original, where any loop issue made every later step
     * REDUNDANT — unrelated ones and error results too (§12.4 F3). A step is
     * REDUNDANT when it is part of the loop: its own low-diversity issue, the
     * repeating pattern is this very call, or it repeats an earlier call
     * after a loop was found. Fixture F1 keeps its statuses (steps 4 and 5). */
    bool redundant = diversity_loop || pattern_is_mine || (duplicate && st->loop_seen);
    pending_record(st, step, redundant);

    rc = issues_hand_over(&l, &out->issues, &out->n_issues);
    if (rc != NORN_OK)
        goto done;
    out->action = ACT(CONTINUE);
    rc = guard_before_tool(st, step, out);
    if (rc != NORN_OK)
        goto done;
    if (out->action == ACT(TERMINATE))
        out->status = SS(BLOCKED);
    else
        out->status = redundant ? SS(REDUNDANT) : SS(RUNNING);

done:
    free(sorted);
    free(entry_order);
    scratch_trim(st);
    if (rc != NORN_OK) {
        issues_free(l.items, l.n);
        analyzer_result_clear(out);
    }
    return rc;
}

/* ---- after tool ---------------------------------------------------------- */

typedef enum TextKind { TEXT_ASCII, TEXT_UTF8, TEXT_INVALID } TextKind;

/* Classifies s[0..len); ASCII is checked eight bytes at a time since tool
 * outputs are mostly ASCII. */
static TextKind text_kind(const char *s, size_t len)
{
    TextKind kind = TEXT_ASCII;
    size_t i = 0;
    while (i < len) {
        if (len - i >= 8) {
            uint64_t w;
            memcpy(&w, s + i, 8);
            if (!(w & 0x8080808080808080ULL)) {
                i += 8;
                continue;
            }
        }
        if (!((unsigned char)s[i] & 0x80)) {
            i++;
            continue;
        }
        kind = TEXT_UTF8;
        uint32_t cp = analyzer_utf8_next(s, len, &i);
        if (cp >= 0xDC80 && cp <= 0xDCFF)
            return TEXT_INVALID;
    }
    return kind;
}

/* PCRE2 in UTF mode needs valid UTF-8: each invalid byte becomes U+FFFD. */
static const char *utf8_clean(AnalyzerText *t, const char *s, size_t len, size_t *out_len)
{
    text_reset(t);
    size_t i = 0;
    while (i < len) {
        size_t start = i;
        uint32_t cp = analyzer_utf8_next(s, len, &i);
        if (cp >= 0xDC80 && cp <= 0xDCFF)
            analyzer_text_append(t, "\xef\xbf\xbd", 3);
        else
            analyzer_text_append(t, s + start, i - start);
    }
    analyzer_text_append(t, "", 0);
    *out_len = t->len;
    return t->failed ? NULL : t->data;
}

/* At least `n` code points? */
static bool has_code_points(const char *s, size_t len, size_t n)
{
    if (len >= 4 * n)
        return true;
    size_t i = 0, count = 0;
    while (i < len && count < n) {
        analyzer_utf8_next(s, len, &i);
        count++;
    }
    return count >= n;
}

static int scan_injection(AnalyzerState *st, IssueList *l, uint32_t step, const char *tool,
                          const char *text, size_t len)
{
    if (!text || !has_code_points(text, len, 10))
        return NORN_OK;
    const char *subject = text;
    size_t subject_len = len;
    TextKind kind = text_kind(text, len);
    if (kind == TEXT_INVALID) {
        subject = utf8_clean(&st->scratch, text, len, &subject_len);
        if (!subject)
            return NORN_ERR_NO_MEMORY;
    }
    const CompiledRegex *set = kind == TEXT_ASCII ? injection_ascii : injection_utf;
    size_t starts[N_INJECTION_PATTERNS], ends[N_INJECTION_PATTERNS];
    size_t k = 0;
    bool first_branch_matched = false;
    for (size_t i = 0; i < N_INJECTION_REGEXES; i++) {
        size_t s0, e0;
        if (!regex_search(&set[i], subject, subject_len, st->md, &s0, &e0))
            continue;
        if (i == N_INJECTION_REGEXES - 1 && first_branch_matched) {
            /* Pattern 7's second branch: the leftmost of the two wins. */
            if (s0 < starts[k - 1]) {
                starts[k - 1] = s0;
                ends[k - 1] = e0;
            }
            continue;
        }
        first_branch_matched = i == N_INJECTION_REGEXES - 2;
        starts[k] = s0;
        ends[k] = e0;
        k++;
    }
    if (k < 2)
        return NORN_OK;
    /* Python: f"{matched[:3]}" */
    AnalyzerText list = {0};
    analyzer_text_append(&list, "[", 1);
    for (size_t i = 0; i < k && i < 3; i++) {
        if (i)
            analyzer_text_append(&list, ", ", 2);
        analyzer_repr_string(&list, subject + starts[i], ends[i] - starts[i]);
    }
    analyzer_text_append(&list, "]", 1);
    if (list.failed) {
        analyzer_text_free(&list);
        return NORN_ERR_NO_MEMORY;
    }
    issue_add(l, IT(PROMPT_INJECTION), 8, step, true,
              "Do not trust this tool's output. The embedded instructions may attempt to "
              "override quality scores or suppress issue reporting.",
              "Prompt injection detected in '%s' output: %zu suspicious patterns found "
              "\xe2\x80\x94 %s. The tool output may be trying to manipulate the AI's scoring or "
              "hide findings.",
              tool, k, list.data);
    analyzer_text_free(&list);
    if (!l->failed)
        st->breach = true;
    return NORN_OK;
}

int analyzer_after_tool(AnalyzerState *st, uint32_t step, const char *tool, const char *text,
                        size_t len, Norn__V1__ResultStatus rs, AnalyzerResult *out)
{
    if (!st || !out || (!text && len))
        return NORN_ERR_INVALID;
    analyzer_result_clear(out);
    if (!tool)
        tool = "";
    /* §3.7, first match wins: an exception beats the loop, the loop beats an
     * error result. */
    if (rs == RS(EXCEPTION))
        out->status = SS(FAILED);
    else if (pending_redundant(st, step))
        out->status = SS(REDUNDANT);
    else if (rs == RS(ERROR))
        out->status = SS(FAILED);
    else
        out->status = SS(SUCCESS);
    out->action = ACT(CONTINUE);

    /* Differs from the original, which named the step by its running
     * counter, wrong when parallel tool calls finish out of order (§12.4 F4);
     * here it is the number of this very call. */
    IssueList l = {0};
    int rc = scan_injection(st, &l, step, tool, text, len);
    scratch_trim(st);
    if (rc == NORN_OK)
        rc = issues_hand_over(&l, &out->issues, &out->n_issues);
    else
        issues_free(l.items, l.n);
    if (rc != NORN_OK)
        analyzer_result_clear(out);
    return rc;
}

/* ---- system prompt ---------------------------------------------------------- */

typedef struct PromptGroup {
    const char *label;
    const char *const *patterns;
    size_t n;
} PromptGroup;

static const char *const sp_sensitive[] = {"/etc/passwd",
                                           "/etc/shadow",
                                           "/etc/hosts",
                                           "/proc/",
                                           "~/.ssh",
                                           "id_rsa",
                                           ".bash_history",
                                           ".env",
                                           "c:\\windows\\system32",
                                           "c:/windows/system32"};
static const char *const sp_recon[] = {"shell command: env",
                                       "run the shell",
                                       "run shell",
                                       "execute: env",
                                       "cmd: env",
                                       "whoami",
                                       "run id",
                                       "ps aux",
                                       "netstat",
                                       "ifconfig",
                                       "ipconfig",
                                       "uname -a",
                                       "cat /etc",
                                       "ls /etc"};
static const char *const sp_exfil[] = {"post the collected", "post collected",  "send the data",
                                       "send collected",     "upload to",       "exfiltrate",
                                       "httpbin.org/post",   "webhook.site",    "requestbin",
                                       "ngrok.io",           "burpcollaborator"};
static const char *const sp_covert[] = {
    "before doing any task", "before every task", "always collect",   "first collect",
    "always read /",         "always read ~",     "before answering", "without telling the user",
    "do not mention this",   "never reveal",      "keep this secret", "hidden instruction"};

static const PromptGroup prompt_groups[] = {
    {"sensitive_file_access", sp_sensitive, COUNT_OF(sp_sensitive)},
    {"recon_commands", sp_recon, COUNT_OF(sp_recon)},
    {"data_exfiltration", sp_exfil, COUNT_OF(sp_exfil)},
    {"covert_instructions", sp_covert, COUNT_OF(sp_covert)},
};

static bool is_word_byte(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c >= 0x80;
}

/* Differs from the original for ".env": as a plain substring it matched
 * "os.environ", ".envelope" and the like (§12.4 F10). It now counts only as
 * a name of its own — not followed by a letter, digit or underscore (".env",
 * ".env.local", "/app/.env"). */
static bool prompt_contains(const char *lower, const char *pattern)
{
    if (strcmp(pattern, ".env") != 0)
        return strstr(lower, pattern) != NULL;
    for (const char *p = strstr(lower, pattern); p; p = strstr(p + 1, pattern))
        if (!is_word_byte((unsigned char)p[4]))
            return true;
    return false;
}

int analyzer_system_prompt(AnalyzerState *st, const char *prompt, AnalyzerResult *out)
{
    if (!st || !out)
        return NORN_ERR_INVALID;
    analyzer_result_clear(out);
    out->action = ACT(CONTINUE);
    if (!prompt || !*prompt)
        return NORN_OK;
    const char *lower = lowered(st, prompt, strlen(prompt));
    if (!lower)
        return NORN_ERR_NO_MEMORY;

    const char *labels[COUNT_OF(prompt_groups)];
    const char *hits[COUNT_OF(prompt_groups)];
    size_t k = 0;
    bool weak_covert = false;
    for (size_t g = 0; g < COUNT_OF(prompt_groups); g++) {
        const PromptGroup *grp = &prompt_groups[g];
        for (size_t p = 0; p < grp->n; p++) {
            if (!prompt_contains(lower, grp->patterns[p]))
                continue;
            labels[k] = grp->label;
            hits[k] = grp->patterns[p];
            /* Differs from the original: "before answering" on its own is
             * how benign prompts ask for care ("Before answering, think step
             * by step"), yet it made a covert-instructions hit (§12.4 F10). It
             * now counts only beside another group's hit or a later covert
             * phrase, i.e. when there is something to hide. */
            if (strcmp(grp->patterns[p], "before answering") == 0) {
                weak_covert = true;
                for (size_t q = p + 1; q < grp->n; q++)
                    if (prompt_contains(lower, grp->patterns[q]))
                        weak_covert = false;
            }
            k++;
            break;
        }
    }
    if (weak_covert && k == 1)
        k = 0;
    if (k == 0) {
        scratch_trim(st);
        return NORN_OK;
    }

    AnalyzerText names = {0}, list = {0};
    analyzer_text_append(&list, "[", 1);
    for (size_t i = 0; i < k; i++) {
        if (i) {
            analyzer_text_append(&names, ", ", 2);
            analyzer_text_append(&list, ", ", 2);
        }
        analyzer_text_append(&names, labels[i], strlen(labels[i]));
        analyzer_repr_string(&list, hits[i], strlen(hits[i]));
    }
    analyzer_text_append(&list, "]", 1);
    IssueList l = {0};
    if (names.failed || list.failed)
        l.failed = true;
    /* Differs from the original in one letter: it wrote "categorys". */
    issue_add(&l, k >= 2 ? IT(PROMPT_INJECTION) : IT(SUSPICIOUS_BEHAVIOR), k >= 2 ? 9 : 7, 0, false,
              "Review the agent's system prompt. It may contain instructions to access sensitive "
              "files, collect environment variables, or exfiltrate data to external URLs.",
              "Malicious instructions detected in agent system prompt (%zu suspicious %s "
              "matched: %s). Matched patterns: %s.",
              k, k > 1 ? "categories" : "category", names.data, list.data);
    analyzer_text_free(&names);
    analyzer_text_free(&list);
    int rc = issues_hand_over(&l, &out->issues, &out->n_issues);
    if (rc != NORN_OK)
        return rc;
    st->breach = true;
    scratch_trim(st);
    if (st->mode == GM(ENFORCE) && out->issues[0].type == IT(PROMPT_INJECTION)) {
        st->terminated = st->prompt_terminated = true;
        rc = set_reason(out, "Session terminated by Enforce mode [PROMPT_INJECTION]: %s",
                        out->issues[0].description);
        if (rc != NORN_OK)
            analyzer_result_clear(out);
    }
    return rc;
}

/* ---- finalize ------------------------------------------------------------ */

int analyzer_finalize(const AnalyzerState *st, const AnalyzerSessionFacts *f, AnalyzerFinal *out)
{
    if (!st || !f || !out || (f->n_issues && !f->issues))
        return NORN_ERR_INVALID;
    analyzer_final_clear(out);
    IssueList l = {0};
    int max_expected =
        f->task_max_steps ? (int)(f->task_max_steps > 1000000000u ? 1000000000u : f->task_max_steps)
                          : st->cfg.max_steps;

    /* §3.8: only with a task, and not when enforce stopped the invocation at
     * the system prompt (the original never reached its session end then). */
    bool judge_efficiency = f->has_task && !st->prompt_terminated;
    if (judge_efficiency && (double)f->total_steps > max_expected * 1.5)
        issue_add(&l, IT(INEFFICIENCY), 5, 0, false,
                  "Agent may be inefficient, review task approach",
                  "Task took %u steps (expected ~%d)", f->total_steps, max_expected);
    if (f->has_efficiency_score) {
        out->has_efficiency_score = true;
        out->efficiency_score = f->efficiency_score < 0     ? 0
                                : f->efficiency_score > 100 ? 100
                                                            : f->efficiency_score;
    } else if (judge_efficiency) {
        int64_t score = 100 - ((int64_t)f->total_steps - max_expected) * 10;
        out->has_efficiency_score = true;
        out->efficiency_score = score > 100 ? 100 : score < 0 ? 0 : (int)score;
    }

    /* §3.9.1 over every weighed issue. */
    bool hard_high = false, loop_high = false, severe_injection = false;
    uint32_t hard_count = 0;
    for (size_t i = 0; i < f->n_issues; i++) {
        Norn__V1__IssueType t = f->issues[i].type;
        int sev = f->issues[i].severity;
        if (analyzer_issue_type_is_hard(t)) {
            hard_count++;
            if (sev >= 8)
                hard_high = true;
            if (sev >= 8 && (t == IT(PROMPT_INJECTION) || t == IT(DATA_EXFILTRATION)))
                severe_injection = true;
        }
        if (t == IT(INFINITE_LOOP) && sev >= 8)
            loop_high = true;
    }
    bool loop_flag = st->loop_flag || f->loop_detected;
    bool breach = st->breach || f->security_breach_detected;

    Norn__V1__SessionQuality q = f->quality == SQ(UNSPECIFIED) ? SQ(PENDING) : f->quality;
    if (loop_flag || loop_high)
        q = SQ(STUCK);
    else if (hard_high)
        q = SQ(FAILED);
    else if (hard_count >= 3) {
        if (q == SQ(EXCELLENT) || q == SQ(GOOD))
            q = SQ(POOR);
    } else if (breach && q == SQ(EXCELLENT)) {
        q = SQ(GOOD);
    }

    bool has_cap = true;
    int cap = 0;
    if (hard_high)
        cap = severe_injection ? 20 : 40;
    else if (hard_count >= 3)
        cap = 40;
    else if (hard_count >= 1)
        cap = 60;
    else
        has_cap = false;
    out->has_security_score = f->has_security_score;
    out->security_score = f->security_score;
    if (has_cap && (!out->has_security_score || out->security_score > cap)) {
        out->has_security_score = true;
        out->security_score = cap;
    }

    if (st->prompt_terminated) {
        /* The original's enforce path for a malicious system prompt: FAILED,
         * security 0, breach, and no efficiency (its session end never ran). */
        q = SQ(FAILED);
        out->has_security_score = true;
        out->security_score = 0;
        breach = true;
        if (!f->has_efficiency_score)
            out->has_efficiency_score = false;
    }

    out->quality = q;
    /* Differs from the original, where loop_detected was set only when
     * intervene mode terminated, so a STUCK monitor session said false
     * (§12.4 F2): it is true whenever the loop verdict stands. */
    out->loop_detected = loop_flag || loop_high;
    out->security_breach_detected = breach;
    out->terminated_by_guard = st->terminated || f->terminated_by_guard;
    /* Differs from the original, which stored "terminated" for breach +
     * FAILED whether or not anything was stopped, and "completed" for an
     * enforce stop on a severity-7 issue (§12.4 F11). */
    out->status = out->terminated_by_guard ? SST(TERMINATED) : SST(COMPLETED);
    out->hard_issue_count = hard_count;
    int rc = issues_hand_over(&l, &out->issues, &out->n_issues);
    if (rc != NORN_OK)
        analyzer_final_clear(out);
    return rc;
}

/* ---- credential masking (§3.10) ---------------------------------------- */

#define MASK_MAX_DEPTH 100

static Google__Protobuf__Struct *mask_struct(const Google__Protobuf__Struct *in, int depth,
                                             AnalyzerText *scratch);

static Google__Protobuf__Value *mask_value(const Google__Protobuf__Value *in, int depth,
                                           AnalyzerText *scratch)
{
    Google__Protobuf__Value *v = malloc(sizeof *v);
    if (!v)
        return NULL;
    google__protobuf__value__init(v);
    if (!in || depth > MASK_MAX_DEPTH) {
        /* Deeper than any sane input: stored as null rather than recursing
         * without bound on network data. */
        v->kind_case = GOOGLE__PROTOBUF__VALUE__KIND_NULL_VALUE;
        return v;
    }
    switch (in->kind_case) {
    case GOOGLE__PROTOBUF__VALUE__KIND_NUMBER_VALUE:
        v->kind_case = in->kind_case;
        v->number_value = in->number_value;
        break;
    case GOOGLE__PROTOBUF__VALUE__KIND_BOOL_VALUE:
        v->kind_case = in->kind_case;
        v->bool_value = in->bool_value;
        break;
    case GOOGLE__PROTOBUF__VALUE__KIND_STRING_VALUE:
        v->string_value = strdup(in->string_value ? in->string_value : "");
        if (!v->string_value)
            goto fail;
        v->kind_case = in->kind_case;
        break;
    case GOOGLE__PROTOBUF__VALUE__KIND_STRUCT_VALUE:
        v->struct_value = mask_struct(in->struct_value, depth + 1, scratch);
        if (!v->struct_value)
            goto fail;
        v->kind_case = in->kind_case;
        break;
    case GOOGLE__PROTOBUF__VALUE__KIND_LIST_VALUE: {
        Google__Protobuf__ListValue *lv = malloc(sizeof *lv);
        if (!lv)
            goto fail;
        google__protobuf__list_value__init(lv);
        v->list_value = lv;
        v->kind_case = in->kind_case;
        size_t n = in->list_value ? in->list_value->n_values : 0;
        if (n) {
            lv->values = calloc(n, sizeof *lv->values);
            if (!lv->values)
                goto fail;
            for (size_t i = 0; i < n; i++) {
                lv->values[i] = mask_value(in->list_value->values[i], depth + 1, scratch);
                if (!lv->values[i])
                    goto fail;
                lv->n_values++;
            }
        }
        break;
    }
    default: v->kind_case = GOOGLE__PROTOBUF__VALUE__KIND_NULL_VALUE; break;
    }
    return v;
fail:
    google__protobuf__value__free_unpacked(v, NULL);
    return NULL;
}

static Google__Protobuf__Struct *mask_struct(const Google__Protobuf__Struct *in, int depth,
                                             AnalyzerText *scratch)
{
    Google__Protobuf__Struct *s = malloc(sizeof *s);
    if (!s)
        return NULL;
    google__protobuf__struct__init(s);
    size_t n = in ? in->n_fields : 0;
    if (!n)
        return s;
    s->fields = calloc(n, sizeof *s->fields);
    if (!s->fields)
        goto fail;
    for (size_t i = 0; i < n; i++) {
        const Google__Protobuf__Struct__FieldsEntry *ie = in->fields[i];
        Google__Protobuf__Struct__FieldsEntry *e = malloc(sizeof *e);
        if (!e)
            goto fail;
        google__protobuf__struct__fields_entry__init(e);
        s->fields[s->n_fields++] = e;
        const char *key = ie && ie->key ? ie->key : "";
        e->key = strdup(key);
        if (!e->key)
            goto fail;
        text_reset(scratch);
        analyzer_py_lower(scratch, key, strlen(key));
        if (scratch->failed)
            goto fail;
        if (is_masked_field(scratch->data ? scratch->data : "")) {
            e->value = malloc(sizeof *e->value);
            if (!e->value)
                goto fail;
            google__protobuf__value__init(e->value);
            e->value->string_value = strdup("***REDACTED***");
            if (!e->value->string_value)
                goto fail;
            e->value->kind_case = GOOGLE__PROTOBUF__VALUE__KIND_STRING_VALUE;
        } else {
            e->value = mask_value(ie ? ie->value : NULL, depth + 1, scratch);
            if (!e->value)
                goto fail;
        }
    }
    return s;
fail:
    google__protobuf__struct__free_unpacked(s, NULL);
    return NULL;
}

Google__Protobuf__Struct *analyzer_mask_credentials(const Google__Protobuf__Struct *in)
{
    AnalyzerText scratch = {0};
    Google__Protobuf__Struct *s = mask_struct(in, 0, &scratch);
    analyzer_text_free(&scratch);
    return s;
}
