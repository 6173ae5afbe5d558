/* test_git_import.c — git_import against real repositories built with the
 * git CLI in a temporary directory and cloned over file://: default branch,
 * a branch with '/', a tag, commit ids, subfolders, the mirror cache, size
 * limits, cancellation, refused URLs, and the GitHub URL parsing. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "error.h"
#include "git_import.h"

static char root[256]; /* the fixture: bare repos, work trees, mirrors, dests */

static void sh(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static void sh(const char *fmt, ...)
{
    char cmd[8192];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof cmd, fmt, ap);
    va_end(ap);
    if (system(cmd) != 0)
        fail_msg("command failed: %s", cmd);
}

/* `git rev-parse rev` in the work tree `work` (under root). */
static void rev_parse(const char *work, const char *rev, char out[41])
{
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "git -C %s/%s rev-parse '%s'", root, work, rev);
    FILE *p = popen(cmd, "r");
    assert_non_null(p);
    assert_non_null(fgets(out, 41, p));
    pclose(p);
    assert_int_equal(strlen(out), 40);
}

static int exists(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static int exists(const char *fmt, ...)
{
    char path[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(path, sizeof path, fmt, ap);
    va_end(ap);
    struct stat st;
    return lstat(path, &st) == 0;
}

/* Number of entries in dir whose name starts with prefix. */
static int count_entries(const char *dir, const char *prefix)
{
    DIR *d = opendir(dir);
    if (!d)
        return 0;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)))
        if (strncmp(e->d_name, prefix, strlen(prefix)) == 0 && strcmp(e->d_name, ".") &&
            strcmp(e->d_name, ".."))
            n++;
    closedir(d);
    return n;
}

/* Number of mirrors (<hash>.git) in <root>/<mirrors>. */
static int count_mirrors(const char *mirrors)
{
    char dir[512];
    snprintf(dir, sizeof dir, "%s/%s", root, mirrors);
    DIR *d = opendir(dir);
    if (!d)
        return 0;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        size_t len = strlen(e->d_name);
        n += len > 4 && strcmp(e->d_name + len - 4, ".git") == 0;
    }
    closedir(d);
    return n;
}

static int setup(void **state)
{
    (void)state;
    snprintf(root, sizeof root, "/tmp/norn-gitimport-XXXXXX");
    if (!mkdtemp(root))
        return -1;
    /* git must not read the developer's configuration either. */
    char home[300];
    snprintf(home, sizeof home, "%s/home", root);
    mkdir(home, 0700);
    setenv("HOME", home, 1);
    setenv("GIT_CONFIG_NOSYSTEM", "1", 1);
    setenv("GIT_AUTHOR_NAME", "t", 1);
    setenv("GIT_AUTHOR_EMAIL", "t@example.com", 1);
    setenv("GIT_COMMITTER_NAME", "t", 1);
    setenv("GIT_COMMITTER_EMAIL", "t@example.com", 1);
    const char *R = root;
    /* agents.git: default branch "trunk" (not main) of two commits, an
     * annotated tag v1, a branch feature/x, an agent under agents/a and a
     * symlink. */
    sh("set -e; cd %s; git init -q --bare -b trunk agents.git; git init -q -b trunk w-agents;"
       "cd w-agents; echo '# demo' > README.md; git add -A; git commit -q -m zero;"
       "mkdir -p agents/a; echo 'print(1)' > agents/a/agent.py; ln -s /etc/passwd link; git add "
       "-A; git commit -q -m one;"
       "git tag -a v1 -m v1; git push -q ../agents.git trunk v1 2>/dev/null;"
       "git checkout -q -b feature/x; echo 'x = 1' > agents/a/feature.py; git add -A;"
       "git commit -q -m feat; git push -q ../agents.git feature/x 2>/dev/null",
       R);
    /* big.git: 2 MiB that do not compress. zeros.git: 1 MiB that do. */
    sh("set -e; cd %s; git init -q --bare -b main big.git; git init -q -b main w-big;"
       "head -c 2097152 /dev/urandom > w-big/big.bin; cd w-big; git add -A;"
       "git commit -q -m big; git push -q ../big.git main 2>/dev/null",
       R);
    sh("set -e; cd %s; git init -q --bare -b main zeros.git; git init -q -b main w-zeros;"
       "head -c 1048576 /dev/zero > w-zeros/zeros.bin; cd w-zeros; git add -A;"
       "git commit -q -m zeros; git push -q ../zeros.git main 2>/dev/null",
       R);
    /* grow.git: 40 files in 4 folders, grown by one commit in a test. */
    sh("set -e; cd %s; git init -q --bare -b main grow.git; git init -q -b main w-grow;"
       "cd w-grow; for d in 1 2 3 4; do mkdir d$d; for f in 1 2 3 4 5 6 7 8 9 10; do "
       "echo \"file $d $f\" > d$d/f$f.txt; done; done; git add -A; git commit -q -m base;"
       "git push -q ../grow.git main 2>/dev/null",
       R);
    return git_import_global_init();
}

