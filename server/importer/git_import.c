/*
 * git_import.c — clones an agent repository with libgit2 into a per-agent
 * directory, through a cache of bare mirrors, under size and time limits.
 * See git_import.h for the contract.
 */
#include "git_import.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <git2.h>

#include "error.h"
#include "util.h"

#define REPORT_INTERVAL_MS 100
#define LOCK_POLL_MS 50
#define MAX_DIR_PATH (PATH_MAX - 64) /* room for the suffixes added below */

/* Progress bands of the overall percent. */
#define PERCENT_FETCH_START 5
#define PERCENT_CHECKOUT_START 85

typedef struct ImportCtx {
    GitImportLimits lim;
    GitImportProgressFn fn;
    void *ud;
    uint64_t start_ms;
    uint64_t last_report_ms;
    int last_stage;
    int transfer_final_reported;
    /* Set by a callback that stopped libgit2 (limit, cancel, credentials):
     * the libgit2 error that follows is then only a consequence. */
    int abort_code;
    char abort_msg[256];
} ImportCtx;

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static int set_err(char *err, size_t errlen, int code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static int set_err(char *err, size_t errlen, int code, const char *fmt, ...)
{
    if (err && errlen) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, errlen, fmt, ap);
        va_end(ap);
    }
    return code;
}

static const char *git_msg(void)
{
    const git_error *e = git_error_last();
    return e && e->message ? e->message : "unknown libgit2 error";
}

static int ctx_abort(ImportCtx *ctx, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int ctx_abort(ImportCtx *ctx, int code, const char *fmt, ...)
{
    if (!ctx->abort_code) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(ctx->abort_msg, sizeof ctx->abort_msg, fmt, ap);
        va_end(ap);
        ctx->abort_code = code;
    }
    return -1;
}

/* A libgit2 failure: the callback's reason when one stopped it, else
 * `code` with libgit2's message after `what`. */
static int git_fail(ImportCtx *ctx, char *err, size_t errlen, int code, const char *what)
{
    if (ctx->abort_code)
        return set_err(err, errlen, ctx->abort_code, "%s", ctx->abort_msg);
    return set_err(err, errlen, code, "%s: %s", what, git_msg());
}

static int check_deadline(ImportCtx *ctx)
{
    if (ctx->lim.max_seconds && now_ms() - ctx->start_ms > (uint64_t)ctx->lim.max_seconds * 1000u)
        return ctx_abort(ctx, NORN_ERR_EXHAUSTED, "import exceeded the time limit of %u s",
                         ctx->lim.max_seconds);
    return 0;
}

/* Calls the progress callback unless one was made less than
 * REPORT_INTERVAL_MS ago in the same stage; `force` skips the rate limit. */
static int report(ImportCtx *ctx, const GitImportProgress *p, int force)
{
    if (!ctx->fn)
        return 0;
    uint64_t now = now_ms();
    if (!force && p->stage == ctx->last_stage && now - ctx->last_report_ms < REPORT_INTERVAL_MS)
        return 0;
    ctx->last_stage = p->stage;
    ctx->last_report_ms = now;
    if (ctx->fn(ctx->ud, p))
        return ctx_abort(ctx, NORN_ERR_UNAVAILABLE, "import cancelled by the caller");
    return 0;
}

static int report_stage(ImportCtx *ctx, int stage, const char *message, uint32_t percent)
{
    GitImportProgress p = {.stage = stage, .message = message, .percent = percent};
    return report(ctx, &p, 1);
}

static int on_transfer(const git_indexer_progress *st, void *payload)
{
    ImportCtx *ctx = payload;
    if (ctx->lim.max_bytes && st->received_bytes > ctx->lim.max_bytes)
        return ctx_abort(ctx, NORN_ERR_EXHAUSTED,
                         "repository is larger than the limit of %llu bytes (received %llu)",
                         (unsigned long long)ctx->lim.max_bytes,
                         (unsigned long long)st->received_bytes);
    if (ctx->lim.max_objects && st->total_objects > ctx->lim.max_objects)
        return ctx_abort(ctx, NORN_ERR_EXHAUSTED,
                         "repository has %u objects to fetch, over the limit of %u",
                         st->total_objects, ctx->lim.max_objects);
    if (check_deadline(ctx))
        return -1;
    int final = st->total_objects && st->indexed_objects == st->total_objects &&
                st->indexed_deltas == st->total_deltas;
    if (final && ctx->transfer_final_reported)
        return 0;
    ctx->transfer_final_reported = final;
    uint64_t done = (uint64_t)st->received_objects + st->indexed_objects;
    uint64_t all = 2 * (uint64_t)st->total_objects;
    GitImportProgress p = {
        .stage = GIT_IMPORT_STAGE_FETCHING,
        .message =
            st->received_objects < st->total_objects ? "Receiving objects" : "Indexing objects",
        .received_objects = st->received_objects,
        .indexed_objects = st->indexed_objects,
        .total_objects = st->total_objects,
        .received_bytes = st->received_bytes,
        .percent =
            PERCENT_FETCH_START +
            (uint32_t)(all ? done * (PERCENT_CHECKOUT_START - PERCENT_FETCH_START) / all : 0),
    };
    return report(ctx, &p, final);
}

