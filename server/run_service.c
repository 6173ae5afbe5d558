/*
 * run_service.c — AgentService runs on the executor; see run_service.h.
 *
 * Locking: `mu` guards the in-memory lists (live runs, venv builds, agents
 * with active runs). RunAgent holds it across executor_submit and the
 * QUEUED write, and every executor callback takes it before looking a run
 * up, so a callback never sees a run whose QUEUED record is not stored yet.
 * Store writes and ingest calls from callbacks run without it.
 */
#include "run_service.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "error.h"
#include "executor.h"
#include "ids.h"
#include "keys.h"
#include "log.h"
#include "msg.h"
#include "util.h"

#define MAX_TASK (64 * 1024)
#define MAX_TIMEOUT_S 86400u
#define MAX_PAGE 1000
#define DEFAULT_PAGE 50
#define TOKEN_VERSION 1
#define VENV_TIMEOUT_MS (900u * 1000u)
#define MAX_JSON_DEPTH 64
#define ERROR_LOG_CHARS 600
#define PATH_CAP 4096
#define DEFAULT_PYTHON "/usr/bin/python3"
#define VENV_READY_MARKER ".norn-ready"

/* The run's shell copies the agent's files into its workspace (the current
 * directory), enters the agent's sub-directory and becomes the agent:
 * $1 source dir, $2 sub-directory, $3 interpreter, $4 entry file. The paths
 * are positional parameters, never parsed as shell text. */
static const char run_script[] = "set -e\n"
                                 "cp -R \"$1\"/. .\n"
                                 "cd \"./$2\"\n"
                                 "exec \"$3\" \"$4\"\n";

/* Settings pip needs to reach an index; passed to venv builds only. */
static const char *const pip_env_names[] = {
    "PIP_INDEX_URL", "PIP_EXTRA_INDEX_URL", "PIP_TRUSTED_HOST", "HTTP_PROXY", "HTTPS_PROXY",
    "NO_PROXY",      "http_proxy",          "https_proxy",      "no_proxy",
};
#define PIP_ENV_COUNT (sizeof pip_env_names / sizeof pip_env_names[0])

typedef enum RunPhase {
    PHASE_WAIT_VENV, /* waiting for the agent's venv build */
    PHASE_AGENT,     /* submitted to the executor */
} RunPhase;

typedef struct LiveRun {
    struct LiveRun *next;
    char run_id[ID_MAX_LEN + 1];
    char agent_id[ID_MAX_LEN + 1];
    char session_id[ID_MAX_LEN + 1];
    char *agent_name, *task, *subdir, *main_file;
    int guard_mode;
    unsigned timeout_s;
    RunPhase phase;
    int session_opened;
} LiveRun;

typedef struct VenvBuild {
    struct VenvBuild *next;
    char exec_id[ID_MAX_LEN + 1];
    char agent_id[ID_MAX_LEN + 1];
} VenvBuild;

/* Agents with queued or running runs (their status is RUNNING). */
typedef struct ActiveAgent {
    struct ActiveAgent *next;
    char agent_id[ID_MAX_LEN + 1];
    unsigned runs;
} ActiveAgent;

struct RunService {
    Store *store;
    ConfigHolder *config;
    SessionService *sessions;
    Executor *ex;
    char *data_dir;
    char *python;
    long run_uid, run_gid;
    pthread_mutex_t mu;
    char endpoint[300];
    LiveRun *live;
    VenvBuild *venvs;
    ActiveAgent *active;
};

/* ---- small helpers ---------------------------------------------------------- */

static int path_join(char *out, size_t cap, const char *a, const char *b, const char *c)
{
    int n = snprintf(out, cap, "%s/%s%s%s", a, b, c && *c ? "/" : "", c ? c : "");
    return n > 0 && (size_t)n < cap ? 0 : -1;
}

