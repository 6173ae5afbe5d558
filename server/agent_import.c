/*
 * agent_import.c — the ImportAgent worker pool; see agent_import.h.
 */
#include "agent_import.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "discovery.h"
#include "error.h"
#include "git_import.h"
#include "ids.h"
#include "log.h"
#include "msg.h"
#include "norn/v1/agent_service.grpc-c.h"
#include "util.h"

#define DEFAULT_WORKERS 2
#define DEFAULT_QUEUE 16
#define DEFAULT_TASK_TIMEOUT_MS 60000
#define MAX_WORKERS 16
#define MAX_NAME 256
#define MAX_MAIN_FILE 1024
#define MAX_PATH_LEN 4096
/* The data dir's part of every path, leaving room for ids and repo paths. */
#define MAX_DIR_LEN 3000
/* README bytes read for the task prompt (eval_prompt cuts to 2000 code points). */
#define MAX_README_BYTES 8192
#define MAX_PYPROJECT_BYTES (256 * 1024)
/* How often a waiting worker looks whether its client is still there. */
#define POLL_MS 250
#define STAGING_PREFIX ".import-"
/* Percent bands: git reports 0-100 for its part, which is this share. */
#define PERCENT_GIT_SHARE 85
#define PERCENT_DISCOVERY 88
#define PERCENT_TASK 92
#define PERCENT_REGISTERING 97

typedef struct ImportJob {
    RpcCall *call; /* referenced while the job exists */
    char *url, *ref, *subdir, *main_file, *name;
} ImportJob;

struct AgentImporter {
    Store *store;
    Evaluator *ev;
    char agents_dir[MAX_DIR_LEN];
    char mirrors_dir[MAX_DIR_LEN];
    GitImportLimits limits;
    unsigned task_timeout_ms;

    pthread_mutex_t mu;
    pthread_cond_t cv;
    ImportJob **queue; /* ring of queue_cap */
    size_t queue_cap, head, count;
    int stopping;
    pthread_t threads[MAX_WORKERS];
    unsigned n_threads;
};

/* ---- helpers ---------------------------------------------------------------- */

static int is_stopping(AgentImporter *im)
{
    pthread_mutex_lock(&im->mu);
    int s = im->stopping;
    pthread_mutex_unlock(&im->mu);
    return s;
}

/* The client went away, or the server is stopping: abandon the import. */
static int job_abandoned(AgentImporter *im, ImportJob *job)
{
    return rpc_call_is_done(job->call) || is_stopping(im);
}

static void job_free(ImportJob *job)
{
    if (!job)
        return;
    rpc_call_unref(job->call);
    free(job->url);
    free(job->ref);
    free(job->subdir);
    free(job->main_file);
    free(job->name);
    free(job);
}

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static int has_control(const char *s)
{
    for (; *s; s++)
        if ((unsigned char)*s < 0x20 || *s == 0x7f)
            return 1;
    return 0;
}

/* A relative path without "..", "." components or a leading '/'. */
static int safe_relative(const char *p)
{
    if (p[0] == '/')
        return 0;
    const char *s = p;
    while (*s) {
        const char *e = strchr(s, '/');
        size_t n = e ? (size_t)(e - s) : strlen(s);
        if ((n == 2 && s[0] == '.' && s[1] == '.') || (n == 1 && s[0] == '.'))
            return 0;
        if (!e)
            break;
        s = e + 1;
    }
    return 1;
}

static int starts_with_ci(const char *s, const char *prefix)
{
    return strncasecmp(s, prefix, strlen(prefix)) == 0;
}

/* Removes agents_dir/<name>; `name` is one path component. */
static int remove_entry(AgentImporter *im, const char *name, char *err, size_t errlen)
{
    int dfd = open(im->agents_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0) {
        snprintf(err, errlen, "cannot open %s: %s", im->agents_dir, strerror(errno));
        return NORN_ERR_INTERNAL;
    }
    int rc = remove_tree_at(dfd, name);
    int saved = errno;
    close(dfd);
    if (rc != 0) {
        snprintf(err, errlen, "cannot remove workspace %s/%s: %s", im->agents_dir, name,
                 strerror(saved));
        return NORN_ERR_INTERNAL;
    }
    return NORN_OK;
}