/* The remote's "Counting objects" chatter: no progress to show, but it
 * arrives while the remote prepares a pack, so the clock is checked. */
static int on_sideband(const char *str, int len, void *payload)
{
    (void)str;
    (void)len;
    return check_deadline(payload);
}

/* Imports are of public repositories: fail at once instead of prompting. */
static int on_credentials(git_credential **out, const char *url, const char *username,
                          unsigned int allowed_types, void *payload)
{
    (void)out;
    (void)username;
    (void)allowed_types;
    return ctx_abort(payload, NORN_ERR_NOT_FOUND,
                     "%s: repository not found or it requires credentials (only public "
                     "repositories can be imported)",
                     url);
}

static void on_checkout(const char *path, size_t completed, size_t total, void *payload)
{
    (void)path;
    ImportCtx *ctx = payload;
    if (ctx->abort_code) /* libgit2 checkout cannot be stopped from here */
        return;
    GitImportProgress p = {
        .stage = GIT_IMPORT_STAGE_CHECKOUT,
        .message = "Checking out files",
        .percent = PERCENT_CHECKOUT_START +
                   (uint32_t)(total ? completed * (100 - PERCENT_CHECKOUT_START) / total : 0),
    };
    report(ctx, &p, 0);
}

/* ---- paths ----------------------------------------------------------- */

/* mkdir -p; 0 or -1 with errno. */
static int mkdir_p(const char *path)
{
    char buf[PATH_MAX];
    size_t len = strlen(path);
    if (len == 0 || len >= sizeof buf) {
        errno = ENAMETOOLONG;
        return -1;
    }
    memcpy(buf, path, len + 1);
    for (char *p = buf + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        if (mkdir(buf, 0755) && errno != EEXIST)
            return -1;
        *p = '/';
    }
    if (mkdir(buf, 0755) && errno != EEXIST)
        return -1;
    return 0;
}

static int mkdir_parent(const char *path)
{
    char buf[PATH_MAX];
    snprintf(buf, sizeof buf, "%s", path);
    char *slash = strrchr(buf, '/');
    if (!slash || slash == buf)
        return 0;
    *slash = '\0';
    return mkdir_p(buf);
}

/* Normalizes a caller's subfolder into out: no leading "./" or '/', no
 * trailing '/', no "." components; "" for the root. Refuses "..", control
 * characters and over-long paths. */
static int normalize_subdir(const char *in, char *out, size_t cap, char *err, size_t errlen)
{
    size_t n = 0;
    out[0] = '\0';
    if (!in)
        return 0;
    const char *p = in;
    while (*p) {
        while (*p == '/')
            p++;
        const char *end = p;
        while (*end && *end != '/')
            end++;
        size_t seg = (size_t)(end - p);
        if (seg == 0)
            break;
        if (seg == 2 && p[0] == '.' && p[1] == '.')
            return set_err(err, errlen, NORN_ERR_INVALID, "subdir '%s' must not contain '..'", in);
        if (!(seg == 1 && p[0] == '.')) {
            for (const char *c = p; c < end; c++)
                if ((unsigned char)*c < 0x20 || *c == 0x7f)
                    return set_err(err, errlen, NORN_ERR_INVALID,
                                   "subdir contains a control character");
            if (n + (n ? 1 : 0) + seg >= cap)
                return set_err(err, errlen, NORN_ERR_INVALID, "subdir is longer than %zu bytes",
                               cap - 1);
            if (n)
                out[n++] = '/';
            memcpy(out + n, p, seg);
            n += seg;
            out[n] = '\0';
        }
        p = end;
    }
    return 0;
}

/* ---- URLs -------------------------------------------------------------- */

static int has_prefix_nocase(const char *s, const char *prefix)
{
    return strncasecmp(s, prefix, strlen(prefix)) == 0;
}

/* Length of "scheme://" when url has it (http/https only), else 0. */
static size_t http_prefix_len(const char *url)
{
    if (has_prefix_nocase(url, "https://"))
        return 8;
    if (has_prefix_nocase(url, "http://"))
        return 7;
    return 0;
}

static int is_github(const char *url)
{
    size_t skip = http_prefix_len(url);
    if (!skip)
        return 0;
    const char *host = url + skip;
    size_t hlen = strcspn(host, "/");
    return (hlen == 10 && strncasecmp(host, "github.com", 10) == 0) ||
           (hlen == 14 && strncasecmp(host, "www.github.com", 14) == 0);
}