static int file_exists(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

/* A repository-relative path from the agent record: no absolute path, no
 * ".." component (the record comes from the importer, but a path that
 * leaves the agent's directory must never reach a run). */
static int relative_path_ok(const char *p)
{
    if (p[0] == '/')
        return 0;
    for (const char *s = p; *s;) {
        const char *e = strchr(s, '/');
        size_t n = e ? (size_t)(e - s) : strlen(s);
        if (n == 2 && s[0] == '.' && s[1] == '.')
            return 0;
        s += n + (e ? 1 : 0);
    }
    return 1;
}

static void free_live(LiveRun *r)
{
    if (!r)
        return;
    free(r->agent_name);
    free(r->task);
    free(r->subdir);
    free(r->main_file);
    free(r);
}

static LiveRun **find_live(RunService *rs, const char *run_id)
{
    for (LiveRun **p = &rs->live; *p; p = &(*p)->next)
        if (strcmp((*p)->run_id, run_id) == 0)
            return p;
    return NULL;
}

static VenvBuild **find_venv(RunService *rs, const char *exec_id, const char *agent_id)
{
    for (VenvBuild **p = &rs->venvs; *p; p = &(*p)->next)
        if ((exec_id && strcmp((*p)->exec_id, exec_id) == 0) ||
            (agent_id && strcmp((*p)->agent_id, agent_id) == 0))
            return p;
    return NULL;
}

static uint64_t now_micros(void)
{
    struct timespec t;
    clock_gettime(CLOCK_REALTIME, &t);
    return (uint64_t)t.tv_sec * 1000000u + (uint64_t)t.tv_nsec / 1000u;
}

/* ---- store updates ---------------------------------------------------------- */

typedef void (*RunEdit)(Norn__V1__Run *run, void *arg);

/* Read-modify-write of one run inside a transaction. */
static int update_run(RunService *rs, const char *run_id, RunEdit edit, void *arg)
{
    StoreTxn *t = store_txn_begin(rs->store);
    if (!t)
        return NORN_ERR_NO_MEMORY;
    Norn__V1__Run *run = NULL;
    int rc = store_run_get(rs->store, run_id, &run);
    if (rc != NORN_OK) {
        store_txn_abort(t);
        log_warn("run_update_failed", "run=%s rc=%d (cannot read it)", run_id, rc);
        return rc;
    }
    edit(run, arg);
    store_txn_put_run(t, run);
    protobuf_c_message_free_unpacked(&run->base, NULL);
    char err[200];
    rc = store_txn_commit(t, err, sizeof err);
    if (rc != NORN_OK)
        log_warn("run_update_failed", "run=%s %s", run_id, err);
    return rc;
}

typedef void (*AgentEdit)(Norn__V1__Agent *a, void *arg);

static void update_agent(RunService *rs, const char *agent_id, AgentEdit edit, void *arg)
{
    StoreTxn *t = store_txn_begin(rs->store);
    if (!t)
        return;
    Norn__V1__Agent *a = NULL;
    if (store_agent_get(rs->store, agent_id, &a) != NORN_OK) {
        store_txn_abort(t); /* deleted meanwhile: nothing to show the run on */
        return;
    }
    edit(a, arg);
    store_txn_put_agent(t, a);
    protobuf_c_message_free_unpacked(&a->base, NULL);
    char err[200];
    if (store_txn_commit(t, err, sizeof err) != NORN_OK)
        log_warn("agent_update_failed", "agent=%s %s", agent_id, err);
}

/* The status an agent has when no run of it is active. */
static Norn__V1__AgentStatus idle_status(const Norn__V1__Agent *a)
{
    return a->discovery ? NORN__V1__AGENT_STATUS__AGENT_STATUS_ANALYZED
                        : NORN__V1__AGENT_STATUS__AGENT_STATUS_READY;
}

typedef struct LastRun {
    const char *run_id;
    uint64_t queued_micros;
} LastRun;

static void edit_agent_started(Norn__V1__Agent *a, void *arg)
{
    const LastRun *lr = arg;
    a->status = NORN__V1__AGENT_STATUS__AGENT_STATUS_RUNNING;
    msg_set_str(&a->last_run_id, lr->run_id);
    if (a->last_run)
        protobuf_c_message_free_unpacked(&a->last_run->base, NULL);
    a->last_run = msg_timestamp(lr->queued_micros);
}

static void edit_agent_idle(Norn__V1__Agent *a, void *arg)
{
    (void)arg;
    a->status = idle_status(a);
}

/* Counts a run in or out of its agent's active runs; the agent is RUNNING
 * while it has any. Called with mu held. Returns 1 when the agent's status
 * must change (first run in, last run out). */
static int active_add(RunService *rs, const char *agent_id, int delta)
{
    ActiveAgent **p = &rs->active;
    for (; *p; p = &(*p)->next)
        if (strcmp((*p)->agent_id, agent_id) == 0)
            break;
    if (delta > 0) {
        if (*p) {
            (*p)->runs++;
            return 0;
        }
        ActiveAgent *a = msg_alloc(sizeof *a);
        memset(a, 0, sizeof *a);
        snprintf(a->agent_id, sizeof a->agent_id, "%s", agent_id);
        a->runs = 1;
        a->next = rs->active;
        rs->active = a;
        return 1;
    }
    if (!*p)
        return 0;
    if (--(*p)->runs)
        return 0;
    ActiveAgent *gone = *p;
    *p = gone->next;
    free(gone);
    return 1;
}

/* ---- the run's session ---------------------------------------------------- */

static Norn__V1__IngestResponse *ingest(RunService *rs, Norn__V1__IngestRequest *req,
                                        const char *what, const char *run_id)
{
    RpcCode code = RPC_OK;
    char msg[300] = "";
    Norn__V1__IngestResponse *resp =
        session_service_ingest(rs->sessions, req, &code, msg, sizeof msg);
    if (!resp)
        log_warn("run_ingest_failed", "run=%s %s: %s %s", run_id, what, rpc_code_name(code), msg);
    else if (resp->payload_case == NORN__V1__INGEST_RESPONSE__PAYLOAD_ERROR && resp->error)
        log_info("run_event_refused", "run=%s %s: %s", run_id, what, resp->error->message);
    return resp;
}

/* OpenSession for the run (the server's own open, or the agent's `open`
 * event with its model and system prompt). 1 when the verdict is
 * TERMINATE. */
static int open_session(RunService *rs, const char *run_id, const char *session_id,
                        const char *agent_name, const char *agent_id, const char *task,
                        int guard_mode, const char *model, const char *system_prompt)
{
    Norn__V1__TaskDefinition td = NORN__V1__TASK_DEFINITION__INIT;
    td.description = (char *)task;
    Norn__V1__OpenSessionRequest open = NORN__V1__OPEN_SESSION_REQUEST__INIT;
    open.session_id = (char *)session_id;
    open.agent_name = (char *)agent_name;
    open.agent_id = (char *)agent_id;
    open.task = &td;
    open.guard_mode = (Norn__V1__GuardMode)guard_mode;
    if (model)
        open.model = (char *)model;
    if (system_prompt)
        open.system_prompt = (char *)system_prompt;
    Norn__V1__IngestRequest req = NORN__V1__INGEST_REQUEST__INIT;
    req.payload_case = NORN__V1__INGEST_REQUEST__PAYLOAD_OPEN;
    req.open = &open;
    Norn__V1__IngestResponse *resp = ingest(rs, &req, "open", run_id);
    int terminate = resp && resp->payload_case == NORN__V1__INGEST_RESPONSE__PAYLOAD_OPEN &&
                    resp->open && resp->open->verdict &&
                    resp->open->verdict->action == NORN__V1__ACTION__ACTION_TERMINATE;
    if (resp)
        protobuf_c_message_free_unpacked(&resp->base, NULL);
    return terminate;
}

/* Session.run_id: OpenSessionRequest has no field for it, so the run's
 * service writes it into the stored summary, which later commits keep. */
static void tag_session(RunService *rs, const char *session_id, const char *run_id)
{
    char err[320];
    if (session_service_set_run(rs->sessions, session_id, run_id, err, sizeof err) != RPC_OK)
        log_warn("run_session_tag_failed", "run=%s %s", run_id, err);
}

/* Completes the run's session when it is still active (the agent did not
 * send `complete`): COMPLETED for a run that succeeded, else TERMINATED
 * with the run's error as the reason. */
static void finish_session(RunService *rs, const char *run_id, const char *session_id,
                           int succeeded, const char *reason)
{
    Norn__V1__Session *s = NULL;
    if (store_session_get(rs->store, session_id, &s) != NORN_OK)
        return;
    int active = s->status == NORN__V1__SESSION_STATUS__SESSION_STATUS_ACTIVE;
    protobuf_c_message_free_unpacked(&s->base, NULL);
    if (!active)
        return;
    Norn__V1__CompleteSessionRequest c = NORN__V1__COMPLETE_SESSION_REQUEST__INIT;
    c.session_id = (char *)session_id;
    c.status = succeeded ? NORN__V1__SESSION_STATUS__SESSION_STATUS_COMPLETED
                         : NORN__V1__SESSION_STATUS__SESSION_STATUS_TERMINATED;
    if (!succeeded && reason)
        c.termination_reason = (char *)reason;
    Norn__V1__IngestRequest req = NORN__V1__INGEST_REQUEST__INIT;
    req.payload_case = NORN__V1__INGEST_REQUEST__PAYLOAD_COMPLETE;
    req.complete = &c;
    Norn__V1__IngestResponse *resp = ingest(rs, &req, "complete", run_id);
    if (resp)
        protobuf_c_message_free_unpacked(&resp->base, NULL);
}

/* ---- events → ingest -------------------------------------------------------- */

static Google__Protobuf__Struct *struct_from_json(json_t *obj, int depth);

static Google__Protobuf__Value *value_from_json(json_t *j, int depth)
{
    Google__Protobuf__Value *v = msg_alloc(sizeof *v);
    google__protobuf__value__init(v);
    switch (json_typeof(j)) {
    case JSON_OBJECT:
        v->kind_case = GOOGLE__PROTOBUF__VALUE__KIND_STRUCT_VALUE;
        v->struct_value = struct_from_json(j, depth + 1);
        break;
    case JSON_ARRAY: {
        v->kind_case = GOOGLE__PROTOBUF__VALUE__KIND_LIST_VALUE;
        Google__Protobuf__ListValue *l = msg_alloc(sizeof *l);
        google__protobuf__list_value__init(l);
        size_t n = depth < MAX_JSON_DEPTH ? json_array_size(j) : 0;
        if (n)
            l->values = msg_alloc(n * sizeof *l->values);
        for (size_t i = 0; i < n; i++)
            l->values[l->n_values++] = value_from_json(json_array_get(j, i), depth + 1);
        v->list_value = l;
        break;
    }
    case JSON_STRING:
        v->kind_case = GOOGLE__PROTOBUF__VALUE__KIND_STRING_VALUE;
        v->string_value = msg_strdup(json_string_value(j));
        break;
    case JSON_INTEGER:
    case JSON_REAL:
        v->kind_case = GOOGLE__PROTOBUF__VALUE__KIND_NUMBER_VALUE;
        v->number_value = json_number_value(j);
        break;
    case JSON_TRUE:
    case JSON_FALSE:
        v->kind_case = GOOGLE__PROTOBUF__VALUE__KIND_BOOL_VALUE;
        v->bool_value = json_is_true(j);
        break;
    default:
        v->kind_case = GOOGLE__PROTOBUF__VALUE__KIND_NULL_VALUE;
        v->null_value = GOOGLE__PROTOBUF__NULL_VALUE__NULL_VALUE;
        break;
    }
    return v;
}

/* Deeper than MAX_JSON_DEPTH, objects and arrays are cut off empty (the
 * events line is at most 1 MiB, so the width is bounded already). */
static Google__Protobuf__Struct *struct_from_json(json_t *obj, int depth)
{
    Google__Protobuf__Struct *s = msg_alloc(sizeof *s);
    google__protobuf__struct__init(s);
    size_t n = depth < MAX_JSON_DEPTH ? json_object_size(obj) : 0;
    if (!n)
        return s;
    s->fields = msg_alloc(n * sizeof *s->fields);
    const char *key;
    json_t *val;
    json_object_foreach(obj, key, val)
    {
        if (s->n_fields == n)
            break;
        Google__Protobuf__Struct__FieldsEntry *e = msg_alloc(sizeof *e);
        google__protobuf__struct__fields_entry__init(e);
        e->key = msg_strdup(key);
        e->value = value_from_json(val, depth + 1);
        s->fields[s->n_fields++] = e;
    }
    return s;
}

static Google__Protobuf__Struct *tool_input_struct(const char *json)
{
    json_error_t jerr;
    json_t *root = json ? json_loads(json, JSON_DECODE_ANY, &jerr) : NULL;
    Google__Protobuf__Struct *s = NULL;
    if (root && json_is_object(root))
        s = struct_from_json(root, 0);
    else {
        s = msg_alloc(sizeof *s);
        google__protobuf__struct__init(s);
    }
    json_decref(root);
    return s;
}

static int verdict_terminates(const Norn__V1__StepVerdict *v)
{
    return v && v->action == NORN__V1__ACTION__ACTION_TERMINATE;
}

/* What an event needs of its run, copied under the lock. */
typedef struct EventRun {
    char session_id[ID_MAX_LEN + 1];
    char agent_id[ID_MAX_LEN + 1];
    char *agent_name, *task;
    int guard_mode;
} EventRun;

static int on_event(void *ud, const char *run_id, const ExecEvent *ev)
{
    RunService *rs = ud;
    EventRun er;
    pthread_mutex_lock(&rs->mu);
    LiveRun **p = find_live(rs, run_id);
    if (!p) {
        pthread_mutex_unlock(&rs->mu);
        return 0; /* a venv build: no session */
    }
    LiveRun *r = *p;
    memcpy(er.session_id, r->session_id, sizeof er.session_id);
    memcpy(er.agent_id, r->agent_id, sizeof er.agent_id);
    er.agent_name = msg_strdup(r->agent_name);
    er.task = msg_strdup(r->task);
    er.guard_mode = r->guard_mode;
    pthread_mutex_unlock(&rs->mu);

    int terminate = 0;
    Norn__V1__IngestRequest req = NORN__V1__INGEST_REQUEST__INIT;
    Norn__V1__IngestResponse *resp = NULL;
    switch (ev->kind) {
    case EXEC_EVENT_OPEN:
        terminate =
            open_session(rs, run_id, er.session_id, ev->agent_name ? ev->agent_name : er.agent_name,
                         er.agent_id, er.task, er.guard_mode, ev->model, ev->system_prompt);
        break;
    case EXEC_EVENT_BEGIN_STEP: {
        Norn__V1__BeginStepRequest b = NORN__V1__BEGIN_STEP_REQUEST__INIT;
        b.session_id = er.session_id;
        b.tool_use_id = (char *)ev->tool_use_id;
        b.tool_name = (char *)ev->tool_name;
        b.tool_input = tool_input_struct(ev->tool_input_json);
        b.step_number = ev->step_number;
        req.payload_case = NORN__V1__INGEST_REQUEST__PAYLOAD_BEGIN_STEP;
        req.begin_step = &b;
        resp = ingest(rs, &req, "begin_step", run_id);
        protobuf_c_message_free_unpacked(&b.tool_input->base, NULL);
        terminate = resp && resp->payload_case == NORN__V1__INGEST_RESPONSE__PAYLOAD_BEGIN_STEP &&
                    verdict_terminates(resp->begin_step->verdict);
        break;
    }
    case EXEC_EVENT_END_STEP: {
        Norn__V1__EndStepRequest e = NORN__V1__END_STEP_REQUEST__INIT;
        e.session_id = er.session_id;
        e.tool_use_id = (char *)ev->tool_use_id;
        if (ev->result_text)
            e.result_text = (char *)ev->result_text;
        e.result_status = (Norn__V1__ResultStatus)ev->result_status;
        e.execution_time_ms = ev->execution_time_ms;
        req.payload_case = NORN__V1__INGEST_REQUEST__PAYLOAD_END_STEP;
        req.end_step = &e;
        resp = ingest(rs, &req, "end_step", run_id);
        terminate = resp && resp->payload_case == NORN__V1__INGEST_RESPONSE__PAYLOAD_END_STEP &&
                    verdict_terminates(resp->end_step->verdict);
        break;
    }
    case EXEC_EVENT_COMPLETE: {
        Norn__V1__CompleteSessionRequest c = NORN__V1__COMPLETE_SESSION_REQUEST__INIT;
        Norn__V1__TokenUsage tu = NORN__V1__TOKEN_USAGE__INIT;
        c.session_id = er.session_id;
        c.status = (Norn__V1__SessionStatus)ev->session_status;
        if (ev->final_text)
            c.final_text = (char *)ev->final_text;
        if (ev->termination_reason)
            c.termination_reason = (char *)ev->termination_reason;
        if (ev->input_tokens || ev->output_tokens) {
            tu.input_tokens = ev->input_tokens;
            tu.output_tokens = ev->output_tokens;
            tu.total_tokens = ev->input_tokens + ev->output_tokens;
            c.token_usage = &tu;
        }
        req.payload_case = NORN__V1__INGEST_REQUEST__PAYLOAD_COMPLETE;
        req.complete = &c;
        resp = ingest(rs, &req, "complete", run_id);
        break;
    }
    case EXEC_EVENT_ERROR:
        log_info("run_event_error", "run=%s %s", run_id, ev->error ? ev->error : "bad line");
        break;
    }
    if (resp)
        protobuf_c_message_free_unpacked(&resp->base, NULL);
    free(er.agent_name);
    free(er.task);
    if (terminate)
        log_info("run_guard_terminate", "run=%s session=%s", run_id, er.session_id);
    return terminate;
}

/* ---- run state changes ------------------------------------------------------ */

static void edit_run_started(Norn__V1__Run *run, void *arg)
{
    (void)arg;
    run->state = NORN__V1__RUN_STATE__RUN_STATE_RUNNING;
    if (!run->started_at)
        run->started_at = msg_timestamp(now_micros());
}

typedef struct RunEnd {
    int state;
    int has_exit;
    int exit_code;
    int term_signal;
    const char *log_tail;
    const char *error;
} RunEnd;

static void edit_run_ended(Norn__V1__Run *run, void *arg)
{
    const RunEnd *e = arg;
    run->state = (Norn__V1__RunState)e->state;
    if (e->has_exit) {
        run->optional_exit_code_case = NORN__V1__RUN__OPTIONAL_EXIT_CODE_EXIT_CODE;
        run->exit_code = e->exit_code;
    }
    run->term_signal = e->term_signal;
    if (run->ended_at)
        protobuf_c_message_free_unpacked(&run->ended_at->base, NULL);
    run->ended_at = msg_timestamp(now_micros());
    if (e->log_tail)
        msg_set_str(&run->log_tail, e->log_tail);
    if (e->error)
        msg_set_str(&run->error, e->error);
}

/* A run's workspace is its scratch copy of the agent's files: what a run
 * leaves that is worth keeping (its log tail, its session) is in the store.
 * Removed when the run ends, so runs do not fill the disk. */
static void remove_workspace(RunService *rs, const char *run_id)
{
    char dir[PATH_CAP];
    if (path_join(dir, sizeof dir, rs->data_dir, "runs", run_id) == 0 &&
        remove_tree_at(AT_FDCWD, dir) != 0)
        log_warn("run_workspace_left", "run=%s dir=%s error=\"%s\"", run_id, dir, strerror(errno));
}

/* At start-up no run is live: every workspace left is from runs a stopped
 * server lost (marked FAILED by recover_lost_runs). */
static void remove_all_workspaces(RunService *rs)
{
    char runs[PATH_CAP];
    if (path_join(runs, sizeof runs, rs->data_dir, "runs", NULL))
        return;
    DIR *d = opendir(runs);
    if (!d)
        return;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        if (remove_tree_at(dirfd(d), e->d_name) != 0)
            log_warn("run_workspace_left", "dir=%s/%s error=\"%s\"", runs, e->d_name,
                     strerror(errno));
    }
    closedir(d);
}

