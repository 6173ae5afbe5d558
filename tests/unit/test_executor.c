/* test_executor.c — the executor with real processes: the agents in
 * tests/fixtures/run-agents run through norn-run-wrapper, and the tests check
 * what the callbacks saw and what is left in /proc afterwards. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <dirent.h>
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "error.h"
#include "executor.h"

#define AGENTS NORN_RUN_AGENTS
#define MAX_RECORDS 64
#define MAX_EVENTS 64

/* ---- what the callbacks saw ---------------------------------------------- */

typedef struct StateRecord {
    char run_id[EXEC_MAX_ID_LEN + 1];
    ExecRunState state;
    pid_t pid;
    int exited, exit_code, term_signal;
    ExecStopReason stop_reason;
    char *log_tail;
    char *error;
    unsigned event_errors;
} StateRecord;

typedef struct EventRecord {
    char run_id[EXEC_MAX_ID_LEN + 1];
    ExecEventKind kind;
    char *tool_use_id, *tool_name, *tool_input_json, *result_text, *final_text, *task, *error;
    uint32_t step_number;
    int result_status, session_status;
    double execution_time_ms;
    uint64_t input_tokens;
} EventRecord;

typedef struct Seen {
    pthread_mutex_t lock;
    pthread_cond_t changed;
    StateRecord states[MAX_RECORDS];
    unsigned n_states;
    EventRecord events[MAX_EVENTS];
    unsigned n_events;
    unsigned running_now, running_max;
    /* on_event returns 1 (TERMINATE) at this many begin_steps; 0 = never. */
    unsigned terminate_at_begin;
    unsigned begins;
} Seen;

static char *dup_or_null(const char *s)
{
    return s ? strdup(s) : NULL;
}

static void on_state(void *ud, const ExecRunReport *r)
{
    Seen *seen = ud;
    pthread_mutex_lock(&seen->lock);
    if (seen->n_states == MAX_RECORDS) { /* no cmocka assert off the test thread */
        pthread_mutex_unlock(&seen->lock);
        return;
    }
    StateRecord *rec = &seen->states[seen->n_states++];
    snprintf(rec->run_id, sizeof rec->run_id, "%s", r->run_id);
    rec->state = r->state;
    rec->pid = r->pid;
    rec->exited = r->exited;
    rec->exit_code = r->exit_code;
    rec->term_signal = r->term_signal;
    rec->stop_reason = r->stop_reason;
    rec->log_tail = dup_or_null(r->log_tail);
    rec->error = dup_or_null(r->error);
    rec->event_errors = r->event_errors;
    if (r->state == EXEC_RUN_RUNNING) {
        if (++seen->running_now > seen->running_max)
            seen->running_max = seen->running_now;
    } else if (r->pid) {
        seen->running_now--;
    }
    pthread_cond_broadcast(&seen->changed);
    pthread_mutex_unlock(&seen->lock);
}

static int on_event(void *ud, const char *run_id, const ExecEvent *ev)
{
    Seen *seen = ud;
    pthread_mutex_lock(&seen->lock);
    int terminate = 0;
    if (ev->kind == EXEC_EVENT_BEGIN_STEP && seen->terminate_at_begin)
        terminate = ++seen->begins >= seen->terminate_at_begin;
    if (seen->n_events < MAX_EVENTS) {
        EventRecord *rec = &seen->events[seen->n_events++];
        snprintf(rec->run_id, sizeof rec->run_id, "%s", run_id);
        rec->kind = ev->kind;
        rec->tool_use_id = dup_or_null(ev->tool_use_id);
        rec->tool_name = dup_or_null(ev->tool_name);
        rec->tool_input_json = dup_or_null(ev->tool_input_json);
        rec->result_text = dup_or_null(ev->result_text);
        rec->final_text = dup_or_null(ev->final_text);
        rec->task = dup_or_null(ev->task);
        rec->error = dup_or_null(ev->error);
        rec->step_number = ev->step_number;
        rec->result_status = ev->result_status;
        rec->session_status = ev->session_status;
        rec->execution_time_ms = ev->execution_time_ms;
        rec->input_tokens = ev->input_tokens;
    }
    pthread_mutex_unlock(&seen->lock);
    return terminate;
}

static int is_final(ExecRunState s)
{
    return s != EXEC_RUN_QUEUED && s != EXEC_RUN_RUNNING;
}

/* The record of run_id reaching `final ? a final state : RUNNING`, waiting
 * up to timeout_ms; NULL on timeout. */
static const StateRecord *wait_state(Seen *seen, const char *run_id, int final, int timeout_ms)
{
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += timeout_ms / 1000;
    until.tv_nsec += (long)(timeout_ms % 1000) * 1000000;
    if (until.tv_nsec >= 1000000000) {
        until.tv_sec++;
        until.tv_nsec -= 1000000000;
    }
    const StateRecord *found = NULL;
    pthread_mutex_lock(&seen->lock);
    while (!found) {
        for (unsigned i = 0; i < seen->n_states && !found; i++) {
            const StateRecord *rec = &seen->states[i];
            if (strcmp(rec->run_id, run_id) == 0 &&
                (final ? is_final(rec->state) : rec->state == EXEC_RUN_RUNNING))
                found = rec;
        }
        if (!found && pthread_cond_timedwait(&seen->changed, &seen->lock, &until) == ETIMEDOUT)
            break;
    }
    pthread_mutex_unlock(&seen->lock);
    return found;
}