/* Length of the longest prefix of s[0..len) that is whole, valid UTF-8. */
static size_t utf8_valid_prefix(const unsigned char *s, size_t len)
{
    size_t i = 0;
    while (i < len) {
        unsigned char c = s[i];
        size_t n = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
        if (n == 0 || c == 0 || i + n > len)
            break;
        size_t k = 1;
        while (k < n && (s[i + k] & 0xC0) == 0x80)
            k++;
        if (k < n)
            break;
        i += n;
    }
    return i;
}

/* The first `max` bytes of a regular file (not through a symlink), cut to
 * valid UTF-8; NULL when absent or unreadable. */
static char *read_text_prefix(const char *path, size_t max)
{
    int fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0)
        return NULL;
    struct stat st;
    char *buf = NULL;
    if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && (buf = malloc(max + 1)) != NULL) {
        size_t len = 0;
        ssize_t n;
        while (len < max && (n = read(fd, buf + len, max - len)) > 0)
            len += (size_t)n;
        len = utf8_valid_prefix((unsigned char *)buf, len);
        buf[len] = '\0';
    }
    close(fd);
    return buf;
}

/* ---- progress ------------------------------------------------------------------ */

typedef struct JobCtx {
    AgentImporter *im;
    ImportJob *job;
} JobCtx;

static void send_progress(ImportJob *job, const GitImportProgress *p, uint32_t percent)
{
    Norn__V1__ImportProgress prog = NORN__V1__IMPORT_PROGRESS__INIT;
    prog.stage = (Norn__V1__ImportStage)p->stage;
    prog.message = (char *)(p->message ? p->message : "");
    prog.received_objects = p->received_objects;
    prog.indexed_objects = p->indexed_objects;
    prog.total_objects = p->total_objects;
    prog.received_bytes = p->received_bytes;
    prog.percent = percent;
    Norn__V1__ImportAgentResponse m = NORN__V1__IMPORT_AGENT_RESPONSE__INIT;
    m.event_case = NORN__V1__IMPORT_AGENT_RESPONSE__EVENT_PROGRESS;
    m.progress = &prog;
    /* A full outgoing queue drops this update; the next one says more. */
    norn__v1__agent_service__import_agent__send(job->call, &m);
}

static void send_stage(ImportJob *job, int stage, const char *message, uint32_t percent)
{
    GitImportProgress p = {.stage = stage, .message = message};
    send_progress(job, &p, percent);
}

/* git_import's callback (already rate-limited there). */
static int on_git_progress(void *ud, const GitImportProgress *p)
{
    JobCtx *c = ud;
    if (job_abandoned(c->im, c->job))
        return 1;
    send_progress(c->job, p, p->percent * PERCENT_GIT_SHARE / 100);
    return 0;
}

/* ---- test-task generation ------------------------------------------------------ */

/* Shared by the worker and the evaluator's callback; the last to let go
 * frees it, so a worker that stops waiting leaves nothing dangling. */
typedef struct TaskWait {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int refs, done;
    char *text, *error;
} TaskWait;

static void task_wait_unref_locked(TaskWait *w)
{
    if (--w->refs > 0) {
        pthread_mutex_unlock(&w->mu);
        return;
    }
    pthread_mutex_unlock(&w->mu);
    pthread_mutex_destroy(&w->mu);
    pthread_cond_destroy(&w->cv);
    free(w->text);
    free(w->error);
    free(w);
}

static void on_task_answer(void *arg, const char *text, const char *error)
{
    TaskWait *w = arg;
    pthread_mutex_lock(&w->mu);
    w->text = text ? strdup(text) : NULL;
    w->error = strdup(error ? error : text ? "" : "no answer");
    w->done = 1;
    pthread_cond_broadcast(&w->cv);
    task_wait_unref_locked(w);
}

/* Asks the model for a test task. Returns the parsed task, or NULL with
 * the reason in why (then the caller falls back). *abandoned is set when
 * the client left while waiting. */