int git_import_parse_url(const char *url, char **clone_url, char **tree_rest, char *err,
                         size_t errlen)
{
    *clone_url = NULL;
    *tree_rest = NULL;
    if (!url || !*url)
        return set_err(err, errlen, NORN_ERR_INVALID, "repository URL is empty");
    size_t len = strnlen(url, GIT_IMPORT_MAX_URL + 1);
    if (len > GIT_IMPORT_MAX_URL)
        return set_err(err, errlen, NORN_ERR_INVALID, "repository URL is longer than %d bytes",
                       GIT_IMPORT_MAX_URL);
    for (size_t i = 0; i < len; i++)
        if ((unsigned char)url[i] <= 0x20 || url[i] == 0x7f)
            return set_err(err, errlen, NORN_ERR_INVALID,
                           "repository URL contains a space or control character");

    char *clone = NULL, *rest = NULL;
    const char *tree = is_github(url) ? strstr(url, "/tree/") : NULL;
    if (tree) {
        size_t base = (size_t)(tree - url);
        const char *r = tree + 6;
        size_t rlen = strlen(r);
        while (rlen && r[rlen - 1] == '/')
            rlen--;
        clone = malloc(base + 5);
        rest = rlen ? strndup(r, rlen) : NULL;
        if (!clone || (rlen && !rest))
            goto oom;
        memcpy(clone, url, base);
        int has_git = base >= 4 && memcmp(url + base - 4, ".git", 4) == 0;
        strcpy(clone + base, has_git ? "" : ".git");
    } else if (is_github(url)) {
        size_t n = len;
        while (n && url[n - 1] == '/')
            n--;
        int has_git = n >= 4 && memcmp(url + n - 4, ".git", 4) == 0;
        clone = malloc(n + 5);
        if (!clone)
            goto oom;
        memcpy(clone, url, n);
        strcpy(clone + n, has_git ? "" : ".git");
    } else {
        clone = strdup(url);
        if (!clone)
            goto oom;
    }
    *clone_url = clone;
    *tree_rest = rest;
    return 0;
oom:
    free(clone);
    free(rest);
    return set_err(err, errlen, NORN_ERR_NO_MEMORY, "out of memory parsing the URL");
}

/* Accepts https://, http:// and file:// URLs, without user:password@. */
static int check_scheme(const char *url, char *err, size_t errlen)
{
    size_t skip = http_prefix_len(url);
    if (skip) {
        const char *host = url + skip;
        size_t authority = strcspn(host, "/");
        if (memchr(host, '@', authority))
            return set_err(err, errlen, NORN_ERR_INVALID,
                           "repository URL must not carry credentials (user@ or user:password@)");
        if (authority == 0)
            return set_err(err, errlen, NORN_ERR_INVALID, "repository URL has no host");
        return 0;
    }
    if (has_prefix_nocase(url, "file://"))
        return 0;
    return set_err(err, errlen, NORN_ERR_INVALID,
                   "unsupported repository URL '%.200s': only https://, http:// and file:// "
                   "are accepted (no ssh)",
                   url);
}

/* The mirror key's input: scheme and host lower-cased, no trailing '/' or
 * ".git", so https://GitHub.com/o/r/ and https://github.com/o/r.git share
 * one mirror. */
static char *normalize_url(const char *url)
{
    char *s = strdup(url);
    if (!s)
        return NULL;
    size_t skip = http_prefix_len(s);
    if (!skip && has_prefix_nocase(s, "file://"))
        skip = 7;
    size_t host_end = skip + (http_prefix_len(s) ? strcspn(s + skip, "/") : 0);
    for (size_t i = 0; i < host_end; i++)
        s[i] = (char)tolower((unsigned char)s[i]);
    size_t n = strlen(s);
    for (;;) {
        while (n > host_end && s[n - 1] == '/')
            n--;
        if (n >= host_end + 4 && memcmp(s + n - 4, ".git", 4) == 0)
            n -= 4;
        else
            break;
    }
    s[n] = '\0';
    return s;
}

/* ---- refs -------------------------------------------------------------- */

static int is_hex_id(const char *s, size_t len)
{
    if (len < 7 || len > 40)
        return 0;
    for (size_t i = 0; i < len; i++)
        if (!isxdigit((unsigned char)s[i]))
            return 0;
    return 1;
}

static int has_ref(const char *const *names, size_t n, const char *prefix, const char *name,
                   size_t name_len)
{
    size_t plen = strlen(prefix);
    for (size_t i = 0; i < n; i++)
        if (strncmp(names[i], prefix, plen) == 0 && strlen(names[i] + plen) == name_len &&
            memcmp(names[i] + plen, name, name_len) == 0)
            return 1;
    return 0;
}

int git_import_split_tree_rest(const char *rest, const char *const *ref_names, size_t n_refs,
                               char **ref, char **subdir, char *err, size_t errlen)
{
    *ref = NULL;
    *subdir = NULL;
    size_t len = strlen(rest);
    /* Candidate ends: the whole string, then each '/' from the right. */
    for (size_t end = len; end > 0; end--) {
        if (end != len && rest[end] != '/')
            continue;
        const char *prefix = NULL;
        if (has_ref(ref_names, n_refs, "refs/heads/", rest, end))
            prefix = "refs/heads/";
        else if (has_ref(ref_names, n_refs, "refs/tags/", rest, end))
            prefix = "refs/tags/";
        if (!prefix)
            continue;
        if (asprintf(ref, "%s%.*s", prefix, (int)end, rest) < 0) {
            *ref = NULL;
            return set_err(err, errlen, NORN_ERR_NO_MEMORY, "out of memory");
        }
        *subdir = strdup(rest + end + (rest[end] == '/'));
        if (!*subdir) {
            free(*ref);
            *ref = NULL;
            return set_err(err, errlen, NORN_ERR_NO_MEMORY, "out of memory");
        }
        return 0;
    }
    size_t first = strcspn(rest, "/");
    if (is_hex_id(rest, first)) {
        *ref = strndup(rest, first);
        *subdir = strdup(rest + first + (rest[first] == '/'));
        if (!*ref || !*subdir) {
            free(*ref);
            free(*subdir);
            *ref = *subdir = NULL;
            return set_err(err, errlen, NORN_ERR_NO_MEMORY, "out of memory");
        }
        return 0;
    }
    return set_err(err, errlen, NORN_ERR_NOT_FOUND,
                   "no branch or tag of the remote matches the start of '%.300s'", rest);
}