static unsigned events_of(Seen *seen, const char *run_id, ExecEventKind kind)
{
    unsigned n = 0;
    pthread_mutex_lock(&seen->lock);
    for (unsigned i = 0; i < seen->n_events; i++)
        n += strcmp(seen->events[i].run_id, run_id) == 0 && seen->events[i].kind == kind;
    pthread_mutex_unlock(&seen->lock);
    return n;
}

/* ---- fixture -------------------------------------------------------------- */

typedef struct Fixture {
    Seen seen;
    Executor *ex;
    ExecutorConfig cfg;
    char workdir[64];
    int fds_before; /* descriptors open before the executor existed */
} Fixture;

static int open_fds(void)
{
    DIR *dir = opendir("/proc/self/fd");
    assert_non_null(dir);
    int count = 0;
    while (readdir(dir))
        count++;
    closedir(dir);
    return count;
}

static int setup(void **state)
{
    Fixture *f = calloc(1, sizeof *f);
    pthread_mutex_init(&f->seen.lock, NULL);
    pthread_cond_init(&f->seen.changed, NULL);
    snprintf(f->workdir, sizeof f->workdir, "/tmp/norn-exec-test-XXXXXX");
    assert_non_null(mkdtemp(f->workdir));
    chmod(f->workdir, 0777); /* writable by the unprivileged run uid too */
    executor_config_defaults(&f->cfg);
    f->cfg.wrapper_path = NORN_RUN_WRAPPER;
    f->cfg.slots = 2;
    f->cfg.queue_capacity = 8;
    f->cfg.default_timeout_ms = 20000;
    f->cfg.kill_grace_ms = 500;
    f->fds_before = open_fds();
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    Fixture *f = *state;
    executor_free(f->ex);
    int fds_after = open_fds();
    for (unsigned i = 0; i < f->seen.n_states; i++) {
        free(f->seen.states[i].log_tail);
        free(f->seen.states[i].error);
    }
    for (unsigned i = 0; i < f->seen.n_events; i++) {
        EventRecord *e = &f->seen.events[i];
        free(e->tool_use_id);
        free(e->tool_name);
        free(e->tool_input_json);
        free(e->result_text);
        free(e->final_text);
        free(e->task);
        free(e->error);
    }
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", f->workdir);
    assert_int_equal(system(cmd), 0);
    int fds_before = f->fds_before;
    free(f);
    assert_int_equal(fds_after, fds_before); /* no pipe or pidfd left behind */
    return 0;
}

static void start(Fixture *f)
{
    static const ExecutorCallbacks cb = {.on_state = on_state, .on_event = on_event};
    char err[256] = "";
    f->ex = executor_new(&f->cfg, &cb, &f->seen, err, sizeof err);
    if (!f->ex)
        fail_msg("executor_new: %s", err);
}

static void submit(Fixture *f, const char *run_id, const char *const *argv, const char *stdin_text,
                   unsigned timeout_ms)
{
    RunSpec spec = {.run_id = run_id,
                    .argv = argv,
                    .workdir = f->workdir,
                    .stdin_text = stdin_text,
                    .timeout_ms = timeout_ms};
    char err[256] = "";
    int rc = executor_submit(f->ex, &spec, err, sizeof err);
    if (rc != 0)
        fail_msg("submit %s: %s", run_id, err);
}

static double elapsed_ms(const struct timespec *since)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (double)(now.tv_sec - since->tv_sec) * 1e3 +
           (double)(now.tv_nsec - since->tv_nsec) / 1e6;
}

/* 1 when pid is gone or a zombie (killed, not yet reaped by its new parent),
 * waiting up to 2 s for it. */
static int process_gone(pid_t pid)
{
    for (int i = 0; i < 200; i++) {
        char path[64], stat[256] = "";
        snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
        FILE *fp = fopen(path, "r");
        if (!fp)
            return 1;
        size_t n = fread(stat, 1, sizeof stat - 1, fp);
        fclose(fp);
        stat[n] = '\0';
        const char *paren = strrchr(stat, ')');
        if (paren && (paren[2] == 'Z' || paren[2] == 'X'))
            return 1;
        usleep(10000);
    }
    return 0;
}

/* Live (non-zombie) processes whose command line contains `marker`. */
static int processes_with(const char *marker)
{
    DIR *proc = opendir("/proc");
    assert_non_null(proc);
    int count = 0;
    struct dirent *d;
    while ((d = readdir(proc))) {
        if (d->d_name[0] < '0' || d->d_name[0] > '9')
            continue;
        char path[300], cmdline[4096];
        snprintf(path, sizeof path, "/proc/%s/cmdline", d->d_name);
        FILE *fp = fopen(path, "r");
        if (!fp)
            continue;
        size_t n = fread(cmdline, 1, sizeof cmdline - 1, fp);
        fclose(fp);
        for (size_t i = 0; i < n; i++)
            cmdline[i] = cmdline[i] ? cmdline[i] : ' ';
        cmdline[n] = '\0';
        if (n && strstr(cmdline, marker) && !process_gone((pid_t)atoi(d->d_name)))
            count++;
    }
    closedir(proc);
    return count;
}

