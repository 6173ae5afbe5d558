/*
 * discovery_internal.h — what the discovery_*.c files share: the per-file
 * Python analysis (discovery_python.c), the credential rules
 * (discovery_secrets.c) and the report-building helpers (discovery_report.c).
 * Not part of the module's API.
 */
#ifndef NORN_DISCOVERY_INTERNAL_H
#define NORN_DISCOVERY_INTERNAL_H

#include <stddef.h>

#include "discovery.h"

/* Longest name, description or detail copied into the report (bytes). */
#define DISCOVERY_MAX_TEXT 200
/* Longest repository-relative path copied into the report (bytes). */
#define DISCOVERY_MAX_PATH 4096
/* Most entries per repeated report field; further ones are dropped. */
#define DISCOVERY_MAX_ITEMS 2000

/* ---- report building (all allocation failures set *oom) ----------------- */

/* A malloc'd copy of n bytes of s, cut to DISCOVERY_MAX_TEXT bytes on a
 * character boundary, with bytes that are not valid UTF-8 replaced by '?'
 * (protobuf strings must be UTF-8). */
char *report_text(const char *s, size_t n, int *oom);
/* The same for a NUL-terminated path, cut at DISCOVERY_MAX_PATH instead. */
char *report_path(const char *path, int *oom);
/* Appends a copy of s (n bytes) to a string array unless already present. */
void report_add_unique(char ***items, size_t *n_items, const char *s, size_t n, int *oom);
/* Appends a finding. file may be NULL (repository-wide). */
void report_add_finding(Norn__V1__DiscoveryReport *r, const char *kind,
                        Norn__V1__FindingSeverity severity, const char *file, unsigned line,
                        const char *detail, int *oom);
/* Appends a malloc'd message to a repeated field, taking it; frees it when
 * the field is full or memory runs out. */
void report_append_take(void ***items, size_t *n_items, void *item, void (*free_item)(void *),
                        int *oom);
void report_free_tool(void *tool);

/* ---- credentials (discovery_secrets.c) ----------------------------------- */

/* A known secret format inside s[0..n) (AWS key id, private-key block,
 * GitHub, Slack, OpenAI or Anthropic token, or a whole 40-character AWS-secret-
 * like value): its description, with *at and *match_len set to the match; NULL
 * when there is none. */
const char *secret_find_pattern(const char *s, size_t n, size_t *at, size_t *match_len);
/* 1 when a name such as `api_key`, `DB_PASSWORD` or `clientSecret` says its
 * value is a credential, and `value` looks like a real one (not empty, not a
 * placeholder). */
int secret_named_credential(const char *name, size_t name_len, const char *value, size_t value_len);
/* Writes the masked form of a secret ("AKIA…"): at most its first 4
 * characters (fewer for short values) and an ellipsis. */
void secret_mask(char *out, size_t cap, const char *value, size_t n);

/* ---- one Python file (discovery_python.c) -------------------------------- */

typedef struct ToolList {
    Norn__V1__ToolInfo **items;
    size_t n;
} ToolList;

typedef struct PyAnalysis {
    /* in */
    const char *rel; /* repository-relative path, for file fields */
    const char *src; /* the source, kept alive until py_analysis_release */
    size_t len;
    int full;                          /* the entry file: collect everything, not only findings */
    Norn__V1__DiscoveryReport *report; /* NULL = only probe looks_like_agent */
    /* out */
    ToolList decorated, external, package, imported; /* tools by origin */
    char **dep_roots; /* absolute imports' top-level modules, document order */
    size_t n_dep_roots;
    int looks_like_agent; /* the §8.4 _is_agent_file test, syntax aside */
    int strands_agent;    /* imports strands' Agent */
    int syntax_error;
    unsigned syntax_error_line;
    char *module_doc; /* first line of the module docstring, or NULL */
    int oom;
} PyAnalysis;

/* Parses a->src and fills the outputs. 0, NORN_ERR_NO_MEMORY, or
 * NORN_ERR_INTERNAL when the runtime refuses the grammar's ABI. */
int py_analyze(PyAnalysis *a, char *err, size_t errlen);
/* Frees the outputs that are not in the report. */
void py_analysis_release(PyAnalysis *a);

#endif