static int teardown(void **state)
{
    (void)state;
    git_import_global_shutdown();
    sh("rm -rf %s", root);
    return 0;
}

/* Records every progress report; cancels at cancel_stage when set. */
typedef struct Rec {
    int n;
    GitImportProgress p[2048];
    int cancel_stage;
} Rec;

static int record(void *ud, const GitImportProgress *p)
{
    Rec *r = ud;
    if (r->n < (int)(sizeof r->p / sizeof r->p[0]))
        r->p[r->n++] = *p;
    return r->cancel_stage && p->stage == r->cancel_stage;
}

/* The last FETCHING report: the transfer's final counters. */
static const GitImportProgress *last_fetch(const Rec *r)
{
    for (int i = r->n - 1; i >= 0; i--)
        if (r->p[i].stage == GIT_IMPORT_STAGE_FETCHING)
            return &r->p[i];
    return NULL;
}

static char err[512];

/* Imports file://<root>/<repo> into <root>/<dest>, mirrors in <root>/<mirrors>. */
static int import(const char *repo, const char *ref, const char *subdir, const char *mirrors,
                  const char *dest, const GitImportLimits *lim, Rec *rec, GitImportResult *out)
{
    char url[512], mirror_dir[512], dest_dir[512];
    snprintf(url, sizeof url, "file://%s/%s", root, repo);
    snprintf(mirror_dir, sizeof mirror_dir, "%s/%s", root, mirrors);
    snprintf(dest_dir, sizeof dest_dir, "%s/%s", root, dest);
    err[0] = '\0';
    return git_import_run(url, ref, subdir, mirror_dir, dest_dir, lim, rec ? record : NULL, rec,
                          out, err, sizeof err);
}

static void test_default_branch_not_main(void **state)
{
    (void)state;
    GitImportResult res;
    assert_int_equal(import("agents.git", NULL, NULL, "m1", "d/default", NULL, NULL, &res), 0);
    assert_string_equal(res.ref, "refs/heads/trunk");
    char want[41];
    rev_parse("w-agents", "trunk", want);
    assert_string_equal(res.commit, want);
    assert_string_equal(res.subdir, "");
    assert_true(exists("%s/d/default/agents/a/agent.py", root));
    assert_true(exists("%s/d/default/README.md", root));
    assert_false(exists("%s/d/default/agents/a/feature.py", root)); /* only on feature/x */
    assert_false(exists("%s/d/default/.git", root));
    char dests[512];
    snprintf(dests, sizeof dests, "%s/d", root);
    assert_int_equal(count_entries(dests, "default.partial"), 0);
}