static Norn__V1__TaskDefinition *task_from_model(AgentImporter *im, ImportJob *job,
                                                 const EvalTaskContext *ctx, int *abandoned,
                                                 char *why, size_t whylen)
{
    *abandoned = 0;
    char *prompt = evalp_task_prompt(ctx);
    TaskWait *w = calloc(1, sizeof *w);
    if (!prompt || !w) {
        free(prompt);
        free(w);
        snprintf(why, whylen, "out of memory");
        return NULL;
    }
    pthread_mutex_init(&w->mu, NULL);
    pthread_cond_init(&w->cv, NULL);
    w->refs = 2;
    if (evaluator_call(im->ev, EVALP_TASK_SYSTEM, prompt, EVALP_TASK_TEMPERATURE, on_task_answer,
                       w) != 0) {
        free(prompt);
        pthread_mutex_lock(&w->mu);
        w->refs--; /* the evaluator took no reference */
        task_wait_unref_locked(w);
        snprintf(why, whylen, "the evaluator refused the call (disabled or queue full)");
        return NULL;
    }
    free(prompt);
    uint64_t deadline = now_ms() + im->task_timeout_ms;
    pthread_mutex_lock(&w->mu);
    while (!w->done) {
        uint64_t now = now_ms();
        if (now >= deadline)
            break;
        pthread_mutex_unlock(&w->mu);
        if (job_abandoned(im, job)) {
            *abandoned = 1;
            pthread_mutex_lock(&w->mu);
            break;
        }
        pthread_mutex_lock(&w->mu);
        if (w->done)
            break;
        uint64_t wait = deadline - now < POLL_MS ? deadline - now : POLL_MS;
        struct timespec until;
        clock_gettime(CLOCK_REALTIME, &until);
        until.tv_sec += (time_t)(wait / 1000);
        until.tv_nsec += (long)(wait % 1000) * 1000000L;
        if (until.tv_nsec >= 1000000000L) {
            until.tv_sec++;
            until.tv_nsec -= 1000000000L;
        }
        pthread_cond_timedwait(&w->cv, &w->mu, &until);
    }
    Norn__V1__TaskDefinition *task = NULL;
    if (!w->done) {
        if (!*abandoned)
            snprintf(why, whylen, "no answer from the model within %u ms", im->task_timeout_ms);
    } else if (!w->text) {
        snprintf(why, whylen, "model call failed: %s", w->error ? w->error : "out of memory");
    } else {
        task = evalp_parse_task(w->text, why, whylen);
    }
    task_wait_unref_locked(w);
    return task;
}

/* The [project] description of root/pyproject.toml, malloc'd, or NULL. */
static char *project_description(const char *root)
{
    char path[MAX_PATH_LEN];
    snprintf(path, sizeof path, "%s/pyproject.toml", root);
    char *text = read_text_prefix(path, MAX_PYPROJECT_BYTES);
    if (!text)
        return NULL;
    TomlDoc *doc = toml_parse(text, strlen(text));
    free(text);
    const char *d = doc ? toml_get_string(doc, "project", "description") : NULL;
    char *out = d ? strdup(d) : NULL;
    toml_free(doc);
    return out;
}

static char *first_readme(const char *root)
{
    static const char *const names[] = {"README.md", "readme.md", "README.rst", "README.txt"};
    char path[MAX_PATH_LEN];
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        snprintf(path, sizeof path, "%s/%s", root, names[i]);
        char *s = read_text_prefix(path, MAX_README_BYTES);
        if (s)
            return s;
    }
    return NULL;
}

/* §8.7: the model's task when AI is on and it answers usably, else the
 * deterministic one. NULL when abandoned or out of memory. */