/* What to fetch and check out, resolved from the remote's refs. */
typedef struct Want {
    char name[GIT_IMPORT_MAX_REF + 1]; /* full ref name to fetch, or "" */
    char hex[41];                      /* the commit id (prefix) asked for, or "" */
    git_oid oid;                       /* advertised tip when name is set: a branch or tag, or
                                          the tip that is the commit asked for */
} Want;

static const git_remote_head *find_head(const git_remote_head **heads, size_t n, const char *name)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(heads[i]->name, name) == 0)
            return heads[i];
    return NULL;
}

/* Fills want from a ref name or commit id given by the caller or split
 * from a /tree/ URL. */
static int resolve_ref(const git_remote_head **heads, size_t n, const char *ref, Want *want,
                       char *err, size_t errlen)
{
    static const char *const prefixes[] = {"", "refs/heads/", "refs/tags/"};
    for (size_t i = 0; i < sizeof prefixes / sizeof prefixes[0]; i++) {
        if (i == 0 && strncmp(ref, "refs/", 5) != 0)
            continue;
        char name[GIT_IMPORT_MAX_REF + 16];
        snprintf(name, sizeof name, "%s%s", prefixes[i], ref);
        const git_remote_head *h = find_head(heads, n, name);
        size_t name_len = strlen(name);
        if (h && name_len <= GIT_IMPORT_MAX_REF) {
            memcpy(want->name, name, name_len + 1);
            git_oid_cpy(&want->oid, &h->oid);
            return 0;
        }
    }
    size_t len = strlen(ref);
    if (is_hex_id(ref, len)) {
        for (size_t i = 0; i <= len; i++)
            want->hex[i] = (char)tolower((unsigned char)ref[i]);
        return 0;
    }
    return set_err(err, errlen, NORN_ERR_NOT_FOUND,
                   "unknown ref '%s': the remote has no branch or tag of that name", ref);
}

/* ---- the mirror -------------------------------------------------------- */

/* Takes the mirror's lock file, polling so the time limit still applies.
 * Returns the fd (close releases it) or a negative NornError. */
static int lock_mirror(ImportCtx *ctx, const char *lock_path, char *err, size_t errlen)
{
    int fd = open(lock_path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0)
        return set_err(err, errlen, NORN_ERR_INTERNAL, "cannot open %s: %s", lock_path,
                       strerror(errno));
    while (flock(fd, LOCK_EX | LOCK_NB) != 0) {
        if (errno != EWOULDBLOCK && errno != EINTR) {
            int e = errno;
            close(fd);
            return set_err(err, errlen, NORN_ERR_INTERNAL, "cannot lock %s: %s", lock_path,
                           strerror(e));
        }
        if (check_deadline(ctx)) {
            close(fd);
            return set_err(err, errlen, NORN_ERR_EXHAUSTED,
                           "%s while waiting for another import of the same repository",
                           ctx->abort_msg);
        }
        struct timespec pause = {0, LOCK_POLL_MS * 1000000L};
        nanosleep(&pause, NULL);
    }
    return fd;
}

/* Opens the bare mirror at path, or (re)creates it when it is missing or
 * unreadable; *created tells the caller to remove it if the import fails. */
static int open_mirror(git_repository **repo, const char *path, int *created, char *err,
                       size_t errlen)
{
    *created = 0;
    struct stat st;
    if (stat(path, &st) == 0) {
        if (git_repository_open_bare(repo, path) == 0)
            return 0;
        remove_tree_at(AT_FDCWD, path); /* a mirror left broken (e.g. by a crash) is only a cache */
    }
    git_repository_init_options opts = GIT_REPOSITORY_INIT_OPTIONS_INIT;
    opts.flags = GIT_REPOSITORY_INIT_BARE | GIT_REPOSITORY_INIT_MKPATH;
    if (git_repository_init_ext(repo, path, &opts) != 0)
        return set_err(err, errlen, NORN_ERR_INTERNAL, "cannot create mirror %s: %s", path,
                       git_msg());
    *created = 1;
    /* Links from the repository become plain files in dest_dir, so an
     * agent directory cannot point at files outside itself. */
    git_config *cfg = NULL;
    int rc = git_repository_config(&cfg, *repo);
    if (rc == 0)
        rc = git_config_set_bool(cfg, "core.symlinks", 0);
    git_config_free(cfg);
    if (rc != 0) {
        git_repository_free(*repo);
        *repo = NULL;
        remove_tree_at(AT_FDCWD, path);
        *created = 0;
        return set_err(err, errlen, NORN_ERR_INTERNAL, "cannot configure mirror %s: %s", path,
                       git_msg());
    }
    return 0;
}