/* The repository's symlink to /etc/passwd is written as a plain file. */
static void test_symlink_becomes_plain_file(void **state)
{
    (void)state;
    GitImportResult res;
    assert_int_equal(import("agents.git", "trunk", NULL, "m1", "d/links", NULL, NULL, &res), 0);
    char path[600];
    snprintf(path, sizeof path, "%s/d/links/link", root);
    struct stat st;
    assert_int_equal(lstat(path, &st), 0);
    assert_true(S_ISREG(st.st_mode));
    FILE *f = fopen(path, "r");
    char buf[64] = {0};
    assert_non_null(fgets(buf, sizeof buf, f));
    fclose(f);
    assert_string_equal(buf, "/etc/passwd");
}

static void test_branch_with_slash_and_subdir(void **state)
{
    (void)state;
    GitImportResult res;
    assert_int_equal(
        import("agents.git", "feature/x", "./agents/a/", "m1", "d/feat", NULL, NULL, &res), 0);
    assert_string_equal(res.ref, "refs/heads/feature/x");
    assert_string_equal(res.subdir, "agents/a");
    char want[41];
    rev_parse("w-agents", "feature/x", want);
    assert_string_equal(res.commit, want);
    assert_true(exists("%s/d/feat/agents/a/feature.py", root));
}

static void test_tag_and_commit_ids(void **state)
{
    (void)state;
    char one[41];
    rev_parse("w-agents", "trunk", one);
    GitImportResult res;
    /* An annotated tag is peeled to its commit. */
    assert_int_equal(import("agents.git", "v1", NULL, "m2", "d/tag", NULL, NULL, &res), 0);
    assert_string_equal(res.ref, "refs/tags/v1");
    assert_string_equal(res.commit, one);
    /* A full commit id, then an abbreviated one (already in the mirror). */
    assert_int_equal(import("agents.git", one, NULL, "m3", "d/commit", NULL, NULL, &res), 0);
    assert_string_equal(res.commit, one);
    assert_string_equal(res.ref, one);
    char abbrev[11];
    snprintf(abbrev, sizeof abbrev, "%.10s", one);
    assert_int_equal(import("agents.git", abbrev, NULL, "m3", "d/abbrev", NULL, NULL, &res), 0);
    assert_string_equal(res.commit, one);
    /* A commit that is no branch tip: found after fetching the branches. */
    char zero[41];
    rev_parse("w-agents", "trunk~1", zero);
    assert_int_equal(import("agents.git", zero, NULL, "m4", "d/commit2", NULL, NULL, &res), 0);
    assert_string_equal(res.commit, zero);
    assert_true(exists("%s/d/commit2/README.md", root));
    assert_false(exists("%s/d/commit2/agents", root));
}

static void test_unknown_ref_is_not_found(void **state)
{
    (void)state;
    GitImportResult res;
    assert_int_equal(import("agents.git", "nope/branch", NULL, "m5", "d/unknown", NULL, NULL, &res),
                     NORN_ERR_NOT_FOUND);
    assert_non_null(strstr(err, "nope/branch"));
    /* The mirror created by the failed import is removed. */
    assert_int_equal(count_mirrors("m5"), 0);
    assert_int_equal(import("agents.git", "abcdef1234", NULL, "m5", "d/unknown", NULL, NULL, &res),
                     NORN_ERR_NOT_FOUND);
    assert_false(exists("%s/d/unknown", root));
    /* Looking for that commit fetched the branches: the mirror keeps them. */
    assert_int_equal(count_mirrors("m5"), 1);
}

static void test_missing_or_bad_subdir(void **state)
{
    (void)state;
    GitImportResult res;
    assert_int_equal(import("agents.git", NULL, "agents/b", "m1", "d/nosub", NULL, NULL, &res),
                     NORN_ERR_INVALID);
    assert_non_null(strstr(err, "agents/b"));
    assert_false(exists("%s/d/nosub", root));
    /* README.md is a file, not a folder. */
    assert_int_equal(import("agents.git", NULL, "README.md", "m1", "d/nosub", NULL, NULL, &res),
                     NORN_ERR_INVALID);
    assert_int_equal(import("agents.git", NULL, "agents/../..", "m1", "d/nosub", NULL, NULL, &res),
                     NORN_ERR_INVALID);
    assert_non_null(strstr(err, ".."));
    assert_false(exists("%s/d/nosub", root));
}