static Norn__V1__TaskDefinition *generate_task(AgentImporter *im, ImportJob *job, const char *root,
                                               const char *name,
                                               const Norn__V1__DiscoveryReport *report,
                                               int *abandoned)
{
    *abandoned = 0;
    char fallback[MAX_NAME + 16];
    snprintf(fallback, sizeof fallback, "Execute %s", name);
    char *readme = first_readme(root), *description = project_description(root);
    EvalTaskContext ctx = {
        .agent_name = name,
        .discovery = report,
        .readme = readme,
        .project_description = description,
        .fallback_description = fallback,
    };
    Norn__V1__TaskDefinition *task = NULL;
    if (im->ev && !evaluator_disabled_reason(im->ev)) {
        send_stage(job, NORN__V1__IMPORT_STAGE__IMPORT_STAGE_TASK_GENERATION,
                   "Generating a test task", PERCENT_TASK);
        char why[300] = "";
        task = task_from_model(im, job, &ctx, abandoned, why, sizeof why);
        if (!task && !*abandoned)
            log_warn("import_task_fallback", "reason=%s", log_quote(why, (char[400]){0}, 400));
    }
    if (!task && !*abandoned)
        task = evalp_task_fallback(&ctx);
    free(readme);
    free(description);
    return task;
}

/* ---- registering ----------------------------------------------------------------- */

/* `git-<YYYYmmddHHMMSS>-<stem>` (§1.8): the entry file's stem lower-cased,
 * '_' → '-', cut to 32 bytes; characters an id may not hold become '-'. */
static void base_agent_id(uint64_t micros, const char *main_file, char *out, size_t cap)
{
    const char *base = strrchr(main_file, '/');
    base = base ? base + 1 : main_file;
    size_t n = strlen(base);
    const char *dot = strrchr(base, '.');
    if (dot && dot != base)
        n = (size_t)(dot - base);
    char stem[33];
    size_t k = 0;
    for (size_t i = 0; i < n && k < 32; i++) {
        char c = (char)tolower((unsigned char)base[i]);
        stem[k++] = c == '_' || !(isalnum((unsigned char)c) || c == '.' || c == '-') ? '-' : c;
    }
    stem[k] = '\0';
    time_t secs = (time_t)(micros / 1000000u);
    struct tm tm;
    gmtime_r(&secs, &tm);
    char when[16];
    strftime(when, sizeof when, "%Y%m%d%H%M%S", &tm);
    snprintf(out, cap, "git-%s-%s", when, k ? stem : "agent");
}

/* An id no agent and no workspace has yet: the original's loop appends
 * "-<number of agents known>" (here: counted up from there) until free.
 * Runs inside the transaction, so no other writer can take it meanwhile. */
static int unique_agent_id(AgentImporter *im, StoreTxn *t, const char *base, char *out, size_t cap)
{
    snprintf(out, cap, "%s", base);
    uint64_t n = store_txn_counters(t)->agents;
    for (int tries = 0; tries < 1000; tries++) {
        Norn__V1__Agent *a = NULL;
        int rc = store_agent_get(im->store, out, &a);
        if (a)
            norn__v1__agent__free_unpacked(a, NULL);
        char path[MAX_PATH_LEN];
        snprintf(path, sizeof path, "%s/%s", im->agents_dir, out);
        struct stat st;
        if (rc == NORN_ERR_NOT_FOUND && lstat(path, &st) != 0 && errno == ENOENT)
            return 0;
        if (rc != NORN_OK && rc != NORN_ERR_NOT_FOUND)
            return rc;
        /* The base is cut so the suffix always fits in an id. */
        snprintf(out, cap, "%.*s-%llu", (int)(cap > 22 ? cap - 22 : 0), base,
                 (unsigned long long)n++);
    }
    return NORN_ERR_EXHAUSTED;
}

/* Writes the Agent (and renames the staging workspace to its id) in one
 * transaction. On success *out is the stored agent (caller frees). */
