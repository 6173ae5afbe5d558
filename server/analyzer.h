/*
 * analyzer.h — the deterministic step analyzer (reference §3): a pure module
 * with no gRPC and no storage. It takes a session's analyzer state plus one
 * event (system prompt, tool call before it runs, tool result after it ran,
 * session end) and returns issues, a step status and a guard decision.
 *
 * Threading: thread-compatible. One AnalyzerState per session, used by one
 * thread at a time. The only globals are the compiled regular expressions,
 * built once (pthread_once) and read-only afterwards.
 *
 * Determinism: verdicts depend only on the configuration and the sequence of
 * calls since analyzer_begin_invocation() — never on wall time, randomness or
 * addresses. To rebuild a session's state after a restart, call
 * analyzer_begin_invocation(), then analyzer_system_prompt() if the
 * invocation had a system prompt, then for each stored step of the current
 * invocation in step order analyzer_before_tool() and (unless the step was
 * BLOCKED) analyzer_after_tool(), discarding the results; the state is then
 * exactly what it was.
 *
 * Memory: everything a state holds is bounded: the duplicate set keeps at
 * most `max_seen_inputs` digests (oldest evicted first), each tool keeps its
 * last `loop_window` input digests, at most ANALYZER_MAX_TOOLS tools are
 * remembered (least recently used evicted), and inputs are remembered as
 * 128-bit digests, never as copies.
 *
 * Where this port deliberately differs from the original (reference §12.4
 * F1–F4, F9–F11), the code says so next to the rule, in a comment starting
 * "Differs from the original".
 *
 * Errors: functions returning int return 0 (NORN_OK) or a negative NornError
 * (error.h): NORN_ERR_INVALID for a bad argument, NORN_ERR_NO_MEMORY when an
 * allocation failed (the result is then empty; the state may have recorded
 * part of the step, so treat it as fatal for the session), NORN_ERR_INTERNAL
 * when the regular expressions could not be compiled.
 */
#ifndef NORN_ANALYZER_H
#define NORN_ANALYZER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "google/protobuf/struct.pb-c.h"
#include "norn/v1/common.pb-c.h"

/* Upper bound of AnalyzerConfig.loop_window (the loop rules are O(W²)). */
#define ANALYZER_MAX_LOOP_WINDOW 100
/* Tools whose recent inputs a state remembers; must exceed the window. */
#define ANALYZER_MAX_TOOLS 512
/* Bounds of AnalyzerConfig.max_seen_inputs. */
#define ANALYZER_MIN_SEEN_INPUTS 16
#define ANALYZER_MAX_SEEN_INPUTS (1 << 20)
/* Tool calls begun (analyzer_before_tool) whose result may still come. */
#define ANALYZER_MAX_PENDING_STEPS 256

/* Tuning of one session's analyzer (copied into the state). */
typedef struct AnalyzerConfig {
    /* W: size of the recent-call window of the loop rules; 1..100, default
     * 5 (the hook's default; the original class default was 10). */
    int loop_window;
    /* T: occurrences of one (tool, input) in a full window that make a
     * repeating pattern; >= 1, default 3. */
    int loop_threshold;
    /* Step limit of intervene mode and the efficiency yardstick (the task's
     * max_steps when it has one); >= 1, default 50. */
    int max_steps;
    /* Mode used when analyzer_begin_invocation() gets UNSPECIFIED; default
     * MONITOR. */
    Norn__V1__GuardMode guard_mode;
    /* Bound of the duplicate-input set; 16..2^20, default 4096. A call that
     * repeats one made more than this many distinct calls earlier is not
     * reported as a duplicate. */
    int max_seen_inputs;
    /* There is no max_same_tool: the original accepted it but never
     * consulted it (reference §3.5, §12.4 F1), so it is removed rather than
     * turned into a new, unspecified rule. */
} AnalyzerConfig;

/* W=5, T=3, max_steps=50, monitor, 4096 remembered inputs. */
AnalyzerConfig analyzer_config_default(void);