static void test_refused_urls(void **state)
{
    (void)state;
    static const char *const bad[] = {
        "ssh://git@github.com/o/r.git", "git@github.com:o/r.git",
        "git://example.com/r.git",      "/srv/repos/r.git",
        "ftp://example.com/r.git",      "https://user:token@github.com/o/r.git",
        "https://exa mple.com/r.git",   "",
    };
    char mirrors[512], dest[512];
    snprintf(mirrors, sizeof mirrors, "%s/m6", root);
    snprintf(dest, sizeof dest, "%s/d/refused", root);
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        GitImportResult res;
        err[0] = '\0';
        assert_int_equal(git_import_run(bad[i], NULL, NULL, mirrors, dest, NULL, NULL, NULL, &res,
                                        err, sizeof err),
                         NORN_ERR_INVALID);
        assert_true(err[0] != '\0');
    }
    assert_false(exists("%s", dest));
}

static void test_unreachable_and_existing_dest(void **state)
{
    (void)state;
    GitImportResult res;
    assert_int_equal(import("no-such.git", NULL, NULL, "m7", "d/unreach", NULL, NULL, &res),
                     NORN_ERR_UNAVAILABLE);
    assert_false(exists("%s/d/unreach", root));
    assert_int_equal(count_mirrors("m7"), 0);
    /* dest_dir must not exist. */
    sh("mkdir -p %s/d/taken", root);
    assert_int_equal(import("agents.git", NULL, NULL, "m7", "d/taken", NULL, NULL, &res),
                     NORN_ERR_INVALID);
    assert_non_null(strstr(err, "exists"));
}

static void test_over_size_limit_leaves_nothing(void **state)
{
    (void)state;
    Rec *rec = calloc(1, sizeof *rec);
    GitImportLimits lim = {.max_bytes = 512 * 1024};
    GitImportResult res;
    assert_int_equal(import("big.git", NULL, NULL, "m8", "d/big", &lim, rec, &res),
                     NORN_ERR_EXHAUSTED);
    assert_non_null(strstr(err, "limit"));
    assert_false(exists("%s/d/big", root));
    char dests[512];
    snprintf(dests, sizeof dests, "%s/d", root);
    assert_int_equal(count_entries(dests, "big"), 0);
    assert_int_equal(count_mirrors("m8"), 0);
    assert_string_equal(res.commit, "");
    /* The same repository fits a larger limit. */
    lim.max_bytes = 4 * 1024 * 1024;
    assert_int_equal(import("big.git", NULL, NULL, "m8", "d/big", &lim, rec, &res), 0);
    assert_true(last_fetch(rec)->received_bytes >= 2 * 1024 * 1024);
    free(rec);
}

/* 1 MiB of zeros is a tiny pack but a large checkout. */
static void test_checkout_size_limit(void **state)
{
    (void)state;
    GitImportLimits lim = {.max_bytes = 512 * 1024, .max_checkout_bytes = 512 * 1024};
    GitImportResult res;
    assert_int_equal(import("zeros.git", NULL, NULL, "m9", "d/zeros", &lim, NULL, &res),
                     NORN_ERR_EXHAUSTED);
    assert_non_null(strstr(err, "files are larger"));
    assert_false(exists("%s/d/zeros", root));
    lim.max_checkout_bytes = 2 * 1024 * 1024;
    assert_int_equal(import("zeros.git", NULL, NULL, "m9", "d/zeros", &lim, NULL, &res), 0);
    assert_true(exists("%s/d/zeros/zeros.bin", root));
}