static int register_agent(AgentImporter *im, ImportJob *job, const char *staging,
                          const GitImportResult *git, const char *name,
                          Norn__V1__DiscoveryReport *report_take,
                          Norn__V1__TaskDefinition *task_take, Norn__V1__Agent **out, char *err,
                          size_t errlen)
{
    Norn__V1__Agent *a = msg_alloc(sizeof *a);
    norn__v1__agent__init(a);
    report_take->generated_task = task_take;
    a->discovery = report_take;
    StoreTxn *t = store_txn_begin(im->store);
    char base[ID_MAX_LEN + 1], id[ID_MAX_LEN + 1];
    uint64_t now = store_txn_now_micros(t);
    base_agent_id(now, report_take->main_file, base, 80);
    int rc = unique_agent_id(im, t, base, id, sizeof id);
    if (rc != NORN_OK) {
        store_txn_abort(t);
        norn__v1__agent__free_unpacked(a, NULL);
        snprintf(err, errlen, "cannot choose an agent id: %s", norn_error_name(rc));
        return rc;
    }
    a->agent_id = msg_strdup(id);
    a->name = msg_strdup(name);
    a->source = NORN__V1__AGENT_SOURCE__AGENT_SOURCE_GIT;
    a->url = msg_strdup(job->url);
    a->ref = msg_strdup(git->ref);
    a->commit = msg_strdup(git->commit);
    a->subdir = msg_strdup(git->subdir);
    a->main_file = msg_strdup(report_take->main_file);
    a->task_description = msg_strdup(task_take->description);
    a->added_at = msg_timestamp(now);
    a->status = NORN__V1__AGENT_STATUS__AGENT_STATUS_ANALYZED;
    char dest[MAX_PATH_LEN];
    snprintf(dest, sizeof dest, "%s/%s", im->agents_dir, id);
    if (rename(staging, dest) != 0) {
        snprintf(err, errlen, "cannot move the workspace to %.300s: %s", dest, strerror(errno));
        store_txn_abort(t);
        norn__v1__agent__free_unpacked(a, NULL);
        return NORN_ERR_INTERNAL;
    }
    store_txn_put_agent(t, a);
    store_txn_counters(t)->agents++;
    rc = store_txn_commit(t, err, errlen);
    if (rc != NORN_OK) {
        char ignored[200];
        remove_entry(im, id, ignored, sizeof ignored);
        norn__v1__agent__free_unpacked(a, NULL);
        return rc;
    }
    *out = a;
    return NORN_OK;
}

/* ---- one import ---------------------------------------------------------------- */

/* Runs the import; returns RPC_OK after sending the Agent, else the status
 * to end the stream with (message in err). Whatever fails, the staging
 * workspace is gone afterwards. */