/* Records a run's final state, completes its session (opening it first if
 * the agent never started) and counts it out of its agent. Takes and frees
 * `r`, which is no longer in the live list. */
static void finish_run(RunService *rs, LiveRun *r, const RunEnd *end)
{
    /* First: whoever sees the run ended finds its workspace gone. */
    remove_workspace(rs, r->run_id);
    update_run(rs, r->run_id, edit_run_ended, (void *)end);
    if (!r->session_opened) {
        open_session(rs, r->run_id, r->session_id, r->agent_name, r->agent_id, r->task,
                     r->guard_mode, NULL, NULL);
        tag_session(rs, r->session_id, r->run_id);
    }
    /* Also when the agent sent `complete`: ingest may have refused it (a
     * bad status, an oversized text), and finish_session leaves a session
     * that is no longer active alone. */
    finish_session(rs, r->run_id, r->session_id,
                   end->state == NORN__V1__RUN_STATE__RUN_STATE_SUCCEEDED, end->error);
    /* Under the lock, so it cannot overtake RunAgent's RUNNING write. */
    pthread_mutex_lock(&rs->mu);
    if (active_add(rs, r->agent_id, -1))
        update_agent(rs, r->agent_id, edit_agent_idle, NULL);
    pthread_mutex_unlock(&rs->mu);
    log_info("run_ended", "run=%s state=%d", r->run_id, end->state);
    free_live(r);
}