/* ---- checkout ---------------------------------------------------------- */

typedef struct SizeWalk {
    git_odb *odb;
    uint64_t bytes;
    uint64_t max;
    int failed;
} SizeWalk;

static int sum_blob(const char *root, const git_tree_entry *entry, void *payload)
{
    (void)root;
    SizeWalk *w = payload;
    if (git_tree_entry_type(entry) != GIT_OBJECT_BLOB)
        return 0;
    size_t len;
    git_object_t type;
    if (git_odb_read_header(&len, &type, w->odb, git_tree_entry_id(entry)) != 0) {
        w->failed = 1;
        return -1;
    }
    w->bytes += len;
    return w->bytes > w->max ? -1 : 0;
}

/* Refuses trees whose files add up to more than max bytes. */
static int check_tree_size(git_repository *repo, git_tree *tree, uint64_t max, char *err,
                           size_t errlen)
{
    if (!max)
        return 0;
    SizeWalk w = {.max = max};
    if (git_repository_odb(&w.odb, repo) != 0)
        return set_err(err, errlen, NORN_ERR_INTERNAL, "cannot open the mirror's objects: %s",
                       git_msg());
    int rc = git_tree_walk(tree, GIT_TREEWALK_PRE, sum_blob, &w);
    git_odb_free(w.odb);
    if (w.failed)
        return set_err(err, errlen, NORN_ERR_INTERNAL, "cannot read the commit's files: %s",
                       git_msg());
    if (rc != 0 && w.bytes > max)
        return set_err(err, errlen, NORN_ERR_EXHAUSTED,
                       "the commit's files are larger than the limit of %llu bytes",
                       (unsigned long long)max);
    if (rc != 0)
        return set_err(err, errlen, NORN_ERR_INTERNAL, "cannot walk the commit's tree: %s",
                       git_msg());
    return 0;
}

/* ---- the import -------------------------------------------------------- */

int git_import_global_init(void)
{
    if (git_libgit2_init() < 0)
        return NORN_ERR_INTERNAL;
    static const int levels[] = {GIT_CONFIG_LEVEL_SYSTEM, GIT_CONFIG_LEVEL_XDG,
                                 GIT_CONFIG_LEVEL_GLOBAL, GIT_CONFIG_LEVEL_PROGRAMDATA};
    for (size_t i = 0; i < sizeof levels / sizeof levels[0]; i++)
        if (git_libgit2_opts(GIT_OPT_SET_SEARCH_PATH, levels[i], "") < 0)
            return NORN_ERR_INTERNAL;
    return 0;
}

void git_import_global_shutdown(void)
{
    git_libgit2_shutdown();
}

/* Resources of one import, released by import_cleanup. */
typedef struct Import {
    char *clone_url, *tree_rest, *url_ref, *url_subdir;
    char mirror_path[PATH_MAX], tmp_dir[PATH_MAX];
    int lock_fd, mirror_created, tmp_made;
    git_repository *repo;
    git_remote *remote;
    git_object *target, *commit;
    git_tree *tree;
} Import;

static void import_cleanup(Import *im, int failed)
{
    git_tree_free(im->tree);
    git_object_free(im->commit);
    git_object_free(im->target);
    git_remote_free(im->remote);
    git_repository_free(im->repo);
    if (failed && im->tmp_made)
        remove_tree_at(AT_FDCWD, im->tmp_dir);
    if (failed && im->mirror_created)
        remove_tree_at(AT_FDCWD, im->mirror_path);
    if (im->lock_fd >= 0)
        close(im->lock_fd);
    free(im->clone_url);
    free(im->tree_rest);
    free(im->url_ref);
    free(im->url_subdir);
}

static void remote_callbacks(git_remote_callbacks *cbs, ImportCtx *ctx)
{
    git_remote_init_callbacks(cbs, GIT_REMOTE_CALLBACKS_VERSION);
    cbs->transfer_progress = on_transfer;
    cbs->sideband_progress = on_sideband;
    cbs->credentials = on_credentials;
    cbs->payload = ctx;
}