static RpcCode run_import(AgentImporter *im, ImportJob *job, char *err, size_t errlen)
{
    char staging_name[sizeof STAGING_PREFIX + ID_GEN_LEN];
    char gen[ID_GEN_LEN + 1];
    id_generate(gen);
    snprintf(staging_name, sizeof staging_name, STAGING_PREFIX "%s", gen);
    char staging[MAX_DIR_LEN + sizeof staging_name + 1], src[sizeof staging + 4];
    snprintf(staging, sizeof staging, "%s/%s", im->agents_dir, staging_name);
    snprintf(src, sizeof src, "%s/src", staging);

    send_stage(job, GIT_IMPORT_STAGE_RESOLVING, "Resolving the repository", 0);
    JobCtx ctx = {im, job};
    GitImportResult git;
    int rc = git_import_run(job->url, job->ref, job->subdir, im->mirrors_dir, src, &im->limits,
                            on_git_progress, &ctx, &git, err, errlen);
    char ignored[300];
    if (rc != NORN_OK) {
        remove_entry(im, staging_name, ignored, sizeof ignored);
        return norn_error_to_rpc(rc);
    }
    RpcCode code = RPC_OK;
    Norn__V1__DiscoveryReport *report = NULL;
    Norn__V1__TaskDefinition *task = NULL;
    Norn__V1__Agent *agent = NULL;
    char *found_name = NULL;
    char root[sizeof src + GIT_IMPORT_MAX_SUBDIR + 1];
    snprintf(root, sizeof root, "%s%s%s", src, git.subdir[0] ? "/" : "", git.subdir);
    if (job_abandoned(im, job)) {
        code = RPC_CANCELLED;
        snprintf(err, errlen, "import cancelled");
        goto out;
    }
    send_stage(job, NORN__V1__IMPORT_STAGE__IMPORT_STAGE_DISCOVERY, "Discovering the agent",
               PERCENT_DISCOVERY);
    rc = discovery_run(root, job->main_file, &report, &found_name, err, errlen);
    if (rc != NORN_OK) {
        /* The proto's contract: a missing entry file is the caller's mistake. */
        code = rc == NORN_ERR_NOT_FOUND ? RPC_INVALID_ARGUMENT : norn_error_to_rpc(rc);
        goto out;
    }
    const char *name = job->name[0] ? job->name : found_name;
    int abandoned = 0;
    task = generate_task(im, job, root, name, report, &abandoned);
    if (abandoned || job_abandoned(im, job)) {
        code = RPC_CANCELLED;
        snprintf(err, errlen, "import cancelled");
        goto out;
    }
    if (!task) {
        code = RPC_INTERNAL;
        snprintf(err, errlen, "out of memory generating the test task");
        goto out;
    }
    send_stage(job, NORN__V1__IMPORT_STAGE__IMPORT_STAGE_REGISTERING, "Registering the agent",
               PERCENT_REGISTERING);
    rc = register_agent(im, job, staging, &git, name, report, task, &agent, err, errlen);
    report = NULL; /* taken, with the task */
    task = NULL;
    if (rc != NORN_OK) {
        code = norn_error_to_rpc(rc);
        goto out;
    }
    Norn__V1__ImportAgentResponse m = NORN__V1__IMPORT_AGENT_RESPONSE__INIT;
    m.event_case = NORN__V1__IMPORT_AGENT_RESPONSE__EVENT_AGENT;
    m.agent = agent;
    RpcCode sent = norn__v1__agent_service__import_agent__send(job->call, &m);
    log_info("agent_imported", "agent_id=%s commit=%s tools=%zu findings=%zu sent=%s",
             agent->agent_id, agent->commit, agent->discovery->n_tools,
             agent->discovery->n_findings, rpc_code_name(sent));
    norn__v1__agent__free_unpacked(agent, NULL);
out:
    if (report)
        norn__v1__discovery_report__free_unpacked(report, NULL);
    if (task)
        norn__v1__task_definition__free_unpacked(task, NULL);
    free(found_name);
    if (code != RPC_OK)
        remove_entry(im, staging_name, ignored, sizeof ignored);
    return code;
}

static void *worker_main(void *arg)
{
    AgentImporter *im = arg;
    for (;;) {
        pthread_mutex_lock(&im->mu);
        while (!im->stopping && im->count == 0)
            pthread_cond_wait(&im->cv, &im->mu);
        if (im->stopping) {
            pthread_mutex_unlock(&im->mu);
            return NULL;
        }
        ImportJob *job = im->queue[im->head];
        im->head = (im->head + 1) % im->queue_cap;
        im->count--;
        pthread_mutex_unlock(&im->mu);

        if (rpc_call_is_done(job->call)) { /* the client left while queued */
            job_free(job);
            continue;
        }
        char err[512] = "";
        uint64_t started = now_ms();
        RpcCode code = run_import(im, job, err, sizeof err);
        if (code != RPC_OK) {
            if (is_stopping(im)) {
                code = RPC_UNAVAILABLE;
                snprintf(err, sizeof err, "server is shutting down");
            }
            log_info("agent_import_failed", "code=%s ms=%llu error=%s", rpc_code_name(code),
                     (unsigned long long)(now_ms() - started), log_quote(err, (char[600]){0}, 600));
        }
        rpc_call_finish(job->call, code, code == RPC_OK ? NULL : err);
        job_free(job);
    }
}

/* ---- the handler ------------------------------------------------------------------ */

static char *stripped_copy(const char *s)
{
    while (*s && isspace((unsigned char)*s))
        s++;
    size_t n = strlen(s);
    while (n && isspace((unsigned char)s[n - 1]))
        n--;
    char *r = malloc(n + 1);
    if (r) {
        memcpy(r, s, n);
        r[n] = '\0';
    }
    return r;
}