/* 0 when every field is in range; otherwise NORN_ERR_INVALID and, when
 * `err` is not NULL, a message naming the field (cut to `err_cap`). */
int analyzer_config_validate(const AnalyzerConfig *cfg, char *err, size_t err_cap);

/* One issue. Strings are owned by the result that holds the issue. */
typedef struct AnalyzerIssue {
    Norn__V1__IssueType type;
    int severity; /* 1..10 */
    char *description;
    char *recommendation;
    /* The step that raised it; 0 for session-level issues (system prompt,
     * efficiency). */
    uint32_t step_number;
    /* "step_<n>" when the original listed the step in affected_steps, else
     * "" (duplicate and repeating-pattern issues list none). */
    char affected_step[24];
} AnalyzerIssue;

/* What one event produced. Zero-initialise before first use; every
 * analyzer_* call that fills it clears it first, and analyzer_result_clear()
 * frees it. */
typedef struct AnalyzerResult {
    /* CONTINUE, or TERMINATE when the guard tells the agent to stop. */
    Norn__V1__Action action;
    /* analyzer_before_tool: BLOCKED (terminated before the tool ran),
     * REDUNDANT (provisional: this call repeats a loop) or RUNNING;
     * analyzer_after_tool: the final status (SUCCESS, FAILED, REDUNDANT);
     * analyzer_system_prompt: UNSPECIFIED. */
    Norn__V1__StepStatus status;
    /* Why the session is terminated ("Session terminated by ..."); NULL
     * with CONTINUE. */
    char *reason;
    size_t n_issues;
    AnalyzerIssue *issues;
} AnalyzerResult;

/* Frees everything `r` owns and zeroes it; safe on a zeroed result. */
void analyzer_result_clear(AnalyzerResult *r);

typedef struct AnalyzerState AnalyzerState;

/* A new state for one session, in the first invocation with cfg->guard_mode.
 * NULL when `cfg` is invalid (see analyzer_config_validate), memory is short
 * or the regular expressions cannot be compiled. Free with
 * analyzer_state_free(). */
AnalyzerState *analyzer_state_new(const AnalyzerConfig *cfg);

/* Frees the state; NULL is fine. */
void analyzer_state_free(AnalyzerState *st);

/* Starts an agent invocation (OpenSession): forgets every remembered call,
 * window and flag, as the original resets its analyzer per invocation even
 * when the session is resumed. `mode` UNSPECIFIED means the configured mode. */
void analyzer_begin_invocation(AnalyzerState *st, Norn__V1__GuardMode mode);

/* The guard mode in force for the current invocation. */
Norn__V1__GuardMode analyzer_guard_mode(const AnalyzerState *st);

/* §3.6: scans the agent's system prompt (NULL or "" = none) once per
 * invocation. One matched group gives SUSPICIOUS_BEHAVIOR(7), two or more
 * PROMPT_INJECTION(9); any match sets the breach flag. In enforce mode a
 * PROMPT_INJECTION answers TERMINATE. */
int analyzer_system_prompt(AnalyzerState *st, const char *prompt, AnalyzerResult *out);

/* §3.2 and §3.9.3: analyses a tool call before it runs — input checks
 * 0a–0e, duplicate, low diversity, repeating pattern — and decides:
 * intervene stops on a loop of severity >= 8 and when step_number exceeds
 * max_steps, enforce on any hard-type issue, monitor never. `step_number` is
 * the session-wide number (it includes resumed and reasoning steps);
 * `tool_name` NULL counts as ""; `input` NULL as {}. Neither is kept. */
int analyzer_before_tool(AnalyzerState *st, uint32_t step_number, const char *tool_name,
                         const Google__Protobuf__Struct *input, AnalyzerResult *out);

/* §3.4 and §3.7: scans the tool's full output (`len` bytes, need not be
 * NUL-terminated or valid UTF-8) for prompt injection and decides the step's
 * status. `step_number` is the number given to analyzer_before_tool for this
 * call (calls may finish out of order). */