static pid_t pid_after(const char *log, const char *key)
{
    const char *at = strstr(log, key);
    return at ? (pid_t)atoi(at + strlen(key)) : 0;
}

/* ---- cases ---------------------------------------------------------------- */

/* A shell agent reports open/begin/end/complete over the pipe and gets its
 * task on stdin. */
static void test_shell_agent_reports_events(void **state)
{
    Fixture *f = *state;
    start(f);
    const char *argv[] = {"/bin/sh", AGENTS "/events.sh", NULL};
    submit(f, "sh-1", argv, "count the stars", 0);
    const StateRecord *running = wait_state(&f->seen, "sh-1", 0, 5000);
    assert_non_null(running);
    assert_true(running->pid > 0);
    const StateRecord *done = wait_state(&f->seen, "sh-1", 1, 5000);
    assert_non_null(done);
    assert_int_equal(done->state, EXEC_RUN_SUCCEEDED);
    assert_true(done->exited);
    assert_int_equal(done->exit_code, 0);
    assert_null(done->error);
    assert_string_equal(done->log_tail, "task=count the stars\n");
    assert_int_equal(done->event_errors, 0);

    assert_int_equal(f->seen.n_events, 4);
    EventRecord *e = f->seen.events;
    assert_int_equal(e[0].kind, EXEC_EVENT_OPEN);
    assert_int_equal(e[1].kind, EXEC_EVENT_BEGIN_STEP);
    assert_string_equal(e[1].tool_use_id, "t1");
    assert_string_equal(e[1].tool_name, "echo");
    assert_string_equal(e[1].tool_input_json, "{\"text\":\"hi\",\"n\":2}");
    assert_int_equal(e[2].kind, EXEC_EVENT_END_STEP);
    assert_string_equal(e[2].result_text, "hi");
    assert_int_equal(e[2].result_status, 1);
    assert_true(e[2].execution_time_ms == 1.5);
    assert_int_equal(e[3].kind, EXEC_EVENT_COMPLETE);
    assert_int_equal(e[3].session_status, 2);
    assert_string_equal(e[3].final_text, "done");
    assert_int_equal(e[3].input_tokens, 10);
}

/* The same from Python, which reads the whole task from stdin. */
static void test_python_agent_reads_task(void **state)
{
    Fixture *f = *state;
    start(f);
    const char *argv[] = {"/usr/bin/python3", AGENTS "/events.py", NULL};
    submit(f, "py-1", argv, "find the \"best\" route\nsecond line", 0);
    const StateRecord *done = wait_state(&f->seen, "py-1", 1, 10000);
    assert_non_null(done);
    assert_int_equal(done->state, EXEC_RUN_SUCCEEDED);
    assert_string_equal(done->log_tail, "py-agent done\n");
    assert_int_equal(events_of(&f->seen, "py-1", EXEC_EVENT_BEGIN_STEP), 2);
    assert_int_equal(events_of(&f->seen, "py-1", EXEC_EVENT_END_STEP), 2);
    EventRecord *e = f->seen.events;
    assert_string_equal(e[0].task, "find the \"best\" route\nsecond line");
    assert_int_equal(e[3].kind, EXEC_EVENT_BEGIN_STEP);
    assert_int_equal(e[3].step_number, 2);
    assert_int_equal(e[4].result_status, 2); /* ERROR */
    assert_string_equal(e[5].final_text, "answer: find the \"best\" route\nsecond line");
}

/* A task larger than the pipe buffer arrives whole; an agent that never
 * reads its stdin does not hurt the server (EPIPE, no SIGPIPE death). */
static void test_large_stdin(void **state)
{
    Fixture *f = *state;
    start(f);
    size_t size = 1024 * 1024;
    char *task = malloc(size + 1);
    assert_non_null(task);
    memset(task, 't', size);
    task[size] = '\0';
    const char *count[] = {"wc", "-c", NULL};
    const char *ignore[] = {"/bin/true", NULL};
    submit(f, "wc", count, task, 0);
    submit(f, "true", ignore, task, 0);
    free(task);
    const StateRecord *done = wait_state(&f->seen, "wc", 1, 10000);
    assert_non_null(done);
    assert_int_equal(done->state, EXEC_RUN_SUCCEEDED);
    assert_string_equal(done->log_tail, "1048576\n");
    done = wait_state(&f->seen, "true", 1, 10000);
    assert_non_null(done);
    assert_int_equal(done->state, EXEC_RUN_SUCCEEDED);
}