static RpcCode validate(RpcCall *call, const Norn__V1__ImportAgentRequest *req)
{
    if (!req->url[0])
        return rpc_fail(call, RPC_INVALID_ARGUMENT, "url: required");
    if (strlen(req->url) > GIT_IMPORT_MAX_URL || has_control(req->url))
        return rpc_fail(call, RPC_INVALID_ARGUMENT,
                        "url: at most %d bytes without control characters", GIT_IMPORT_MAX_URL);
    if (!starts_with_ci(req->url, "https://") && !starts_with_ci(req->url, "http://") &&
        !starts_with_ci(req->url, "file://"))
        return rpc_fail(call, RPC_INVALID_ARGUMENT,
                        "url: must be an https://, http:// or file:// git URL");
    if (strlen(req->ref) > GIT_IMPORT_MAX_REF || has_control(req->ref))
        return rpc_fail(call, RPC_INVALID_ARGUMENT,
                        "ref: at most %d bytes without control characters", GIT_IMPORT_MAX_REF);
    if (strlen(req->subdir) > GIT_IMPORT_MAX_SUBDIR || has_control(req->subdir) ||
        !safe_relative(req->subdir))
        return rpc_fail(call, RPC_INVALID_ARGUMENT,
                        "subdir: a relative path of at most %d bytes, without '..'",
                        GIT_IMPORT_MAX_SUBDIR);
    if (strlen(req->main_file) > MAX_MAIN_FILE || has_control(req->main_file) ||
        !safe_relative(req->main_file))
        return rpc_fail(call, RPC_INVALID_ARGUMENT,
                        "main_file: a relative path of at most %d bytes, without '..'",
                        MAX_MAIN_FILE);
    if (strlen(req->name) > MAX_NAME || has_control(req->name))
        return rpc_fail(call, RPC_INVALID_ARGUMENT,
                        "name: at most %d bytes without control characters", MAX_NAME);
    return RPC_OK;
}

RpcCode agent_importer_handle(AgentImporter *im, RpcCall *call,
                              const Norn__V1__ImportAgentRequest *req)
{
    RpcCode code = validate(call, req);
    if (code != RPC_OK)
        return code;
    ImportJob *job = calloc(1, sizeof *job);
    if (job) {
        job->url = strdup(req->url);
        job->ref = strdup(req->ref);
        job->subdir = strdup(req->subdir);
        job->main_file = strdup(req->main_file);
        job->name = stripped_copy(req->name);
    }
    if (!job || !job->url || !job->ref || !job->subdir || !job->main_file || !job->name) {
        if (job) {
            job->call = call;
            rpc_call_ref(call);
        }
        job_free(job);
        return rpc_fail(call, RPC_RESOURCE_EXHAUSTED, "out of memory");
    }
    job->call = call;
    rpc_call_ref(call);
    pthread_mutex_lock(&im->mu);
    if (im->stopping || im->count == im->queue_cap) {
        int stopping = im->stopping;
        pthread_mutex_unlock(&im->mu);
        job_free(job);
        if (stopping)
            return rpc_fail(call, RPC_UNAVAILABLE, "server is shutting down");
        return rpc_fail(call, RPC_RESOURCE_EXHAUSTED,
                        "import queue is full (%zu imports waiting); try again later",
                        im->queue_cap);
    }
    im->queue[(im->head + im->count) % im->queue_cap] = job;
    im->count++;
    pthread_cond_signal(&im->cv);
    pthread_mutex_unlock(&im->mu);
    return RPC_PENDING;
}

/* ---- lifecycle ---------------------------------------------------------------------- */

static int make_dir(const char *path, char *err, size_t errlen)
{
    struct stat st;
    if ((mkdir(path, 0700) == 0 || errno == EEXIST) && lstat(path, &st) == 0 && S_ISDIR(st.st_mode))
        return 0;
    snprintf(err, errlen, "%s: %s", path, strerror(errno ? errno : ENOTDIR));
    return -1;
}

/* Staging workspaces of imports a crash interrupted. */
static void remove_stale_staging(AgentImporter *im)
{
    DIR *d = opendir(im->agents_dir);
    if (!d)
        return;
    char names[64][NAME_MAX + 1];
    size_t n = 0;
    struct dirent *e;
    while (n < 64 && (e = readdir(d)) != NULL)
        if (strncmp(e->d_name, STAGING_PREFIX, strlen(STAGING_PREFIX)) == 0)
            snprintf(names[n++], sizeof names[0], "%s", e->d_name);
    closedir(d);
    for (size_t i = 0; i < n; i++) {
        char err[300];
        if (remove_entry(im, names[i], err, sizeof err) != NORN_OK)
            log_warn("import_staging_left", "error=%s", log_quote(err, (char[400]){0}, 400));
    }
}