static void fail_unstarted(RunService *rs, LiveRun *r, const char *error)
{
    RunEnd end = {.state = NORN__V1__RUN_STATE__RUN_STATE_FAILED, .error = error};
    finish_run(rs, r, &end);
}

/* The agent's directories. */
static int agent_dir(RunService *rs, const char *agent_id, const char *leaf, char *out, size_t cap)
{
    char agents[PATH_CAP];
    return path_join(agents, sizeof agents, rs->data_dir, "agents", agent_id) ||
           path_join(out, cap, agents, leaf, NULL);
}

/* An unprivileged run user must pass through the agent's directory (which
 * the importer creates private) to read its files and venv; it may never
 * list it. */
static int open_agent_dir(RunService *rs, const char *agent_id, char *err, size_t errlen)
{
    char home[PATH_CAP], src[PATH_CAP];
    if (rs->run_uid < 0)
        return 0;
    /* src: the checkout's files are 0644 and directories 0755 already; only
     * its top directory is private. */
    if (agent_dir(rs, agent_id, "", home, sizeof home) || chmod(home, 0711) != 0 ||
        agent_dir(rs, agent_id, "src", src, sizeof src) || chmod(src, 0755) != 0) {
        snprintf(err, errlen, "cannot open the agent's directory to uid %ld: %s", rs->run_uid,
                 strerror(errno));
        return NORN_ERR_INTERNAL;
    }
    return 0;
}

/* Submits the agent process of a run. Called with mu held. 0, or the
 * executor's error with its message in err. */
static int submit_agent(RunService *rs, LiveRun *r, char *err, size_t errlen)
{
    char src[PATH_CAP], venv_python[PATH_CAP], workdir[PATH_CAP];
    if (agent_dir(rs, r->agent_id, "src", src, sizeof src) ||
        agent_dir(rs, r->agent_id, "venv/bin/python", venv_python, sizeof venv_python) ||
        path_join(workdir, sizeof workdir, rs->data_dir, "runs", r->run_id)) {
        snprintf(err, errlen, "the data directory's path is too long");
        return NORN_ERR_INVALID;
    }
    if (open_agent_dir(rs, r->agent_id, err, errlen))
        return NORN_ERR_INTERNAL;
    if (mkdir(workdir, 0700) != 0 && errno != EEXIST) {
        snprintf(err, errlen, "cannot create the run's workspace %.200s: %s", workdir,
                 strerror(errno));
        return NORN_ERR_INTERNAL;
    }
    if (rs->run_uid >= 0 && chown(workdir, (uid_t)rs->run_uid, (gid_t)rs->run_gid) != 0) {
        snprintf(err, errlen, "cannot hand the run's workspace to uid %ld: %s", rs->run_uid,
                 strerror(errno));
        return NORN_ERR_INTERNAL;
    }
    const char *argv[] = {"/bin/sh",   "-c",         run_script,
                          "norn-run",  src,          r->subdir[0] ? r->subdir : ".",
                          venv_python, r->main_file, NULL};
    size_t task_len = strlen(r->task) + 16;
    char *env_task = msg_alloc(task_len);
    snprintf(env_task, task_len, "NORN_TASK=%s", r->task);
    char env_session[ID_MAX_LEN + 32], env_endpoint[sizeof rs->endpoint + 32];
    snprintf(env_session, sizeof env_session, "NORN_SESSION_ID=%s", r->session_id);
    snprintf(env_endpoint, sizeof env_endpoint, "NORN_ENDPOINT=%s", rs->endpoint);
    const char *env[] = {env_session, env_endpoint, env_task, "PYTHONUNBUFFERED=1", NULL};
    RunSpec spec = {
        .run_id = r->run_id,
        .argv = argv,
        .workdir = workdir,
        .env = env,
        .stdin_text = r->task,
        .timeout_ms = r->timeout_s * 1000u,
    };
    int rc = executor_submit(rs->ex, &spec, err, errlen);
    free(env_task);
    if (rc == NORN_OK)
        r->phase = PHASE_AGENT;
    return rc;
}