/* Slots 2, five runs: never more than two at once, started in FIFO order. */
static void test_queue_beyond_slots_is_fifo(void **state)
{
    Fixture *f = *state;
    start(f);
    const char *argv[] = {"/bin/sh", AGENTS "/sleep.sh", "0.3", NULL};
    const char *ids[] = {"q1", "q2", "q3", "q4", "q5"};
    for (int i = 0; i < 5; i++)
        submit(f, ids[i], argv, NULL, 0);
    for (int i = 0; i < 5; i++) {
        const StateRecord *done = wait_state(&f->seen, ids[i], 1, 10000);
        assert_non_null(done);
        assert_int_equal(done->state, EXEC_RUN_SUCCEEDED);
    }
    assert_int_equal(f->seen.running_max, 2);
    unsigned next = 0;
    for (unsigned i = 0; i < f->seen.n_states; i++) {
        if (f->seen.states[i].state == EXEC_RUN_RUNNING)
            assert_string_equal(f->seen.states[i].run_id, ids[next++]);
    }
    assert_int_equal(next, 5);
}

/* Slots 1, queue 2: with one running and two queued the next is refused. */
static void test_full_queue_is_refused(void **state)
{
    Fixture *f = *state;
    f->cfg.slots = 1;
    f->cfg.queue_capacity = 2;
    start(f);
    const char *argv[] = {"/bin/sh", AGENTS "/hang.sh", NULL};
    submit(f, "f1", argv, NULL, 0);
    assert_non_null(wait_state(&f->seen, "f1", 0, 5000));
    submit(f, "f2", argv, NULL, 0);
    submit(f, "f3", argv, NULL, 0);
    RunSpec spec = {.run_id = "f4", .argv = argv, .workdir = f->workdir};
    char err[256] = "";
    assert_int_equal(executor_submit(f->ex, &spec, err, sizeof err), NORN_ERR_EXHAUSTED);
    assert_non_null(strstr(err, "queue is full"));
    unsigned queued, running;
    executor_counts(f->ex, &queued, &running);
    assert_int_equal(queued, 2);
    assert_int_equal(running, 1);
    /* A live id cannot be reused. */
    spec.run_id = "f2";
    assert_int_equal(executor_submit(f->ex, &spec, err, sizeof err), NORN_ERR_EXISTS);
}

/* Invalid specs are refused with a reason. */
static void test_invalid_specs_are_refused(void **state)
{
    Fixture *f = *state;
    start(f);
    const char *argv[] = {"/bin/true", NULL};
    const char *empty_argv[] = {NULL};
    const char *bad_env[] = {"NORN_EVENTS_FD=7", NULL};
    const char *no_name_env[] = {"=x", NULL};
    char err[256];
    RunSpec spec = {.run_id = "i1", .argv = argv, .workdir = "relative/dir"};
    assert_int_equal(executor_submit(f->ex, &spec, err, sizeof err), NORN_ERR_INVALID);
    assert_non_null(strstr(err, "absolute"));
    spec.workdir = f->workdir;
    spec.argv = empty_argv;
    assert_int_equal(executor_submit(f->ex, &spec, err, sizeof err), NORN_ERR_INVALID);
    spec.argv = argv;
    spec.env = bad_env;
    assert_int_equal(executor_submit(f->ex, &spec, err, sizeof err), NORN_ERR_INVALID);
    spec.env = no_name_env;
    assert_int_equal(executor_submit(f->ex, &spec, err, sizeof err), NORN_ERR_INVALID);
    spec.env = NULL;
    spec.run_id = "";
    assert_int_equal(executor_submit(f->ex, &spec, err, sizeof err), NORN_ERR_INVALID);
}

/* Spawn problems end the run FAILED with a reason, not the executor. */
static void test_spawn_failures_are_reported(void **state)
{
    Fixture *f = *state;
    start(f);
    const char *missing[] = {"no-such-agent-binary", NULL};
    submit(f, "m1", missing, NULL, 0);
    const StateRecord *done = wait_state(&f->seen, "m1", 1, 5000);
    assert_non_null(done);
    assert_int_equal(done->state, EXEC_RUN_FAILED);
    assert_int_equal(done->exit_code, 127);
    assert_non_null(strstr(done->log_tail, "norn-run-wrapper: no-such-agent-binary"));

    const char *argv[] = {"/bin/true", NULL};
    RunSpec spec = {.run_id = "m2", .argv = argv, .workdir = "/nonexistent/workspace"};
    char err[256];
    assert_int_equal(executor_submit(f->ex, &spec, err, sizeof err), 0);
    done = wait_state(&f->seen, "m2", 1, 5000);
    assert_non_null(done);
    assert_int_equal(done->state, EXEC_RUN_FAILED);
    assert_int_equal(done->pid, 0);
    assert_non_null(strstr(done->error, "/nonexistent/workspace"));

    /* The pool still works afterwards. */
    submit(f, "m3", argv, NULL, 0);
    done = wait_state(&f->seen, "m3", 1, 5000);
    assert_non_null(done);
    assert_int_equal(done->state, EXEC_RUN_SUCCEEDED);
}

/* The timeout kills the whole group, a grandchild included (and, with a
 * cgroup, one that left the group with setsid). */
