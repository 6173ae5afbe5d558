/*
 * discovery.h — static discovery of an imported Python agent (reference
 * §8.3–8.5, issue 8): which file is the entry point, its tools, functions,
 * classes, imports, dependencies, entry points, agent type, and findings such
 * as hard-coded credentials or dangerous parameter defaults.
 *
 * The agent's code is parsed with tree-sitter and never imported or executed.
 * A small TOML subset reader (for pyproject.toml) is part of this API so it
 * can be tested on its own.
 */
#ifndef NORN_DISCOVERY_H
#define NORN_DISCOVERY_H

#include <stddef.h>

#include "norn/v1/agent_service.pb-c.h"

/* Bounds on what one discovery run reads. Zero fields take the defaults. */
typedef struct DiscoveryOptions {
    /* Directory entries looked at while walking the tree (default 2,000);
     * more is an error (NORN_ERR_EXHAUSTED). */
    size_t max_files;
    /* Largest Python file parsed (default 1 MiB); a bigger entry file is an
     * error, bigger other files are skipped by the finding scan. */
    size_t max_file_bytes;
    /* Python source read in all (default 16 MiB); the finding scan of other
     * files stops there. */
    size_t max_total_bytes;
    /* Directory levels below root that are walked (default 12). */
    size_t max_depth;
    /* NULL-terminated site-packages directories used for the INSTALLED
     * check; NULL = discovery_default_site_dirs. */
    const char *const *site_dirs;
} DiscoveryOptions;

/* /usr/lib/python3/dist-packages and /usr/local/lib/python3.11/dist-packages:
 * where Debian's python3 (and so an agent virtualenv made with
 * --system-site-packages) finds third-party modules. */
extern const char *const discovery_default_site_dirs[];

/*
 * Analyses the agent checked out in `root` (sub-directory already applied).
 *
 * main_file: the entry file relative to root, or NULL/"" to detect it:
 * pyproject.toml rules (§8.3), then main.py, agent.py, app.py, run.py,
 * __main__.py, then the §8.4 heuristic over *.py files at most 4 path
 * components deep (fewest components first, ties by file name).
 *
 * On success returns 0, *report_out is a malloc'd report (free it with
 * norn__v1__discovery_report__free_unpacked(r, NULL)) and *name_out the
 * malloc'd agent name of §8.4 (pyproject name, module docstring, or file
 * stem; Title Case). A syntax error in the entry file still returns 0 with
 * report->error set and the rest of the report partial.
 *
 * On failure returns a negative NornError, writes a message to err and sets
 * both outputs to NULL: NORN_ERR_NOT_FOUND (root missing, entry file missing,
 * or "No agent files detected. Available Python files: ..."),
 * NORN_ERR_INVALID (main_file absolute, with "..", or leaving root through a
 * symlink), NORN_ERR_EXHAUSTED (a limit of `opts` exceeded),
 * NORN_ERR_NO_MEMORY, NORN_ERR_INTERNAL (grammar ABI refused by the runtime).
 *
 * Symbolic links to directories are not followed; symbolic links to files
 * are followed only when they resolve inside root.
 */
int discovery_run_with(const DiscoveryOptions *opts, const char *root, const char *main_file,
                       Norn__V1__DiscoveryReport **report_out, char **name_out, char *err,
                       size_t errlen);

/* discovery_run_with() with the default options. */
int discovery_run(const char *root, const char *main_file, Norn__V1__DiscoveryReport **report_out,
                  char **name_out, char *err, size_t errlen);

/* ---- the pyproject.toml subset reader ------------------------------------
 * Understands [table] headers, key = value with bare, quoted and dotted
 * keys, basic and literal strings (also multi-line), arrays (multi-line,
 * nested, with comments) and inline tables; numbers, booleans and dates are
 * kept as raw text. [[array tables]] and anything it cannot read are skipped
 * up to the end of the line, so a file it does not fully understand still
 * yields the keys it does. Bounded: at most 4,096 values, 1,024 items per
 * array, nesting depth 8. */
typedef struct TomlDoc TomlDoc;

/* Parses `len` bytes of `text` (need not be NUL-terminated). NULL only when
 * memory runs out. Free with toml_free(). */
TomlDoc *toml_parse(const char *text, size_t len);
void toml_free(TomlDoc *doc);

/* The string value of `key` in `table` ("" = the root table, "a.b" = [a.b]),
 * or NULL when absent or not a string. Owned by doc. */
const char *toml_get_string(const TomlDoc *doc, const char *table, const char *key);

/* The string items of the array `key` in `table` (non-string items are left
 * out); returns their number and points *items at them (owned by doc), 0 when
 * absent or not an array. */
size_t toml_get_array(const TomlDoc *doc, const char *table, const char *key,
                      const char *const **items);

/* The i-th key (document order) defined directly in `table`, e.g. the
 * dependency names of [tool.poetry.dependencies]; NULL past the end. */
const char *toml_table_key(const TomlDoc *doc, const char *table, size_t i);

#endif