/* Builds the agent's venv as a run of its own. Called with mu held. */
static int submit_venv(RunService *rs, const char *agent_id, const char *subdir, char *err,
                       size_t errlen)
{
    char venv[PATH_CAP], home[PATH_CAP], req[PATH_CAP], sub[PATH_CAP];
    if (agent_dir(rs, agent_id, "venv", venv, sizeof venv) ||
        agent_dir(rs, agent_id, "", home, sizeof home) ||
        agent_dir(rs, agent_id, "src", sub, sizeof sub) ||
        path_join(req, sizeof req, sub, subdir[0] ? subdir : ".", "requirements.txt")) {
        snprintf(err, errlen, "the data directory's path is too long");
        return NORN_ERR_INVALID;
    }
    if (!file_exists(req) &&
        (path_join(req, sizeof req, sub, "requirements.txt", NULL) != 0 || !file_exists(req)))
        req[0] = '\0';
    if (open_agent_dir(rs, agent_id, err, errlen))
        return NORN_ERR_INTERNAL;
    if (rs->run_uid >= 0) {
        /* The venv is written by the build's unprivileged user. */
        if ((mkdir(venv, 0755) != 0 && errno != EEXIST) ||
            chown(venv, (uid_t)rs->run_uid, (gid_t)rs->run_gid) != 0) {
            snprintf(err, errlen, "cannot prepare %.200s for uid %ld: %s", venv, rs->run_uid,
                     strerror(errno));
            return NORN_ERR_INTERNAL;
        }
    }
    const char *argv[EXEC_VENV_ARGC + 1];
    executor_venv_argv(rs->python, venv, req[0] ? req : NULL, argv);
    const char *env[PIP_ENV_COUNT + 1];
    size_t n_env = 0;
    char *env_buf[PIP_ENV_COUNT] = {0};
    for (size_t i = 0; i < PIP_ENV_COUNT; i++) {
        const char *v = getenv(pip_env_names[i]);
        if (!v || !*v || strlen(v) > 4096)
            continue;
        size_t len = strlen(pip_env_names[i]) + strlen(v) + 2;
        env_buf[i] = msg_alloc(len);
        snprintf(env_buf[i], len, "%s=%s", pip_env_names[i], v);
        env[n_env++] = env_buf[i];
    }
    env[n_env] = NULL;
    ExecutorConfig defaults;
    executor_config_defaults(&defaults);
    ExecLimits limits = defaults.limits;
    limits.address_space = 0; /* pip and compilers need more than an agent */
    VenvBuild *vb = msg_alloc(sizeof *vb);
    memset(vb, 0, sizeof *vb);
    char gen[ID_GEN_LEN + 1];
    id_generate(gen);
    snprintf(vb->exec_id, sizeof vb->exec_id, "venv-%s", gen);
    snprintf(vb->agent_id, sizeof vb->agent_id, "%s", agent_id);
    RunSpec spec = {
        .run_id = vb->exec_id,
        .argv = argv,
        .workdir = home,
        .env = env,
        .timeout_ms = VENV_TIMEOUT_MS,
        .limits = &limits,
    };
    int rc = executor_submit(rs->ex, &spec, err, errlen);
    for (size_t i = 0; i < PIP_ENV_COUNT; i++)
        free(env_buf[i]);
    if (rc != NORN_OK) {
        free(vb);
        return rc;
    }
    vb->next = rs->venvs;
    rs->venvs = vb;
    log_info("venv_build", "agent=%s requirements=%s", agent_id, req[0] ? req : "(none)");
    return NORN_OK;
}

static int venv_ready(RunService *rs, const char *agent_id)
{
    char marker[PATH_CAP];
    return agent_dir(rs, agent_id, "venv/" VENV_READY_MARKER, marker, sizeof marker) == 0 &&
           file_exists(marker);
}

/* INSTALL_FAILED findings on the agent: `detail` adds one (replacing an
 * older one); NULL removes them. */
static void edit_agent_install(Norn__V1__Agent *a, void *arg)
{
    const char *detail = arg;
    Norn__V1__DiscoveryReport *d = a->discovery;
    if (!d) {
        if (!detail)
            return;
        d = a->discovery = msg_alloc(sizeof *d);
        norn__v1__discovery_report__init(d);
    }
    size_t kept = 0;
    for (size_t i = 0; i < d->n_findings; i++) {
        if (strcmp(d->findings[i]->kind, "INSTALL_FAILED") == 0)
            protobuf_c_message_free_unpacked(&d->findings[i]->base, NULL);
        else
            d->findings[kept++] = d->findings[i];
    }
    d->n_findings = kept;
    if (!detail)
        return;
    Norn__V1__Finding *f = msg_alloc(sizeof *f);
    norn__v1__finding__init(f);
    f->kind = msg_strdup("INSTALL_FAILED");
    f->severity = NORN__V1__FINDING_SEVERITY__FINDING_SEVERITY_HIGH;
    f->file = msg_strdup("requirements.txt");
    f->detail = msg_strdup(detail);
    msg_append((void ***)&d->findings, &d->n_findings, f);
}

static void venv_done(RunService *rs, VenvBuild *vb, const ExecRunReport *rep)
{
    int ok = rep->state == EXEC_RUN_SUCCEEDED;
    int shutdown = rep->stop_reason == EXEC_STOP_SHUTDOWN;
    char detail[ERROR_LOG_CHARS * 4 + 300] = "";
    if (shutdown) {
        snprintf(detail, sizeof detail,
                 "the server shut down while the agent's Python environment was being built");
    } else if (ok) {
        char marker[PATH_CAP];
        FILE *f = agent_dir(rs, vb->agent_id, "venv/" VENV_READY_MARKER, marker, sizeof marker)
                      ? NULL
                      : fopen(marker, "w");
        ok = f != NULL;
        if (f)
            fclose(f);
        if (!ok)
            snprintf(detail, sizeof detail, "cannot mark the environment ready: %s",
                     strerror(errno));
    } else {
        char tail[ERROR_LOG_CHARS * 4 + 1];
        const char *log = rep->log_tail ? rep->log_tail : "";
        size_t len = strlen(log);
        const char *from = len > ERROR_LOG_CHARS ? log + len - ERROR_LOG_CHARS : log;
        while (from > log && ((unsigned char)*from & 0xc0) == 0x80)
            from--; /* never start inside a UTF-8 sequence */
        msg_utf8_cut(tail, sizeof tail, from, ERROR_LOG_CHARS);
        snprintf(detail, sizeof detail, "installing the agent's Python environment failed (%s): %s",
                 rep->error ? rep->error : "non-zero exit", tail);
    }
    if (!shutdown)
        update_agent(rs, vb->agent_id, edit_agent_install, ok ? NULL : detail);
    log_info("venv_built", "agent=%s ok=%d", vb->agent_id, ok);

    /* The runs that waited: submitted now, or failed with the reason. */
    LiveRun *failed = NULL;
    pthread_mutex_lock(&rs->mu);
    for (LiveRun **p = &rs->live; *p;) {
        LiveRun *r = *p;
        if (r->phase != PHASE_WAIT_VENV || strcmp(r->agent_id, vb->agent_id) != 0) {
            p = &r->next;
            continue;
        }
        char err[300];
        if (ok && submit_agent(rs, r, err, sizeof err) == NORN_OK) {
            p = &r->next;
            continue;
        }
        if (ok) {
            char why[400];
            snprintf(why, sizeof why, "cannot start the run: %s", err);
            snprintf(detail, sizeof detail, "%s", why);
        }
        *p = r->next;
        r->next = failed;
        failed = r;
    }
    pthread_mutex_unlock(&rs->mu);
    while (failed) {
        LiveRun *r = failed;
        failed = r->next;
        fail_unstarted(rs, r, detail);
    }
}