/* Connects, lists the remote's refs and decides what to fetch. */
static int resolve_remote(Import *im, ImportCtx *ctx, const char *ref, Want *want, char *err,
                          size_t errlen)
{
    /* Anonymous: the URL is not written to the mirror's config. No
     * url.insteadOf: nothing may redirect the URL, and libgit2 1.5 leaks a
     * PCRE2 match block per config entry in that lookup (libgit2 #6382). */
    git_remote_create_options ro = GIT_REMOTE_CREATE_OPTIONS_INIT;
    ro.repository = im->repo;
    ro.flags = GIT_REMOTE_CREATE_SKIP_INSTEADOF | GIT_REMOTE_CREATE_SKIP_DEFAULT_FETCHSPEC;
    if (git_remote_create_with_opts(&im->remote, im->clone_url, &ro) != 0)
        return git_fail(ctx, err, errlen, NORN_ERR_INVALID, "invalid repository URL");
    git_remote_callbacks cbs;
    remote_callbacks(&cbs, ctx);
    /* AUTO: the server's own http(s)_proxy environment, never ~/.gitconfig. */
    git_proxy_options proxy = GIT_PROXY_OPTIONS_INIT;
    proxy.type = GIT_PROXY_AUTO;
    if (git_remote_connect(im->remote, GIT_DIRECTION_FETCH, &cbs, &proxy, NULL) != 0)
        return git_fail(ctx, err, errlen, NORN_ERR_UNAVAILABLE, "cannot reach the repository");
    const git_remote_head **heads;
    size_t n;
    if (git_remote_ls(&heads, &n, im->remote) != 0)
        return git_fail(ctx, err, errlen, NORN_ERR_UNAVAILABLE, "cannot list the remote's refs");

    if (im->tree_rest) {
        const char **names = calloc(n ? n : 1, sizeof *names);
        if (!names)
            return set_err(err, errlen, NORN_ERR_NO_MEMORY, "out of memory");
        for (size_t i = 0; i < n; i++)
            names[i] = heads[i]->name;
        int rc = git_import_split_tree_rest(im->tree_rest, names, n, &im->url_ref, &im->url_subdir,
                                            err, errlen);
        free(names);
        if (rc)
            return rc;
        ref = im->url_ref;
    }
    if (!ref || !*ref) {
        git_buf head = {0};
        int rc = git_remote_default_branch(&head, im->remote);
        if (rc == 0 && head.size <= GIT_IMPORT_MAX_REF && find_head(heads, n, head.ptr)) {
            const git_remote_head *h = find_head(heads, n, head.ptr);
            snprintf(want->name, sizeof want->name, "%s", head.ptr);
            git_oid_cpy(&want->oid, &h->oid);
        }
        git_buf_dispose(&head);
        if (!want->name[0])
            return ctx->abort_code ? git_fail(ctx, err, errlen, 0, "")
                                   : set_err(err, errlen, NORN_ERR_NOT_FOUND,
                                             "the remote has no default branch (empty "
                                             "repository?); give a ref");
        return 0;
    }
    int rc = resolve_ref(heads, n, ref, want, err, errlen);
    if (rc || want->name[0])
        return rc;
    /* A commit id at a branch tip fetches only that branch. */
    size_t hlen = strlen(want->hex);
    for (size_t i = 0; i < n; i++) {
        char hex[GIT_OID_HEXSZ + 1];
        git_oid_tostr(hex, sizeof hex, &heads[i]->oid);
        if (strncmp(hex, want->hex, hlen) == 0 && strlen(heads[i]->name) <= GIT_IMPORT_MAX_REF &&
            strncmp(heads[i]->name, "refs/heads/", 11) == 0) {
            snprintf(want->name, sizeof want->name, "%s", heads[i]->name);
            git_oid_cpy(&want->oid, &heads[i]->oid);
            return 0;
        }
    }
    return 0;
}

static int lookup_commit_prefix(git_repository *repo, const char *hex, git_object **out)
{
    git_oid oid;
    size_t len = strlen(hex);
    if (git_oid_fromstrn(&oid, hex, len) != 0)
        return -1;
    return git_object_lookup_prefix(out, repo, &oid, len, GIT_OBJECT_ANY);
}

static int fetch(Import *im, ImportCtx *ctx, const char *refspec, char *err, size_t errlen)
{
    if (report_stage(ctx, GIT_IMPORT_STAGE_FETCHING, "Fetching", PERCENT_FETCH_START))
        return git_fail(ctx, err, errlen, 0, "");
    git_fetch_options fo = GIT_FETCH_OPTIONS_INIT;
    remote_callbacks(&fo.callbacks, ctx);
    fo.proxy_opts.type = GIT_PROXY_AUTO;
    fo.download_tags = GIT_REMOTE_DOWNLOAD_TAGS_NONE;
    fo.update_fetchhead = 0;
    fo.prune = GIT_FETCH_NO_PRUNE;
    char *specs[] = {(char *)refspec};
    git_strarray arr = {specs, 1};
    if (git_remote_fetch(im->remote, &arr, &fo, NULL) != 0)
        return git_fail(ctx, err, errlen, NORN_ERR_UNAVAILABLE, "fetch failed");
    im->mirror_created = 0; /* it holds a complete fetch now: keep it as a cache */
    const git_indexer_progress *st = git_remote_stats(im->remote);
    GitImportProgress p = {
        .stage = GIT_IMPORT_STAGE_FETCHING,
        .message = "Fetched",
        .received_objects = st->received_objects,
        .indexed_objects = st->indexed_objects,
        .total_objects = st->total_objects,
        .received_bytes = st->received_bytes,
        .percent = PERCENT_CHECKOUT_START,
    };
    if (report(ctx, &p, 1))
        return git_fail(ctx, err, errlen, 0, "");
    return 0;
}