int analyzer_after_tool(AnalyzerState *st, uint32_t step_number, const char *tool_name,
                        const char *result_text, size_t len, Norn__V1__ResultStatus rs,
                        AnalyzerResult *out);

/* An issue as the final verdict sees it. */
typedef struct AnalyzerIssueRef {
    Norn__V1__IssueType type;
    int severity;
} AnalyzerIssueRef;

/* What the session end knows beyond the analyzer state. */
typedef struct AnalyzerSessionFacts {
    /* Steps of this invocation, reasoning steps included. */
    uint32_t total_steps;
    /* Efficiency is judged only when the session has a task. */
    bool has_task;
    /* The task's expected steps; 0 = the configured max_steps. */
    uint32_t task_max_steps;
    /* Current quality: UNSPECIFIED/PENDING without AI, else the AI's. */
    Norn__V1__SessionQuality quality;
    /* The AI's security score, if any (the caps apply to it). */
    bool has_security_score;
    int security_score;
    /* The AI's efficiency score, if any; it replaces the heuristic. */
    bool has_efficiency_score;
    int efficiency_score;
    /* Flags known outside the state (persisted, or raised by the AI or the
     * shadow browser); OR-ed with the state's own. */
    bool security_breach_detected;
    bool loop_detected;
    bool terminated_by_guard;
    /* Every issue the verdict must weigh: all issues of this invocation —
     * those the analyzer returned and the AI-derived ones. */
    const AnalyzerIssueRef *issues;
    size_t n_issues;
} AnalyzerSessionFacts;

/* The final verdict of an invocation. */
typedef struct AnalyzerFinal {
    Norn__V1__SessionQuality quality;
    bool has_efficiency_score;
    int efficiency_score;
    bool has_security_score;
    int security_score;
    bool loop_detected;
    bool security_breach_detected;
    /* The guard answered TERMINATE during this invocation. */
    bool terminated_by_guard;
    /* TERMINATED only when the guard told the agent to stop, else
     * COMPLETED. */
    Norn__V1__SessionStatus status;
    /* Hard-type issues among the weighed ones (security_threats_detected). */
    uint32_t hard_issue_count;
    /* The efficiency issue (§3.8), if any: returned by every call; store it
     * once. It never changes the verdict (INEFFICIENCY neither caps nor
     * fails). */
    size_t n_issues;
    AnalyzerIssue *issues;
} AnalyzerFinal;

/* Frees what `f` owns and zeroes it. */
void analyzer_final_clear(AnalyzerFinal *f);

/* §3.8, §3.9.1, §3.9.2: efficiency, quality overrides, security caps, flags
 * and the stored status. Pure with respect to the state (it is only read), so
 * it may run twice, as the original does (at session end and again after the
 * AI evaluation). `out` is cleared first. */
int analyzer_finalize(const AnalyzerState *st, const AnalyzerSessionFacts *facts,
                      AnalyzerFinal *out);

/* "SECURITY_BYPASS" etc. (the wire name without the ISSUE_TYPE_ prefix);
 * "UNSPECIFIED" for unknown values. */
const char *analyzer_issue_type_name(Norn__V1__IssueType t);

/* True for the hard security types: SECURITY_BYPASS, PROMPT_INJECTION,
 * DATA_EXFILTRATION, CREDENTIAL_LEAK, UNAUTHORIZED_ACCESS. */
bool analyzer_issue_type_is_hard(Norn__V1__IssueType t);

/* ---- inputs: equality key and credential masking (analyzer_repr.c) ----- */

/* The equality key of §3.3 as a malloc'd string: "<tool>:" followed by the
 * Python repr of the input's items sorted by key, e.g.
 * "web_search:[('query', 'x')]". Top-level key order does not matter, nested
 * key order does; true, 1 and "1" differ. A Struct number cannot tell 1 from
 * 1.0, so integral numbers below 2^53 print as ints and compare equal.
 * Duplicate keys behave as in a Python dict built from the entries: first
 * position, last value. NULL when memory is short. */
char *analyzer_canonical_input(const char *tool_name, const Google__Protobuf__Struct *input);