static void on_state(void *ud, const ExecRunReport *rep)
{
    RunService *rs = ud;
    pthread_mutex_lock(&rs->mu);
    VenvBuild **vp = find_venv(rs, rep->run_id, NULL);
    if (vp) {
        VenvBuild *vb = NULL;
        if (rep->state != EXEC_RUN_RUNNING) {
            vb = *vp;
            *vp = vb->next;
        }
        pthread_mutex_unlock(&rs->mu);
        if (vb) {
            venv_done(rs, vb, rep);
            free(vb);
        }
        return;
    }
    LiveRun **p = find_live(rs, rep->run_id);
    if (!p) {
        pthread_mutex_unlock(&rs->mu);
        log_warn("run_unknown", "run=%s state=%d (no live run)", rep->run_id, (int)rep->state);
        return;
    }
    LiveRun *r = *p;
    if (rep->state == EXEC_RUN_RUNNING) {
        r->session_opened = 1;
        char run_id[ID_MAX_LEN + 1], session_id[ID_MAX_LEN + 1], agent_id[ID_MAX_LEN + 1];
        memcpy(run_id, r->run_id, sizeof run_id);
        memcpy(session_id, r->session_id, sizeof session_id);
        memcpy(agent_id, r->agent_id, sizeof agent_id);
        char *name = msg_strdup(r->agent_name), *task = msg_strdup(r->task);
        int guard = r->guard_mode;
        pthread_mutex_unlock(&rs->mu);
        update_run(rs, run_id, edit_run_started, NULL);
        int terminate =
            open_session(rs, run_id, session_id, name, agent_id, task, guard, NULL, NULL);
        tag_session(rs, session_id, run_id);
        free(name);
        free(task);
        if (terminate)
            executor_cancel(rs->ex, run_id);
        return;
    }
    *p = r->next;
    pthread_mutex_unlock(&rs->mu);
    RunEnd end = {
        .state = (int)rep->state,
        .has_exit = rep->exited,
        .exit_code = rep->exit_code,
        .term_signal = rep->term_signal,
        .log_tail = rep->log_tail,
        .error = rep->error,
    };
    if (rep->stop_reason == EXEC_STOP_SHUTDOWN) {
        end.state = NORN__V1__RUN_STATE__RUN_STATE_FAILED;
        end.error = "the server shut down while the run was running";
    }
    finish_run(rs, r, &end);
}

/* ---- restart policy --------------------------------------------------------- */

typedef struct Lost {
    Norn__V1__Run **runs;
    size_t n;
} Lost;

static int lost_visit(void *arg, Norn__V1__Run *run)
{
    Lost *l = arg;
    if (run->state == NORN__V1__RUN_STATE__RUN_STATE_QUEUED ||
        run->state == NORN__V1__RUN_STATE__RUN_STATE_RUNNING)
        msg_append((void ***)&l->runs, &l->n, run);
    else
        protobuf_c_message_free_unpacked(&run->base, NULL);
    return 1;
}

static void recover_lost_runs(RunService *rs)
{
    Lost lost = {0};
    uint8_t last[KEY_MAX];
    size_t last_len = 0;
    int more = 1;
    StoreRunQuery q = {.max_scan = 10000};
    while (more) {
        if (store_runs_scan(rs->store, &q, lost_visit, &lost, last, &last_len, &more) != NORN_OK)
            break;
        q.resume = last;
        q.resume_len = last_len;
    }
    for (size_t i = 0; i < lost.n; i++) {
        Norn__V1__Run *run = lost.runs[i];
        char why[200];
        snprintf(why, sizeof why, "lost: the server stopped while the run was %s; restarted",
                 run->state == NORN__V1__RUN_STATE__RUN_STATE_RUNNING ? "running" : "queued");
        RunEnd end = {.state = NORN__V1__RUN_STATE__RUN_STATE_FAILED, .error = why};
        update_run(rs, run->run_id, edit_run_ended, &end);
        Norn__V1__Session *s = NULL;
        if (store_session_get(rs->store, run->session_id, &s) == NORN_OK) {
            protobuf_c_message_free_unpacked(&s->base, NULL);
            finish_session(rs, run->run_id, run->session_id, 0, why);
        }
        Norn__V1__Agent *a = NULL;
        if (store_agent_get(rs->store, run->agent_id, &a) == NORN_OK) {
            if (a->status == NORN__V1__AGENT_STATUS__AGENT_STATUS_RUNNING)
                update_agent(rs, run->agent_id, edit_agent_idle, NULL);
            protobuf_c_message_free_unpacked(&a->base, NULL);
        }
        log_warn("run_lost", "run=%s agent=%s marked FAILED", run->run_id, run->agent_id);
        protobuf_c_message_free_unpacked(&run->base, NULL);
    }
    free(lost.runs);
}

/* ---- RPC handlers --------------------------------------------------------------- */

static RpcCode bad_id(RpcCall *call, const char *field)
{
    return rpc_fail(call, RPC_INVALID_ARGUMENT, "%s: must match [A-Za-z0-9._:-]{1,%d}", field,
                    ID_MAX_LEN);
}