static void test_timeout_kills_whole_group(void **state)
{
    Fixture *f = *state;
    start(f);
    const char *argv[] = {"/bin/sh", AGENTS "/hang.sh", "escape", NULL};
    struct timespec t0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    submit(f, "t1", argv, NULL, 700);
    const StateRecord *done = wait_state(&f->seen, "t1", 1, 5000);
    assert_non_null(done);
    double took = elapsed_ms(&t0);
    assert_int_equal(done->state, EXEC_RUN_TIMED_OUT);
    assert_int_equal(done->stop_reason, EXEC_STOP_TIMEOUT);
    assert_int_equal(done->term_signal, SIGTERM);
    assert_non_null(strstr(done->error, "timed out after 700 ms"));
    assert_true(took >= 700 && took < 2500);
    pid_t grandchild = pid_after(done->log_tail, "grandchild=");
    pid_t escaped = pid_after(done->log_tail, "escaped=");
    assert_true(grandchild > 0 && escaped > 0);
    assert_true(process_gone(grandchild));
    if (executor_uses_cgroup(f->ex))
        assert_true(process_gone(escaped));
    else
        kill(escaped, SIGKILL); /* without a cgroup a setsid escapee survives */
}

/* SIGTERM is ignored: SIGKILL follows after the grace period. */
static void test_sigterm_ignored_gets_sigkill(void **state)
{
    Fixture *f = *state;
    start(f);
    const char *argv[] = {"/bin/sh", AGENTS "/ignore_term.sh", NULL};
    struct timespec t0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    submit(f, "k1", argv, NULL, 500);
    const StateRecord *done = wait_state(&f->seen, "k1", 1, 5000);
    assert_non_null(done);
    double took = elapsed_ms(&t0);
    assert_int_equal(done->state, EXEC_RUN_TIMED_OUT);
    assert_int_equal(done->term_signal, SIGKILL);
    assert_true(took >= 500 + 500 && took < 3000);
    assert_string_equal(done->log_tail, "ready\n");
}

/* Cancel: a queued run never starts, a running one is stopped; unknown ids
 * are NOT_FOUND. */
static void test_cancel_queued_and_running(void **state)
{
    Fixture *f = *state;
    f->cfg.slots = 1;
    start(f);
    const char *argv[] = {"/bin/sh", AGENTS "/hang.sh", NULL};
    submit(f, "c1", argv, NULL, 0);
    const StateRecord *running = wait_state(&f->seen, "c1", 0, 5000);
    assert_non_null(running);
    submit(f, "c2", argv, NULL, 0);
    assert_int_equal(executor_cancel(f->ex, "c2"), 0);
    const StateRecord *queued = wait_state(&f->seen, "c2", 1, 5000);
    assert_non_null(queued);
    assert_int_equal(queued->state, EXEC_RUN_CANCELLED);
    assert_int_equal(queued->pid, 0);
    assert_null(wait_state(&f->seen, "c2", 0, 1)); /* never RUNNING */

    assert_int_equal(executor_cancel(f->ex, "c1"), 0);
    const StateRecord *done = wait_state(&f->seen, "c1", 1, 5000);
    assert_non_null(done);
    assert_int_equal(done->state, EXEC_RUN_CANCELLED);
    assert_int_equal(done->stop_reason, EXEC_STOP_CANCEL);
    assert_true(process_gone(pid_after(done->log_tail, "grandchild=")));
    assert_int_equal(executor_cancel(f->ex, "c1"), NORN_ERR_NOT_FOUND);
    assert_int_equal(executor_cancel(f->ex, "never-submitted"), NORN_ERR_NOT_FOUND);
}

/* on_event answering TERMINATE stops a looping agent at once. */
static void test_guard_terminates_looping_agent(void **state)
{
    Fixture *f = *state;
    f->seen.terminate_at_begin = 3;
    start(f);
    const char *argv[] = {"/usr/bin/python3", AGENTS "/loop.py", NULL};
    submit(f, "g1", argv, NULL, 0);
    const StateRecord *done = wait_state(&f->seen, "g1", 1, 10000);
    assert_non_null(done);
    assert_int_equal(done->state, EXEC_RUN_FAILED);
    assert_int_equal(done->stop_reason, EXEC_STOP_GUARD);
    assert_int_equal(done->term_signal, SIGKILL);
    assert_string_equal(done->error, "terminated by the guard");
    /* Lines after the TERMINATE are not delivered. */
    assert_int_equal(events_of(&f->seen, "g1", EXEC_EVENT_BEGIN_STEP), 3);
    assert_null(strstr(done->log_tail, "loop finished"));
}

/* Bad lines become ERROR events (counted); the good line after them works. */
static void test_malformed_event_lines(void **state)
{
    Fixture *f = *state;
    f->cfg.max_event_line = 4096;
    start(f);
    const char *argv[] = {"/usr/bin/python3", AGENTS "/malformed.py", NULL};
    submit(f, "e1", argv, NULL, 0);
    const StateRecord *done = wait_state(&f->seen, "e1", 1, 10000);
    assert_non_null(done);
    assert_int_equal(done->state, EXEC_RUN_SUCCEEDED);
    assert_int_equal(done->event_errors, 6);
    assert_int_equal(f->seen.n_events, 7);
    EventRecord *e = f->seen.events;
    for (int i = 0; i < 6; i++)
        assert_int_equal(e[i].kind, EXEC_EVENT_ERROR);
    assert_non_null(strstr(e[0].error, "not JSON"));
    assert_non_null(strstr(e[1].error, "object"));
    assert_non_null(strstr(e[2].error, "unknown type"));
    assert_non_null(strstr(e[3].error, "tool_use_id"));
    assert_non_null(strstr(e[4].error, "MAYBE"));
    assert_non_null(strstr(e[5].error, "longer than 4096"));
    assert_int_equal(e[6].kind, EXEC_EVENT_BEGIN_STEP);
    assert_string_equal(e[6].tool_name, "after");
    assert_string_equal(e[6].tool_input_json, "{}");
}

