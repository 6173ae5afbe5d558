/*
 * git_import.h — cloning an agent's git repository with libgit2, bounded in
 * size and time, through a cache of bare mirrors (issue 8, item 1).
 *
 * An import resolves the ref on the remote (ls-remote), fetches only that
 * branch or tag into a bare mirror kept under `mirror_dir` (one per
 * normalized URL, so re-imports fetch only what changed), then writes the
 * commit's files into a fresh `dest_dir`. dest_dir gets the files only, no
 * .git: the mirror holds the history, and the agent directory never carries
 * git metadata or hooks. Symbolic links in the repository are written as
 * plain files holding the link target, so nothing under dest_dir points
 * outside it.
 */
#ifndef NORN_GIT_IMPORT_H
#define NORN_GIT_IMPORT_H

#include <stddef.h>
#include <stdint.h>

/* Hard limits on what the functions below accept from callers. */
#define GIT_IMPORT_MAX_URL 2048
#define GIT_IMPORT_MAX_REF 255    /* fits GitImportResult.ref */
#define GIT_IMPORT_MAX_SUBDIR 511 /* fits GitImportResult.subdir */

/* The stages reported by the progress callback; the values are those of
 * ImportStage in proto/norn/v1/agent_service.proto. */
enum {
    GIT_IMPORT_STAGE_RESOLVING = 1,
    GIT_IMPORT_STAGE_FETCHING = 2,
    GIT_IMPORT_STAGE_CHECKOUT = 3,
};

/* Bounds of one import; 0 in a field means "no limit" for that field.
 * max_bytes bounds the bytes received from the remote (the pack), checked on
 * every transfer-progress callback; max_checkout_bytes bounds the size of the
 * files written to dest_dir, checked before anything is written (a small,
 * highly compressed pack can expand to a huge tree); max_objects bounds the
 * objects in the pack (known as soon as the transfer starts); max_seconds
 * bounds the whole import, checked from the progress callbacks and while
 * waiting for the mirror lock. libgit2 1.5 has no connect or read timeout,
 * so a remote that stalls without sending anything is only noticed when
 * data arrives again or TCP gives up. */
typedef struct GitImportLimits {
    uint64_t max_bytes;
    uint64_t max_checkout_bytes;
    uint32_t max_seconds;
    uint32_t max_objects;
} GitImportLimits;

typedef struct GitImportProgress {
    int stage;           /* GIT_IMPORT_STAGE_* */
    const char *message; /* static text, e.g. "Receiving objects" */
    /* libgit2 transfer counters (FETCHING); 0 in other stages. For a
     * file:// remote libgit2's local transport counts received_bytes too. */
    uint32_t received_objects, indexed_objects, total_objects;
    uint64_t received_bytes;
    uint32_t percent; /* 0-100, overall */
} GitImportProgress;

/* Called at most every 100 ms per stage, plus at each stage change and when
 * the transfer completes. Return nonzero to cancel the import (the client
 * went away); git_import_run then cleans up and fails with
 * NORN_ERR_UNAVAILABLE. */
typedef int (*GitImportProgressFn)(void *ud, const GitImportProgress *p);

/* What an import resolved. */
typedef struct GitImportResult {
    char ref[GIT_IMPORT_MAX_REF + 1];       /* full name ("refs/heads/feature/x",
                                               "refs/tags/v1"), or the commit id
                                               when a commit was asked for */
    char commit[41];                        /* the checked-out commit, 40 hex */
    char subdir[GIT_IMPORT_MAX_SUBDIR + 1]; /* the agent's folder in dest_dir,
                                               "" for the root */
} GitImportResult;

/* Initialises libgit2 once per process (call before any thread imports) and
 * stops it from reading the user's and the system's git configuration (no
 * url.insteadOf rewriting, credential helpers or proxies from ~/.gitconfig).
 * Returns 0 or NORN_ERR_INTERNAL. */
int git_import_global_init(void);

/* Releases libgit2 (after the last import); for tests and clean exits. */
void git_import_global_shutdown(void);