RpcCode run_service_run_agent(RunService *rs, RpcCall *call, const Norn__V1__RunAgentRequest *req,
                              Norn__V1__RunAgentResponse *resp)
{
    if (!id_valid(req->agent_id))
        return bad_id(call, "agent_id");
    if (req->task && strlen(req->task->description) > MAX_TASK)
        return rpc_fail(call, RPC_INVALID_ARGUMENT, "task.description: at most %d bytes", MAX_TASK);
    if (req->timeout_seconds > MAX_TIMEOUT_S)
        return rpc_fail(call, RPC_INVALID_ARGUMENT, "timeout_seconds: at most %u", MAX_TIMEOUT_S);
    if ((int)req->guard_mode < 0 || req->guard_mode > NORN__V1__GUARD_MODE__GUARD_MODE_ENFORCE)
        return rpc_fail(call, RPC_INVALID_ARGUMENT, "guard_mode: unknown value %d",
                        (int)req->guard_mode);
    Norn__V1__Agent *a = NULL;
    int rc = store_agent_get(rs->store, req->agent_id, &a);
    if (rc == NORN_ERR_NOT_FOUND)
        return rpc_fail(call, RPC_NOT_FOUND, "agent_id: no agent '%s'", req->agent_id);
    if (rc != NORN_OK)
        return rpc_fail(call, norn_error_to_rpc(rc), "storage: cannot read the agent");
    rpc_call_adopt(call, &a->base);
    if (a->source != NORN__V1__AGENT_SOURCE__AGENT_SOURCE_GIT || !a->main_file[0])
        return rpc_fail(call, RPC_FAILED_PRECONDITION,
                        "agent '%s' cannot be run: only agents imported from git with an entry "
                        "file can",
                        a->agent_id);
    if (!relative_path_ok(a->main_file) || !relative_path_ok(a->subdir))
        return rpc_fail(call, RPC_FAILED_PRECONDITION,
                        "agent '%s' cannot be run: its entry file leaves its directory",
                        a->agent_id);
    char src[PATH_CAP], entry[PATH_CAP];
    if (agent_dir(rs, a->agent_id, "src", src, sizeof src) ||
        path_join(entry, sizeof entry, src, a->subdir[0] ? a->subdir : ".", a->main_file) ||
        !file_exists(entry))
        return rpc_fail(call, RPC_FAILED_PRECONDITION,
                        "agent '%s' cannot be run: its entry file %s is missing", a->agent_id,
                        a->main_file);

    Norn__V1__Config cfg;
    config_get(rs->config, &cfg);
    const char *task =
        req->task && req->task->description[0] ? req->task->description : a->task_description;
    unsigned timeout_s = req->timeout_seconds ? req->timeout_seconds : cfg.run_timeout_seconds;
    if (!timeout_s)
        timeout_s = 300;
    int guard = req->guard_mode ? (int)req->guard_mode : (int)cfg.guard_mode;

    LiveRun *r = msg_alloc(sizeof *r);
    memset(r, 0, sizeof *r);
    char gen[ID_GEN_LEN + 1];
    id_generate(gen);
    snprintf(r->run_id, sizeof r->run_id, "run-%s", gen);
    id_generate(gen);
    snprintf(r->session_id, sizeof r->session_id, "%s", gen);
    snprintf(r->agent_id, sizeof r->agent_id, "%s", a->agent_id);
    r->agent_name = msg_strdup(a->name);
    r->task = msg_strdup(task);
    r->subdir = msg_strdup(a->subdir);
    r->main_file = msg_strdup(a->main_file);
    r->guard_mode = guard;
    r->timeout_s = timeout_s;

    Norn__V1__Run *run = msg_alloc(sizeof *run);
    norn__v1__run__init(run);
    rpc_call_adopt(call, &run->base);
    run->run_id = msg_strdup(r->run_id);
    run->agent_id = msg_strdup(r->agent_id);
    run->session_id = msg_strdup(r->session_id);
    run->state = NORN__V1__RUN_STATE__RUN_STATE_QUEUED;
    uint64_t queued = now_micros();
    run->queued_at = msg_timestamp(queued);
    run->task = msg_alloc(sizeof *run->task);
    norn__v1__task_definition__init(run->task);
    if (req->task) {
        run->task->task_id = msg_strdup(req->task->task_id);
        run->task->success_criteria = msg_strdup(req->task->success_criteria);
        run->task->max_steps = req->task->max_steps;
    }
    run->task->description = msg_strdup(task);
    run->timeout_seconds = timeout_s;
    run->guard_mode = (Norn__V1__GuardMode)guard;

    char err[300];
    pthread_mutex_lock(&rs->mu);
    int waits = 0;
    if (!venv_ready(rs, a->agent_id)) {
        waits = 1;
        rc = find_venv(rs, NULL, a->agent_id)
                 ? NORN_OK
                 : submit_venv(rs, a->agent_id, a->subdir, err, sizeof err);
    } else {
        rc = submit_agent(rs, r, err, sizeof err);
    }
    if (rc == NORN_OK) {
        StoreTxn *t = store_txn_begin(rs->store);
        store_txn_put_run(t, run);
        rc = store_txn_commit(t, err, sizeof err);
        if (rc != NORN_OK && !waits)
            executor_cancel(rs->ex, r->run_id); /* its end finds no live run */
    }
    if (rc != NORN_OK) {
        pthread_mutex_unlock(&rs->mu);
        free_live(r);
        if (rc == NORN_ERR_EXHAUSTED)
            return rpc_fail(call, RPC_RESOURCE_EXHAUSTED, "run queue is full: %s", err);
        return rpc_fail(call, norn_error_to_rpc(rc), "cannot queue the run: %s", err);
    }
    r->phase = waits ? PHASE_WAIT_VENV : PHASE_AGENT;
    r->next = rs->live;
    rs->live = r;
    active_add(rs, a->agent_id, +1);
    /* Written for every run (last_run changes each time), under the lock
     * so a run that ends at once cannot write its idle status first. */
    LastRun lr = {run->run_id, queued};
    update_agent(rs, a->agent_id, edit_agent_started, &lr);
    pthread_mutex_unlock(&rs->mu);
    log_info("run_queued", "run=%s agent=%s session=%s venv_wait=%d", run->run_id, run->agent_id,
             run->session_id, waits);
    resp->run = run;
    return RPC_OK;
}

static RpcCode load_run(RunService *rs, RpcCall *call, const char *run_id, Norn__V1__Run **out)
{
    if (!id_valid(run_id))
        return bad_id(call, "run_id");
    int rc = store_run_get(rs->store, run_id, out);
    if (rc == NORN_ERR_NOT_FOUND)
        return rpc_fail(call, RPC_NOT_FOUND, "run_id: no run '%s'", run_id);
    if (rc != NORN_OK)
        return rpc_fail(call, norn_error_to_rpc(rc), "storage: cannot read the run");
    rpc_call_adopt(call, &(*out)->base);
    return RPC_OK;
}

RpcCode run_service_get_run(RunService *rs, RpcCall *call, const Norn__V1__GetRunRequest *req,
                            Norn__V1__GetRunResponse *resp)
{
    return load_run(rs, call, req->run_id, &resp->run);
}

typedef struct RunPage {
    RpcCall *call;
    Norn__V1__ListRunsResponse *resp;
    size_t want;
} RunPage;

static int run_page_visit(void *arg, Norn__V1__Run *run)
{
    RunPage *p = arg;
    rpc_call_adopt(p->call, &run->base);
    p->resp->runs[p->resp->n_runs++] = run;
    return p->resp->n_runs < p->want;
}

RpcCode run_service_list_runs(RunService *rs, RpcCall *call, const Norn__V1__ListRunsRequest *req,
                              Norn__V1__ListRunsResponse *resp)
{
    if (req->page_size > MAX_PAGE)
        return rpc_fail(call, RPC_INVALID_ARGUMENT, "page_size: at most %d", MAX_PAGE);
    if (req->agent_id[0] && !id_valid(req->agent_id))
        return bad_id(call, "agent_id");
    if ((int)req->state < 0 || req->state > NORN__V1__RUN_STATE__RUN_STATE_CANCELLED)
        return rpc_fail(call, RPC_INVALID_ARGUMENT, "state: unknown value %d", (int)req->state);
    uint8_t tok[KEY_MAX + 2];
    size_t tok_len = 0;
    if (req->page_token[0] && (token_decode(req->page_token, tok, sizeof tok, &tok_len) != 0 ||
                               tok_len < 2 || tok[0] != TOKEN_VERSION || tok[1] != KEY_RUN_BY_TIME))
        return rpc_fail(call, RPC_INVALID_ARGUMENT, "page_token: not a token of ListRuns");
    RunPage p = {call, resp, req->page_size ? req->page_size : DEFAULT_PAGE};
    resp->runs = rpc_call_alloc(call, p.want * sizeof *resp->runs);
    StoreRunQuery q = {
        .agent_id = req->agent_id,
        .state = (int)req->state,
        .resume = tok_len ? tok + 1 : NULL,
        .resume_len = tok_len ? tok_len - 1 : 0,
        .max_scan = p.want * 20 + 200,
    };
    uint8_t last[KEY_MAX];
    size_t last_len = 0;
    int more = 0;
    int rc = store_runs_scan(rs->store, &q, run_page_visit, &p, last, &last_len, &more);
    if (rc != NORN_OK)
        return rpc_fail(call, norn_error_to_rpc(rc), "storage: cannot list runs");
    if (more && last_len) {
        uint8_t next[KEY_MAX + 1];
        next[0] = TOKEN_VERSION;
        memcpy(next + 1, last, last_len);
        size_t cap = (last_len + 1) * 2 + 8;
        char *s = rpc_call_alloc(call, cap);
        token_encode(next, last_len + 1, s, cap);
        resp->next_page_token = s;
    }
    return RPC_OK;
}