/* RLIMIT_AS stops an agent that allocates beyond it. */
static void test_memory_limit(void **state)
{
    Fixture *f = *state;
    f->cfg.limits.address_space = 256ull * 1024 * 1024;
    start(f);
    const char *argv[] = {"/usr/bin/python3", AGENTS "/memory.py", NULL};
    submit(f, "mem", argv, NULL, 0);
    const StateRecord *done = wait_state(&f->seen, "mem", 1, 10000);
    assert_non_null(done);
    assert_int_equal(done->state, EXEC_RUN_FAILED);
    assert_int_equal(done->exit_code, 1);
    assert_non_null(strstr(done->log_tail, "MemoryError"));
    assert_null(strstr(done->log_tail, "allocated"));
}

/* RLIMIT_CPU stops a spinning agent long before its wall-clock timeout. */
static void test_cpu_limit(void **state)
{
    Fixture *f = *state;
    f->cfg.limits.cpu_seconds = 1;
    start(f);
    const char *argv[] = {"/bin/sh", AGENTS "/spin.sh", NULL};
    submit(f, "cpu", argv, NULL, 15000);
    const StateRecord *done = wait_state(&f->seen, "cpu", 1, 10000);
    assert_non_null(done);
    assert_int_equal(done->state, EXEC_RUN_FAILED);
    assert_int_equal(done->term_signal, SIGXCPU);
    assert_non_null(strstr(done->error, "CPU time limit"));
}

static void fork_bomb_is_contained(Fixture *f, const char *run_id)
{
    const char *argv[] = {"/usr/bin/python3", AGENTS "/fork_bomb.py", run_id, NULL};
    submit(f, run_id, argv, NULL, 2000);
    const StateRecord *done = wait_state(&f->seen, run_id, 1, 10000);
    assert_non_null(done);
    assert_int_equal(done->state, EXEC_RUN_TIMED_OUT);
    const char *report = strstr(done->log_tail, "forked=");
    assert_non_null(report);
    int forked = atoi(report + 7);
    assert_true(forked > 0 && forked < 32);
    assert_non_null(strstr(report, "failed=1"));
    assert_int_equal(processes_with(run_id), 0);
}

/* A fork bomb hits pids.max of the run's cgroup (enforced for root too) and
 * everything it forked is killed at the end of the run. */
static void test_fork_bomb_contained_by_cgroup(void **state)
{
    Fixture *f = *state;
    f->cfg.limits.pids_max = 32;
    f->cfg.limits.processes = 0;
    start(f);
    if (!executor_uses_cgroup(f->ex))
        skip();
    fork_bomb_is_contained(f, "bomb-cgroup-ab12");
}

/* Without a cgroup, a root server runs the agent as nobody, for whom
 * RLIMIT_NPROC is enforced. */
static void test_fork_bomb_contained_by_nproc_as_nobody(void **state)
{
    Fixture *f = *state;
    if (geteuid() != 0)
        skip();
    f->cfg.cgroup_mode = EXEC_CGROUP_OFF;
    f->cfg.limits.processes = 32;
    f->cfg.run_uid = 65534;
    f->cfg.run_gid = 65534;
    start(f);
    assert_false(executor_uses_cgroup(f->ex));
    fork_bomb_is_contained(f, "bomb-nproc-cd34");
}

/* Nothing of the server's environment reaches the agent; the run's own
 * variables and the NORN_ ones do, and it starts in its workspace. */