/* Fetches what `want` needs into the mirror and sets im->target. */
static int fetch_target(Import *im, ImportCtx *ctx, const Want *want, char *err, size_t errlen)
{
    char refspec[2 * GIT_IMPORT_MAX_REF + 8];
    if (want->name[0]) {
        snprintf(refspec, sizeof refspec, "+%s:%s", want->name, want->name);
        int rc = fetch(im, ctx, refspec, err, errlen);
        if (rc)
            return rc;
        if (git_object_lookup(&im->target, im->repo, &want->oid, GIT_OBJECT_ANY) != 0)
            return set_err(err, errlen, NORN_ERR_INTERNAL, "fetched %s but cannot read it: %s",
                           want->name, git_msg());
        return 0;
    }
    if (lookup_commit_prefix(im->repo, want->hex, &im->target) == 0)
        return 0; /* commits never change: the mirror already has it */
    int rc = fetch(im, ctx, "+refs/heads/*:refs/heads/*", err, errlen);
    if (rc)
        return rc;
    rc = lookup_commit_prefix(im->repo, want->hex, &im->target);
    if (rc == GIT_EAMBIGUOUS)
        return set_err(err, errlen, NORN_ERR_INVALID, "commit id '%s' is ambiguous", want->hex);
    if (rc != 0)
        return set_err(err, errlen, NORN_ERR_NOT_FOUND,
                       "unknown ref '%s': no branch, tag or commit of that name", want->hex);
    return 0;
}

static int checkout(Import *im, ImportCtx *ctx, const char *dest_dir, char *err, size_t errlen)
{
    if (snprintf(im->tmp_dir, sizeof im->tmp_dir, "%s.partial-XXXXXX", dest_dir) >=
        (int)sizeof im->tmp_dir)
        return set_err(err, errlen, NORN_ERR_INVALID, "dest_dir is too long");
    if (!mkdtemp(im->tmp_dir))
        return set_err(err, errlen, NORN_ERR_INTERNAL, "cannot create %s: %s", im->tmp_dir,
                       strerror(errno));
    im->tmp_made = 1;
    if (report_stage(ctx, GIT_IMPORT_STAGE_CHECKOUT, "Checking out files", PERCENT_CHECKOUT_START))
        return git_fail(ctx, err, errlen, 0, "");
    git_checkout_options co = GIT_CHECKOUT_OPTIONS_INIT;
    /* FORCE writes every file of the tree whatever the mirror's HEAD is;
     * the mirror is bare and shared, so its index is neither read nor
     * written. */
    co.checkout_strategy = GIT_CHECKOUT_FORCE | GIT_CHECKOUT_DONT_UPDATE_INDEX;
    co.target_directory = im->tmp_dir;
    co.progress_cb = on_checkout;
    co.progress_payload = ctx;
    if (git_checkout_tree(im->repo, (git_object *)im->tree, &co) != 0)
        return git_fail(ctx, err, errlen, NORN_ERR_INTERNAL, "checkout failed");
    if (ctx->abort_code) /* cancelled while libgit2 was writing */
        return git_fail(ctx, err, errlen, 0, "");
    if (report_stage(ctx, GIT_IMPORT_STAGE_CHECKOUT, "Checked out", 100))
        return git_fail(ctx, err, errlen, 0, "");
    if (rename(im->tmp_dir, dest_dir) != 0)
        return set_err(err, errlen, NORN_ERR_INTERNAL, "cannot move the checkout to %s: %s",
                       dest_dir, strerror(errno));
    im->tmp_made = 0;
    return 0;
}