static int run_finished(const Norn__V1__Run *run)
{
    return run->state != NORN__V1__RUN_STATE__RUN_STATE_QUEUED &&
           run->state != NORN__V1__RUN_STATE__RUN_STATE_RUNNING;
}

RpcCode run_service_cancel_run(RunService *rs, RpcCall *call, const Norn__V1__CancelRunRequest *req,
                               Norn__V1__CancelRunResponse *resp)
{
    Norn__V1__Run *run = NULL;
    RpcCode code = load_run(rs, call, req->run_id, &run);
    if (code != RPC_OK)
        return code;
    if (run_finished(run))
        return rpc_fail(call, RPC_FAILED_PRECONDITION, "run '%s' has already ended", req->run_id);
    pthread_mutex_lock(&rs->mu);
    LiveRun **p = find_live(rs, req->run_id);
    LiveRun *waiting = NULL;
    int in_executor = 0;
    if (p && (*p)->phase == PHASE_WAIT_VENV) {
        waiting = *p;
        *p = waiting->next;
    } else if (p) {
        in_executor = executor_cancel(rs->ex, req->run_id) == NORN_OK;
    }
    pthread_mutex_unlock(&rs->mu);
    if (!waiting && !in_executor)
        return rpc_fail(call, RPC_FAILED_PRECONDITION, "run '%s' has already ended", req->run_id);
    if (waiting) {
        RunEnd end = {.state = NORN__V1__RUN_STATE__RUN_STATE_CANCELLED,
                      .error = "cancelled before it started"};
        finish_run(rs, waiting, &end);
    }
    /* A queued run ends at once; a running one once its group is gone. */
    Norn__V1__Run *now = NULL;
    if (store_run_get(rs->store, req->run_id, &now) == NORN_OK) {
        rpc_call_adopt(call, &now->base);
        resp->run = now;
    } else {
        resp->run = run;
    }
    return RPC_OK;
}

/* ---- lifecycle ---------------------------------------------------------------- */

static int make_dir(const char *path, mode_t mode, char *err, size_t errlen)
{
    if (mkdir(path, mode) != 0 && errno != EEXIST) {
        snprintf(err, errlen, "cannot create %s: %s", path, strerror(errno));
        return -1;
    }
    /* Unprivileged runs must be able to pass through (never list). */
    if (chmod(path, mode) != 0) {
        snprintf(err, errlen, "cannot set the mode of %s: %s", path, strerror(errno));
        return -1;
    }
    return 0;
}

RunService *run_service_new(const RunServiceOptions *o, Store *store, ConfigHolder *config,
                            SessionService *sessions, char *err, size_t errlen)
{
    if (!o->data_dir || !o->wrapper_path) {
        snprintf(err, errlen, "runs: data_dir and wrapper_path are required");
        return NULL;
    }
    RunService *rs = msg_alloc(sizeof *rs);
    memset(rs, 0, sizeof *rs);
    rs->store = store;
    rs->config = config;
    rs->sessions = sessions;
    rs->data_dir = msg_strdup(o->data_dir);
    rs->python = msg_strdup(o->python && *o->python ? o->python : DEFAULT_PYTHON);
    rs->run_uid = o->run_uid;
    rs->run_gid = o->run_gid;
    pthread_mutex_init(&rs->mu, NULL);
    snprintf(rs->endpoint, sizeof rs->endpoint, "127.0.0.1:0");

    mode_t dir_mode = o->run_uid >= 0 ? 0711 : 0700;
    char agents[PATH_CAP], runs[PATH_CAP];
    if (path_join(agents, sizeof agents, o->data_dir, "agents", NULL) ||
        path_join(runs, sizeof runs, o->data_dir, "runs", NULL)) {
        snprintf(err, errlen, "runs: the data directory's path is too long");
        run_service_free(rs);
        return NULL;
    }
    if ((o->run_uid >= 0 && make_dir(o->data_dir, dir_mode, err, errlen)) ||
        make_dir(agents, dir_mode, err, errlen) || make_dir(runs, dir_mode, err, errlen)) {
        run_service_free(rs);
        return NULL;
    }
    recover_lost_runs(rs);
    remove_all_workspaces(rs);

    Norn__V1__Config cfg;
    config_get(config, &cfg);
    ExecutorConfig ec;
    executor_config_defaults(&ec);
    ec.wrapper_path = o->wrapper_path;
    ec.slots = o->slots ? o->slots : cfg.executor_slots;
    ec.queue_capacity = o->queue ? o->queue : cfg.executor_queue;
    ec.run_uid = o->run_uid;
    ec.run_gid = o->run_gid;
    ExecutorCallbacks cb = {.on_state = on_state, .on_event = on_event};
    rs->ex = executor_new(&ec, &cb, rs, err, errlen);
    if (!rs->ex) {
        run_service_free(rs);
        return NULL;
    }
    log_info("executor_started", "slots=%u queue=%u cgroup=%d wrapper=%s", ec.slots,
             ec.queue_capacity, executor_uses_cgroup(rs->ex), o->wrapper_path);
    return rs;
}

void run_service_set_endpoint(RunService *rs, const char *endpoint)
{
    pthread_mutex_lock(&rs->mu);
    snprintf(rs->endpoint, sizeof rs->endpoint, "%s", endpoint);
    pthread_mutex_unlock(&rs->mu);
}

void run_service_counts(RunService *rs, unsigned *queued, unsigned *running)
{
    *queued = *running = 0;
    if (rs->ex)
        executor_counts(rs->ex, queued, running);
    pthread_mutex_lock(&rs->mu);
    for (LiveRun *r = rs->live; r; r = r->next)
        if (r->phase == PHASE_WAIT_VENV)
            (*queued)++;
    pthread_mutex_unlock(&rs->mu);
}

void run_service_free(RunService *rs)
{
    if (!rs)
        return;
    /* Kills every run; their ends arrive through on_state (FAILED). */
    executor_free(rs->ex);
    rs->ex = NULL;
    while (rs->live) {
        LiveRun *r = rs->live;
        rs->live = r->next;
        fail_unstarted(rs, r, "the server shut down before the run started");
    }
    while (rs->venvs) {
        VenvBuild *vb = rs->venvs;
        rs->venvs = vb->next;
        free(vb);
    }
    while (rs->active) {
        ActiveAgent *a = rs->active;
        rs->active = a->next;
        free(a);
    }
    pthread_mutex_destroy(&rs->mu);
    free(rs->data_dir);
    free(rs->python);
    free(rs);
}