static void test_environment_is_scrubbed(void **state)
{
    Fixture *f = *state;
    setenv("NORN_TEST_SECRET", "server-secret-42", 1);
    setenv("AWS_SECRET_ACCESS_KEY", "aws-secret-43", 1);
    setenv("AWS_ACCESS_KEY_ID", "AKIATESTTESTTEST", 1);
    start(f);
    const char *argv[] = {"/bin/sh", AGENTS "/env.sh", NULL};
    const char *env[] = {"NORN_SESSION_ID=sess-1", "NORN_ENDPOINT=127.0.0.1:1",
                         "PATH=/usr/bin:/bin", NULL};
    RunSpec spec = {.run_id = "env-1", .argv = argv, .workdir = f->workdir, .env = env};
    char err[256];
    assert_int_equal(executor_submit(f->ex, &spec, err, sizeof err), 0);
    const StateRecord *done = wait_state(&f->seen, "env-1", 1, 5000);
    assert_non_null(done);
    assert_int_equal(done->state, EXEC_RUN_SUCCEEDED);
    const char *log = done->log_tail;
    assert_null(strstr(log, "server-secret-42"));
    assert_null(strstr(log, "NORN_TEST_SECRET"));
    assert_null(strstr(log, "AWS_"));
    assert_non_null(strstr(log, "NORN_RUN_ID=env-1\n"));
    assert_non_null(strstr(log, "NORN_EVENTS_FD=3\n"));
    assert_non_null(strstr(log, "NORN_SESSION_ID=sess-1\n"));
    assert_non_null(strstr(log, "NORN_ENDPOINT=127.0.0.1:1\n"));
    assert_non_null(strstr(log, "\nPATH=/usr/bin:/bin\n")); /* the spec's value wins */
    assert_non_null(strstr(log, "LANG=C.UTF-8\n"));
    char want[128];
    snprintf(want, sizeof want, "HOME=%s\n", f->workdir);
    assert_non_null(strstr(log, want));
    snprintf(want, sizeof want, "cwd=%s\n", f->workdir);
    assert_non_null(strstr(log, want));
    char cwd[4096];
    assert_non_null(getcwd(cwd, sizeof cwd));
    assert_string_not_equal(cwd, f->workdir); /* the server never chdir'd */
    unsetenv("NORN_TEST_SECRET");
    unsetenv("AWS_SECRET_ACCESS_KEY");
    unsetenv("AWS_ACCESS_KEY_ID");
}

/* 5 MB of output: the tail holds only the configured bytes, the last ones. */
static void test_log_tail_is_bounded(void **state)
{
    Fixture *f = *state;
    f->cfg.log_tail_bytes = 4096;
    start(f);
    const char *argv[] = {"/bin/sh", AGENTS "/output.sh", NULL};
    submit(f, "out", argv, NULL, 0);
    const StateRecord *done = wait_state(&f->seen, "out", 1, 10000);
    assert_non_null(done);
    assert_int_equal(done->state, EXEC_RUN_SUCCEEDED);
    size_t len = strlen(done->log_tail);
    assert_true(len > 4000 && len <= 4096);
    assert_string_equal(done->log_tail + len - 14, "END-OF-OUTPUT\n");
    assert_non_null(strstr(done->log_tail, "an error line")); /* stderr too */
}

/* Shutting down kills running runs and cancels queued ones. */
static void test_free_kills_everything(void **state)
{
    Fixture *f = *state;
    f->cfg.slots = 1;
    start(f);
    const char *argv[] = {"/bin/sh", AGENTS "/hang.sh", NULL};
    submit(f, "s1", argv, NULL, 0);
    assert_non_null(wait_state(&f->seen, "s1", 0, 5000));
    submit(f, "s2", argv, NULL, 0);
    executor_free(f->ex);
    f->ex = NULL;
    const StateRecord *s1 = wait_state(&f->seen, "s1", 1, 0);
    const StateRecord *s2 = wait_state(&f->seen, "s2", 1, 0);
    assert_non_null(s1);
    assert_non_null(s2);
    assert_int_equal(s1->state, EXEC_RUN_CANCELLED);
    assert_int_equal(s1->stop_reason, EXEC_STOP_SHUTDOWN);
    assert_true(process_gone(pid_after(s1->log_tail, "grandchild=")));
    assert_int_equal(s2->state, EXEC_RUN_CANCELLED);
}

/* The pids of `pid`'s children, written to `out` (at most `cap`). */
static int children_of(pid_t pid, pid_t *out, int cap)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/task/%d/children", (int)pid, (int)pid);
    FILE *fp = fopen(path, "r");
    if (!fp)
        return 0;
    int n = 0, child;
    while (n < cap && fscanf(fp, "%d", &child) == 1)
        out[n++] = child;
    fclose(fp);
    return n;
}

/* A server that dies without executor_free: its agent gets SIGKILL
 * (PR_SET_PDEATHSIG), and the next executor reclaims the dead one's cgroup,
 * killing the agent's leftover children. */
static void test_server_crash_leaves_no_agents(void **state)
{
    Fixture *f = *state;
    int report[2];
    assert_int_equal(pipe(report), 0);
    pid_t server = fork();
    assert_true(server >= 0);
    if (server == 0) {
        /* The "server": start a run, report its pids, die abruptly. No
         * cmocka asserts here, they would jump back into the test runner. */
        close(report[0]);
        static const ExecutorCallbacks cb = {.on_state = on_state};
        f->ex = executor_new(&f->cfg, &cb, &f->seen, NULL, 0);
        const char *argv[] = {"/bin/sh", AGENTS "/hang.sh", NULL};
        RunSpec spec = {.run_id = "crash", .argv = argv, .workdir = f->workdir};
        if (!f->ex || executor_submit(f->ex, &spec, NULL, 0) != 0)
            _exit(3);
        const StateRecord *running = wait_state(&f->seen, "crash", 0, 5000);
        pid_t pids[8] = {running ? running->pid : 0};
        for (int i = 0; i < 100 && children_of(pids[0], pids + 1, 7) < 2; i++)
            usleep(10000);
        int with_cgroup = executor_uses_cgroup(f->ex);
        if (write(report[1], &with_cgroup, sizeof with_cgroup) < 0 ||
            write(report[1], pids, sizeof pids) < 0)
            _exit(2);
        _exit(0);
    }
    close(report[1]);
    int with_cgroup = 0;
    pid_t pids[8] = {0};
    assert_int_equal(read(report[0], &with_cgroup, sizeof with_cgroup), sizeof with_cgroup);
    assert_int_equal(read(report[0], pids, sizeof pids), sizeof pids);
    close(report[0]);
    int status;
    assert_int_equal(waitpid(server, &status, 0), server);
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    assert_true(pids[0] > 0 && pids[1] > 0 && pids[2] > 0);
    assert_true(process_gone(pids[0])); /* the agent died with its server */
    if (!with_cgroup) {
        for (int i = 1; i < 8 && pids[i]; i++)
            kill(pids[i], SIGKILL); /* without a cgroup its children outlive it */
        skip();
    }
    /* The orphans sleep 1000 s; only the reclaim can end them this soon
     * (under ctest -j another test's executor may be the one reclaiming). */
    start(f); /* the restarted server */
    for (int i = 1; i < 8 && pids[i]; i++)
        assert_true(process_gone(pids[i]));
}