static int import(Import *im, ImportCtx *ctx, const char *url, const char *ref, const char *subdir,
                  const char *mirror_dir, const char *dest_dir, GitImportResult *out, char *err,
                  size_t errlen)
{
    int rc = git_import_parse_url(url, &im->clone_url, &im->tree_rest, err, errlen);
    if (rc)
        return rc;
    if ((rc = check_scheme(im->clone_url, err, errlen)))
        return rc;
    if (im->tree_rest && ref && *ref)
        return set_err(err, errlen, NORN_ERR_INVALID,
                       "the URL already names a ref (/tree/...); do not give ref too");
    if (ref && *ref) {
        size_t len = strnlen(ref, GIT_IMPORT_MAX_REF + 1);
        if (len > GIT_IMPORT_MAX_REF - 11) /* room for "refs/heads/" */
            return set_err(err, errlen, NORN_ERR_INVALID, "ref is longer than %d bytes",
                           GIT_IMPORT_MAX_REF - 11);
        for (size_t i = 0; i < len; i++)
            if ((unsigned char)ref[i] <= 0x20 || ref[i] == 0x7f)
                return set_err(err, errlen, NORN_ERR_INVALID,
                               "ref contains a space or control character");
    }
    char want_subdir[GIT_IMPORT_MAX_SUBDIR + 1];
    if ((rc = normalize_subdir(subdir, want_subdir, sizeof want_subdir, err, errlen)))
        return rc;
    if (strlen(mirror_dir) > MAX_DIR_PATH || strlen(dest_dir) > MAX_DIR_PATH)
        return set_err(err, errlen, NORN_ERR_INVALID, "mirror_dir or dest_dir is too long");
    struct stat st;
    if (lstat(dest_dir, &st) == 0)
        return set_err(err, errlen, NORN_ERR_INVALID, "destination %s already exists", dest_dir);
    if (mkdir_p(mirror_dir) != 0 || mkdir_parent(dest_dir) != 0)
        return set_err(err, errlen, NORN_ERR_INTERNAL, "cannot create %s or the parent of %s: %s",
                       mirror_dir, dest_dir, strerror(errno));
    if (report_stage(ctx, GIT_IMPORT_STAGE_RESOLVING, "Resolving", 0))
        return git_fail(ctx, err, errlen, 0, "");

    /* The mirror of this URL and its lock. */
    char *norm = normalize_url(im->clone_url);
    if (!norm)
        return set_err(err, errlen, NORN_ERR_NO_MEMORY, "out of memory");
    git_oid key;
    rc = git_odb_hash(&key, norm, strlen(norm), GIT_OBJECT_BLOB);
    free(norm);
    if (rc != 0)
        return set_err(err, errlen, NORN_ERR_INTERNAL, "cannot hash the URL: %s", git_msg());
    char key_hex[GIT_OID_HEXSZ + 1], lock_path[PATH_MAX];
    git_oid_tostr(key_hex, sizeof key_hex, &key);
    snprintf(im->mirror_path, sizeof im->mirror_path, "%s/%s.git", mirror_dir, key_hex);
    snprintf(lock_path, sizeof lock_path, "%s/%s.lock", mirror_dir, key_hex);
    if ((im->lock_fd = lock_mirror(ctx, lock_path, err, errlen)) < 0)
        return im->lock_fd;
    if ((rc = open_mirror(&im->repo, im->mirror_path, &im->mirror_created, err, errlen)))
        return rc;

    Want want = {0};
    if ((rc = resolve_remote(im, ctx, ref, &want, err, errlen)))
        return rc;
    if ((rc = fetch_target(im, ctx, &want, err, errlen)))
        return rc;
    if (git_object_peel(&im->commit, im->target, GIT_OBJECT_COMMIT) != 0)
        return set_err(err, errlen, NORN_ERR_INVALID, "%s does not point to a commit",
                       want.name[0] ? want.name : want.hex);
    if (git_commit_tree(&im->tree, (git_commit *)im->commit) != 0)
        return set_err(err, errlen, NORN_ERR_INTERNAL, "cannot read the commit's tree: %s",
                       git_msg());

    /* The agent's folder: the URL's, then the caller's inside it. */
    char joined[2 * GIT_IMPORT_MAX_SUBDIR + 2];
    snprintf(joined, sizeof joined, "%s/%s", im->url_subdir ? im->url_subdir : "", want_subdir);
    if ((rc = normalize_subdir(joined, want_subdir, sizeof want_subdir, err, errlen)))
        return rc;
    if (want_subdir[0]) {
        git_tree_entry *entry = NULL;
        int found = git_tree_entry_bypath(&entry, im->tree, want_subdir) == 0 &&
                    git_tree_entry_type(entry) == GIT_OBJECT_TREE;
        git_tree_entry_free(entry);
        if (!found)
            return set_err(err, errlen, NORN_ERR_INVALID, "subdirectory '%s' not found in %s",
                           want_subdir, want.name[0] ? want.name : want.hex);
    }
    if ((rc = check_tree_size(im->repo, im->tree, ctx->lim.max_checkout_bytes, err, errlen)))
        return rc;
    if ((rc = checkout(im, ctx, dest_dir, err, errlen)))
        return rc;

    git_oid_tostr(out->commit, sizeof out->commit, git_object_id(im->commit));
    snprintf(out->ref, sizeof out->ref, "%s", want.hex[0] ? out->commit : want.name);
    snprintf(out->subdir, sizeof out->subdir, "%s", want_subdir);
    return 0;
}

int git_import_run(const char *url, const char *ref, const char *subdir, const char *mirror_dir,
                   const char *dest_dir, const GitImportLimits *lim, GitImportProgressFn fn,
                   void *ud, GitImportResult *out, char *err, size_t errlen)
{
    if (err && errlen)
        err[0] = '\0';
    if (!url || !mirror_dir || !*mirror_dir || !dest_dir || !*dest_dir || !out)
        return set_err(err, errlen, NORN_ERR_INVALID,
                       "url, mirror_dir, dest_dir and out are required");
    memset(out, 0, sizeof *out);
    ImportCtx ctx = {.fn = fn, .ud = ud, .start_ms = now_ms()};
    if (lim)
        ctx.lim = *lim;
    Import im = {.lock_fd = -1};
    int rc = import(&im, &ctx, url, ref, subdir, mirror_dir, dest_dir, out, err, errlen);
    if (rc)
        memset(out, 0, sizeof *out);
    import_cleanup(&im, rc != 0);
    return rc;
}