/* §3.10: a deep copy of `in` (NULL = {}) in which the value of every key
 * (at any depth, inside lists too) whose lower-cased name contains password,
 * passwd, secret, api_key, apikey, private_key, access_key, auth_key,
 * authorization, credential or client_secret, or ends with "token", is
 * replaced by the string "***REDACTED***". Free with
 * google__protobuf__struct__free_unpacked(s, NULL). NULL when memory is
 * short. Differs from the original, which redacted any key containing
 * "token" (so max_tokens too). */
Google__Protobuf__Struct *analyzer_mask_credentials(const Google__Protobuf__Struct *in);

/* ---- text helpers: Python repr (§3.11), UTF-8 (analyzer_repr.c) -------- */

/* A growable NUL-terminated string. Zero-initialise. After an allocation
 * failure `failed` is set and later appends do nothing. */
typedef struct AnalyzerText {
    char *data;
    size_t len;
    size_t cap;
    bool failed;
} AnalyzerText;

void analyzer_text_append(AnalyzerText *t, const char *s, size_t n);
void analyzer_text_appendf(AnalyzerText *t, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* Hands over the string (never NULL on success: "" when empty) and zeroes
 * `t`; NULL after a failure. */
char *analyzer_text_take(AnalyzerText *t);
void analyzer_text_free(AnalyzerText *t);

/* Decodes the code point at s[*pos] (strict UTF-8) and advances *pos. An
 * invalid byte decodes as U+DC80+byte and advances by one, as Python's
 * surrogateescape does, so every byte string has a distinct decoding. */
uint32_t analyzer_utf8_next(const char *s, size_t len, size_t *pos);

/* Python str.isspace() for one code point. */
bool analyzer_is_py_space(uint32_t cp);

/* Appends the Python repr of a string: quotes chosen as Python does,
 * backslash escapes, non-printable characters as \xNN/\uNNNN/\UNNNNNNNN.
 * Printability follows Unicode for C*, Z* (but space); unassigned code
 * points other than noncharacters are treated as printable. */
void analyzer_repr_string(AnalyzerText *t, const char *s, size_t len);

/* Appends the Python repr of a JSON value: None, True/False, ints for
 * integral numbers below 2^53, shortest round-trip floats ('1.5', '1e+16',
 * 'inf', 'nan'), strings, lists, dicts in entry order. Nesting deeper than
 * 64 levels prints as '...'. */
void analyzer_repr_value(AnalyzerText *t, const Google__Protobuf__Value *v);

/* Appends the Python repr of a dict built from `s` (NULL = {}). */
void analyzer_repr_struct(AnalyzerText *t, const Google__Protobuf__Struct *s);

/* Appends the equality key of analyzer_canonical_input(). */
void analyzer_append_canonical_input(AnalyzerText *t, const char *tool_name,
                                     const Google__Protobuf__Struct *input);

/* Appends `s` lower-cased as Python's str.lower() does as far as ASCII is
 * concerned: A–Z, KELVIN SIGN → "k", U+0130 → "i" U+0307. Other characters
 * are copied unchanged (their lower-case forms are not ASCII, so no test
 * against an ASCII word can tell the difference). */
void analyzer_py_lower(AnalyzerText *t, const char *s, size_t len);

/* One key of a Struct seen as a Python dict built from its entries. */
typedef struct AnalyzerDictItem {
    const char *key;
    const Google__Protobuf__Value *value; /* the key's last entry */
    size_t first;                         /* index of the key's first entry */
} AnalyzerDictItem;

/* The distinct keys of `s` (NULL = {}), sorted by key (bytewise, which is
 * code point order), each with its last value and first position. *items is
 * malloc'd (NULL when *n is 0); returns -1 when memory is short. */
int analyzer_dict_items(const Google__Protobuf__Struct *s, AnalyzerDictItem **items, size_t *n);

/* Re-sorts items into entry (Python insertion) order. */
void analyzer_dict_items_entry_order(AnalyzerDictItem *items, size_t n);

#endif