/* The virtualenv install runs as a child: venv with system site packages,
 * then pip with the requirements file. */
static void test_venv_install_as_a_run(void **state)
{
    Fixture *f = *state;
    f->cfg.limits.address_space = 0;
    start(f);
    char venv[128], requirements[128];
    snprintf(venv, sizeof venv, "%s/venv", f->workdir);
    snprintf(requirements, sizeof requirements, "%s/requirements.txt", f->workdir);
    FILE *fp = fopen(requirements, "w");
    assert_non_null(fp);
    fputs("# nothing to install\n", fp);
    fclose(fp);
    const char *argv[EXEC_VENV_ARGC + 1];
    executor_venv_argv("/usr/bin/python3", venv, requirements, argv);
    submit(f, "venv", argv, NULL, 60000);
    const StateRecord *done = wait_state(&f->seen, "venv", 1, 60000);
    assert_non_null(done);
    if (done->state != EXEC_RUN_SUCCEEDED)
        fail_msg("venv install failed: %s\n%s", done->error, done->log_tail);
    char cfg_path[160], cfg_text[1024] = "";
    snprintf(cfg_path, sizeof cfg_path, "%s/pyvenv.cfg", venv);
    fp = fopen(cfg_path, "r");
    assert_non_null(fp);
    size_t n = fread(cfg_text, 1, sizeof cfg_text - 1, fp);
    fclose(fp);
    cfg_text[n] = '\0';
    assert_non_null(strstr(cfg_text, "include-system-site-packages = true"));

    /* A missing requirements file fails the install, with pip's reason. */
    snprintf(requirements, sizeof requirements, "%s/missing.txt", f->workdir);
    executor_venv_argv("/usr/bin/python3", venv, requirements, argv);
    submit(f, "venv-2", argv, NULL, 60000);
    done = wait_state(&f->seen, "venv-2", 1, 60000);
    assert_non_null(done);
    assert_int_equal(done->state, EXEC_RUN_FAILED);
    assert_non_null(strstr(done->log_tail, "missing.txt"));
}

int main(int argc, char **argv)
{
    if (argc > 1)
        cmocka_set_test_filter(argv[1]);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_shell_agent_reports_events, setup, teardown),
        cmocka_unit_test_setup_teardown(test_python_agent_reads_task, setup, teardown),
        cmocka_unit_test_setup_teardown(test_large_stdin, setup, teardown),
        cmocka_unit_test_setup_teardown(test_queue_beyond_slots_is_fifo, setup, teardown),
        cmocka_unit_test_setup_teardown(test_full_queue_is_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_invalid_specs_are_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_spawn_failures_are_reported, setup, teardown),
        cmocka_unit_test_setup_teardown(test_timeout_kills_whole_group, setup, teardown),
        cmocka_unit_test_setup_teardown(test_sigterm_ignored_gets_sigkill, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cancel_queued_and_running, setup, teardown),
        cmocka_unit_test_setup_teardown(test_guard_terminates_looping_agent, setup, teardown),
        cmocka_unit_test_setup_teardown(test_malformed_event_lines, setup, teardown),
        cmocka_unit_test_setup_teardown(test_memory_limit, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cpu_limit, setup, teardown),
        cmocka_unit_test_setup_teardown(test_fork_bomb_contained_by_cgroup, setup, teardown),
        cmocka_unit_test_setup_teardown(test_fork_bomb_contained_by_nproc_as_nobody, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_environment_is_scrubbed, setup, teardown),
        cmocka_unit_test_setup_teardown(test_log_tail_is_bounded, setup, teardown),
        cmocka_unit_test_setup_teardown(test_free_kills_everything, setup, teardown),
        cmocka_unit_test_setup_teardown(test_server_crash_leaves_no_agents, setup, teardown),
        cmocka_unit_test_setup_teardown(test_venv_install_as_a_run, setup, teardown),
    };
    return cmocka_run_group_tests_name("executor", tests, NULL, NULL);
}