/* The original's GitHub URL rewriting (norn-original.md §8.1 step 1), without
 * the ref lookup. Only URLs whose host is github.com (or www.github.com) are
 * rewritten:
 *   https://github.com/o/r/tree/<rest> -> clone "https://github.com/o/r.git",
 *                                         *tree_rest = "<rest>" (no trailing /)
 *   https://github.com/o/r[/]          -> "https://github.com/o/r.git"
 * Other URLs are returned unchanged with *tree_rest = NULL. The scheme is
 * not checked here (git_import_run does). On success returns 0 and sets
 * *clone_url (malloc'd, caller frees) and *tree_rest (malloc'd or NULL);
 * on error returns NORN_ERR_INVALID (empty, too long, control characters)
 * or NORN_ERR_NO_MEMORY, sets err and leaves both outputs NULL. */
int git_import_parse_url(const char *url, char **clone_url, char **tree_rest, char *err,
                         size_t errlen);

/* Splits the <rest> of a GitHub /tree/ URL into a ref and a subfolder, the
 * way GitHub does: the ref is the longest '/'-separated prefix of `rest` that
 * names a branch or a tag among `ref_names` (full names as listed by the
 * remote, e.g. "refs/heads/feature/x"); branches win over tags of the same
 * name. A prefix that is none of them but is 7 to 40 hex digits is taken as
 * a commit id. On success returns 0, *ref = the full ref name (or the hex
 * commit id) and *subdir = the rest ("" when none), both malloc'd. Returns
 * NORN_ERR_NOT_FOUND with err set when no prefix matches, NORN_ERR_NO_MEMORY
 * when out of memory; the outputs are then NULL. */
int git_import_split_tree_rest(const char *rest, const char *const *ref_names, size_t n_refs,
                               char **ref, char **subdir, char *err, size_t errlen);

/* Clones `url` at `ref` into `dest_dir`.
 *
 * url: https://, http:// or file://, after git_import_parse_url; anything
 *   else (ssh://, git://, git@host:path, plain paths) and URLs carrying
 *   credentials (user:password@) are refused. A GitHub /tree/ URL gives the
 *   ref and a subfolder; `ref` must then be NULL or "", and `subdir`, if
 *   given, is taken relative to the URL's subfolder.
 * ref: a branch ("feature/x"), a tag ("v1"), a full ref name ("refs/..."),
 *   or a commit id (40 hex, or 7+ hex when no branch or tag has that name);
 *   NULL or "" means the remote's default branch (its HEAD symref). Only the
 *   needed branch or tag is fetched; a commit id not at a branch tip
 *   and not yet in the mirror fetches all branches.
 * subdir: NULL/"" or a relative path without ".." that must be a directory
 *   in the commit.
 * mirror_dir: where the bare mirrors live (created if missing); the mirror
 *   of a URL is <mirror_dir>/<sha1 of the normalized URL>.git, guarded by a
 *   lock file next to it, so concurrent imports of the same URL take turns.
 *   A mirror created by an import that fails before its fetch completes is
 *   removed; a mirror only gets refs for fetches that completed, so an
 *   aborted fetch leaves it as it was.
 * dest_dir: must not exist; its parent is created if missing. The files are
 *   written into a temporary sibling that is renamed to dest_dir at the end,
 *   so on any failure dest_dir does not exist and nothing is left behind.
 * lim: may be NULL (no limits). fn: may be NULL.
 *
 * Returns 0 and fills *out, or a negative NornError with err set:
 * NORN_ERR_INVALID (bad URL or scheme, bad or missing subdir, dest_dir
 * exists), NORN_ERR_NOT_FOUND (unknown ref, or the remote wants
 * credentials), NORN_ERR_UNAVAILABLE (remote unreachable, or cancelled by
 * fn), NORN_ERR_EXHAUSTED (over a size, object or time limit),
 * NORN_ERR_INTERNAL (local I/O or libgit2 failures). Thread-safe for
 * different dest_dirs after git_import_global_init(). */
int git_import_run(const char *url, const char *ref, const char *subdir, const char *mirror_dir,
                   const char *dest_dir, const GitImportLimits *lim, GitImportProgressFn fn,
                   void *ud, GitImportResult *out, char *err, size_t errlen);

#endif