static void test_object_limit(void **state)
{
    (void)state;
    GitImportLimits lim = {.max_objects = 10};
    GitImportResult res;
    assert_int_equal(import("grow.git", NULL, NULL, "m10", "d/objects", &lim, NULL, &res),
                     NORN_ERR_EXHAUSTED);
    assert_non_null(strstr(err, "objects"));
    assert_false(exists("%s/d/objects", root));
}

static void test_cancel_from_progress(void **state)
{
    (void)state;
    Rec *rec = calloc(1, sizeof *rec);
    GitImportResult res;
    rec->cancel_stage = GIT_IMPORT_STAGE_FETCHING;
    assert_int_equal(import("grow.git", NULL, NULL, "m11", "d/cancel", NULL, rec, &res),
                     NORN_ERR_UNAVAILABLE);
    assert_non_null(strstr(err, "cancel"));
    assert_false(exists("%s/d/cancel", root));
    /* Cancelled during checkout: the partial tree is removed too. */
    rec->n = 0;
    rec->cancel_stage = GIT_IMPORT_STAGE_CHECKOUT;
    assert_int_equal(import("grow.git", NULL, NULL, "m11", "d/cancel", NULL, rec, &res),
                     NORN_ERR_UNAVAILABLE);
    assert_false(exists("%s/d/cancel", root));
    char dests[512];
    snprintf(dests, sizeof dests, "%s/d", root);
    assert_int_equal(count_entries(dests, "cancel"), 0);
    free(rec);
}

/* Another import of the same URL holds the mirror's lock longer than the
 * time limit. */
static void test_time_limit_while_waiting_for_the_mirror(void **state)
{
    (void)state;
    GitImportResult res;
    assert_int_equal(import("agents.git", NULL, NULL, "m14", "d/first", NULL, NULL, &res), 0);
    char mirrors[512];
    snprintf(mirrors, sizeof mirrors, "%s/m14", root);
    DIR *d = opendir(mirrors);
    assert_non_null(d);
    char lock[1024] = "";
    struct dirent *e;
    while ((e = readdir(d)))
        if (strstr(e->d_name, ".lock"))
            snprintf(lock, sizeof lock, "%s/%s", mirrors, e->d_name);
    closedir(d);
    int fd = open(lock, O_RDWR | O_CLOEXEC);
    assert_true(fd >= 0);
    assert_int_equal(flock(fd, LOCK_EX), 0);
    GitImportLimits lim = {.max_seconds = 1};
    time_t t0 = time(NULL);
    assert_int_equal(import("agents.git", NULL, NULL, "m14", "d/second", &lim, NULL, &res),
                     NORN_ERR_EXHAUSTED);
    assert_non_null(strstr(err, "time limit"));
    assert_true(time(NULL) - t0 <= 3);
    assert_false(exists("%s/d/second", root));
    /* Once the lock is free the import goes through. */
    close(fd);
    assert_int_equal(import("agents.git", NULL, NULL, "m14", "d/second", &lim, NULL, &res), 0);
}

static void test_progress_grows(void **state)
{
    (void)state;
    Rec *rec = calloc(1, sizeof *rec);
    GitImportResult res;
    assert_int_equal(import("big.git", NULL, NULL, "m12", "d/progress", NULL, rec, &res), 0);
    assert_true(rec->n >= 4);
    int fetching = 0;
    for (int i = 1; i < rec->n; i++) {
        const GitImportProgress *a = &rec->p[i - 1], *b = &rec->p[i];
        assert_true(b->stage >= a->stage);
        assert_true(b->percent >= a->percent);
        if (a->stage == GIT_IMPORT_STAGE_FETCHING && b->stage == GIT_IMPORT_STAGE_FETCHING) {
            assert_true(b->received_objects >= a->received_objects);
            assert_true(b->indexed_objects >= a->indexed_objects);
            assert_true(b->received_bytes >= a->received_bytes);
        }
        fetching += b->stage == GIT_IMPORT_STAGE_FETCHING;
        assert_non_null(b->message);
    }
    assert_int_equal(rec->p[0].stage, GIT_IMPORT_STAGE_RESOLVING);
    assert_int_equal(rec->p[rec->n - 1].stage, GIT_IMPORT_STAGE_CHECKOUT);
    assert_int_equal(rec->p[rec->n - 1].percent, 100);
    assert_true(fetching >= 2);
    const GitImportProgress *f = last_fetch(rec);
    assert_true(f->total_objects > 0);
    assert_int_equal(f->received_objects, f->total_objects);
    assert_int_equal(f->indexed_objects, f->total_objects);
    assert_true(f->received_bytes > 2 * 1000 * 1000);
    free(rec);
}