AgentImporter *agent_importer_new(const AgentImportOptions *o, Store *store, Evaluator *ev,
                                  char *err, size_t errlen)
{
    AgentImporter *im = calloc(1, sizeof *im);
    if (!im) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    im->store = store;
    im->ev = ev;
    im->limits.max_bytes = o->max_bytes ? o->max_bytes : AGENT_IMPORT_DEFAULT_MAX_BYTES;
    im->limits.max_checkout_bytes = im->limits.max_bytes * 4;
    im->limits.max_seconds = o->max_seconds ? o->max_seconds : AGENT_IMPORT_DEFAULT_MAX_SECONDS;
    im->limits.max_objects = 1000000;
    im->task_timeout_ms = o->task_timeout_ms ? o->task_timeout_ms : DEFAULT_TASK_TIMEOUT_MS;
    im->queue_cap = o->queue_capacity ? o->queue_capacity : DEFAULT_QUEUE;
    unsigned workers = o->workers ? o->workers : DEFAULT_WORKERS;
    if (workers > MAX_WORKERS)
        workers = MAX_WORKERS;
    pthread_mutex_init(&im->mu, NULL);
    pthread_cond_init(&im->cv, NULL);
    int n1 = snprintf(im->agents_dir, sizeof im->agents_dir, "%s/agents", o->data_dir);
    int n2 = snprintf(im->mirrors_dir, sizeof im->mirrors_dir, "%s/mirrors", o->data_dir);
    if (n1 < 0 || n2 < 0 || (size_t)n2 >= sizeof im->mirrors_dir) {
        snprintf(err, errlen, "data dir path too long");
        agent_importer_free(im);
        return NULL;
    }
    im->queue = calloc(im->queue_cap, sizeof *im->queue);
    if (!im->queue) {
        snprintf(err, errlen, "out of memory");
        agent_importer_free(im);
        return NULL;
    }
    if (make_dir(im->agents_dir, err, errlen) != 0) {
        agent_importer_free(im);
        return NULL;
    }
    remove_stale_staging(im);
    for (unsigned i = 0; i < workers; i++) {
        if (pthread_create(&im->threads[i], NULL, worker_main, im) != 0) {
            snprintf(err, errlen, "cannot start import worker threads");
            agent_importer_free(im);
            return NULL;
        }
        im->n_threads++;
    }
    return im;
}

int agent_importer_remove_workspace(AgentImporter *im, const char *agent_id, char *err,
                                    size_t errlen)
{
    if (!agent_id[0] || agent_id[0] == '.' || strchr(agent_id, '/') ||
        strlen(agent_id) > ID_MAX_LEN) {
        snprintf(err, errlen, "'%.*s' cannot name a workspace", ID_MAX_LEN, agent_id);
        return NORN_ERR_INVALID;
    }
    return remove_entry(im, agent_id, err, errlen);
}

void agent_importer_stop(AgentImporter *im)
{
    if (!im)
        return;
    pthread_mutex_lock(&im->mu);
    int was = im->stopping;
    im->stopping = 1;
    pthread_cond_broadcast(&im->cv);
    pthread_mutex_unlock(&im->mu);
    if (was)
        return;
    for (unsigned i = 0; i < im->n_threads; i++)
        pthread_join(im->threads[i], NULL);
    im->n_threads = 0;
    for (; im->count; im->count--) {
        ImportJob *job = im->queue[im->head];
        im->head = (im->head + 1) % im->queue_cap;
        rpc_call_finish(job->call, RPC_UNAVAILABLE, "server is shutting down");
        job_free(job);
    }
}

void agent_importer_free(AgentImporter *im)
{
    if (!im)
        return;
    agent_importer_stop(im);
    pthread_mutex_destroy(&im->mu);
    pthread_cond_destroy(&im->cv);
    free(im->queue);
    free(im);
}