static void test_reimport_fetches_only_new_objects(void **state)
{
    (void)state;
    Rec *rec = calloc(1, sizeof *rec);
    GitImportResult res;
    assert_int_equal(import("grow.git", NULL, NULL, "m13", "d/grow1", NULL, rec, &res), 0);
    uint32_t first = last_fetch(rec)->received_objects;
    assert_true(first >= 45); /* 40 blobs, 5 trees, 1 commit */

    sh("set -e; cd %s/w-grow; echo new > d1/new.txt; git add -A; git commit -q -m more;"
       "git push -q ../grow.git main 2>/dev/null",
       root);
    char head[41];
    rev_parse("w-grow", "main", head);
    rec->n = 0;
    assert_int_equal(import("grow.git", NULL, NULL, "m13", "d/grow2", NULL, rec, &res), 0);
    uint32_t second = last_fetch(rec)->received_objects;
    assert_true(second > 0);
    assert_true(second <= 4); /* commit, root tree, d1 tree, blob */
    assert_string_equal(res.commit, head);
    assert_true(exists("%s/d/grow2/d1/new.txt", root));

    /* Nothing changed: nothing is received. The same repository spelled
     * differently shares the mirror. */
    rec->n = 0;
    char url[512], mirrors[512], dest[512];
    snprintf(url, sizeof url, "file://%s/grow.git/", root);
    snprintf(mirrors, sizeof mirrors, "%s/m13", root);
    snprintf(dest, sizeof dest, "%s/d/grow3", root);
    assert_int_equal(
        git_import_run(url, NULL, NULL, mirrors, dest, NULL, record, rec, &res, err, sizeof err),
        0);
    assert_int_equal(last_fetch(rec)->received_objects, 0);
    assert_string_equal(res.commit, head);
    assert_int_equal(count_mirrors("m13"), 1);
    free(rec);
}

static void test_parse_github_urls(void **state)
{
    (void)state;
    static const struct {
        const char *in, *clone, *rest;
    } cases[] = {
        {"https://github.com/o/r/tree/feature/x/agents/a", "https://github.com/o/r.git",
         "feature/x/agents/a"},
        {"https://github.com/o/r/tree/main/", "https://github.com/o/r.git", "main"},
        {"https://www.github.com/o/r.git/tree/v1", "https://www.github.com/o/r.git", "v1"},
        {"https://github.com/o/r/", "https://github.com/o/r.git", NULL},
        {"https://github.com/o/r", "https://github.com/o/r.git", NULL},
        {"https://github.com/o/r.git", "https://github.com/o/r.git", NULL},
        {"http://GitHub.com/o/r", "http://GitHub.com/o/r.git", NULL},
        /* Other hosts, and "github.com" elsewhere than the host, as given. */
        {"https://gitlab.com/o/r/tree/main", "https://gitlab.com/o/r/tree/main", NULL},
        {"file:///srv/github.com/tree/x", "file:///srv/github.com/tree/x", NULL},
        {"https://github.com.evil.example/o/r", "https://github.com.evil.example/o/r", NULL},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char *clone, *rest;
        assert_int_equal(git_import_parse_url(cases[i].in, &clone, &rest, err, sizeof err), 0);
        assert_string_equal(clone, cases[i].clone);
        if (cases[i].rest)
            assert_string_equal(rest, cases[i].rest);
        else
            assert_null(rest);
        free(clone);
        free(rest);
    }
    char *clone, *rest;
    assert_int_equal(git_import_parse_url("", &clone, &rest, err, sizeof err), NORN_ERR_INVALID);
    assert_int_equal(
        git_import_parse_url("https://github.com/o/r\n", &clone, &rest, err, sizeof err),
        NORN_ERR_INVALID);
    char *huge = malloc(GIT_IMPORT_MAX_URL + 100);
    memset(huge, 'a', GIT_IMPORT_MAX_URL + 99);
    huge[GIT_IMPORT_MAX_URL + 99] = '\0';
    assert_int_equal(git_import_parse_url(huge, &clone, &rest, err, sizeof err), NORN_ERR_INVALID);
    assert_null(clone);
    free(huge);
}

static void test_split_tree_rest(void **state)
{
    (void)state;
    static const char *const refs[] = {
        "HEAD",         "refs/heads/main", "refs/heads/feature/x", "refs/tags/feature",
        "refs/tags/v1", "refs/tags/v1^{}", "refs/tags/main",       "refs/pull/1/head",
    };
    static const struct {
        const char *rest, *ref, *subdir;
    } cases[] = {
        {"feature/x/agents/a", "refs/heads/feature/x", "agents/a"},
        {"feature/x", "refs/heads/feature/x", ""},
        {"feature/y/z", "refs/tags/feature", "y/z"}, /* the longest prefix that exists */
        {"main", "refs/heads/main", ""},             /* a branch wins over a tag */
        {"v1/sub/dir", "refs/tags/v1", "sub/dir"},
        {"deadbeef12/agents", "deadbeef12", "agents"},
    };
    size_t n = sizeof refs / sizeof refs[0];
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char *ref, *subdir;
        assert_int_equal(
            git_import_split_tree_rest(cases[i].rest, refs, n, &ref, &subdir, err, sizeof err), 0);
        assert_string_equal(ref, cases[i].ref);
        assert_string_equal(subdir, cases[i].subdir);
        free(ref);
        free(subdir);
    }
    char *ref, *subdir;
    assert_int_equal(git_import_split_tree_rest("nope/a", refs, n, &ref, &subdir, err, sizeof err),
                     NORN_ERR_NOT_FOUND);
    assert_null(ref);
    assert_int_equal(
        git_import_split_tree_rest("pull/1/head", refs, n, &ref, &subdir, err, sizeof err),
        NORN_ERR_NOT_FOUND);
}

int main(int argc, char **argv)
{
    if (argc > 1)
        cmocka_set_test_filter(argv[1]);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_default_branch_not_main),
        cmocka_unit_test(test_symlink_becomes_plain_file),
        cmocka_unit_test(test_branch_with_slash_and_subdir),
        cmocka_unit_test(test_tag_and_commit_ids),
        cmocka_unit_test(test_unknown_ref_is_not_found),
        cmocka_unit_test(test_missing_or_bad_subdir),
        cmocka_unit_test(test_refused_urls),
        cmocka_unit_test(test_unreachable_and_existing_dest),
        cmocka_unit_test(test_over_size_limit_leaves_nothing),
        cmocka_unit_test(test_checkout_size_limit),
        cmocka_unit_test(test_object_limit),
        cmocka_unit_test(test_cancel_from_progress),
        cmocka_unit_test(test_time_limit_while_waiting_for_the_mirror),
        cmocka_unit_test(test_progress_grows),
        cmocka_unit_test(test_reimport_fetches_only_new_objects),
        cmocka_unit_test(test_parse_github_urls),
        cmocka_unit_test(test_split_tree_rest),
    };
    return cmocka_run_group_tests_name("git_import", tests, setup, teardown);
}
