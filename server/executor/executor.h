/*
 * executor.h — runs imported agents as bounded, isolated child processes.
 *
 * Pure process management: no gRPC, no storage. The caller (AgentService)
 * submits runs and learns about them through callbacks.
 *
 * Model
 *   A fixed pool of `slots` run slots and a bounded FIFO queue. One executor
 *   thread owns every child: a poll() loop over each run's output pipe, events
 *   pipe, stdin pipe and pidfd, plus an eventfd that wakes it for submit,
 *   cancel and shutdown. No thread per run, no SIGCHLD handler.
 *
 * Each run
 *   - posix_spawn() (never fork() of the multi-threaded server) of the exec
 *     wrapper `norn-run-wrapper` (built next to this library), which applies
 *     the resource limits, joins the run's pids cgroup, optionally drops to an
 *     unprivileged uid, sets PR_SET_NO_NEW_PRIVS and then execs the agent.
 *     Why a wrapper: posix_spawn can neither setrlimit nor setuid, and
 *     prlimit() after the spawn races with the agent (posix_spawn returns only
 *     once the child has exec'd, so the agent would already be running).
 *   - Its own process group (POSIX_SPAWN_SETPGROUP), default signal
 *     dispositions and an empty signal mask (SETSIGDEF, SETSIGMASK).
 *   - Starts in the run's workspace via posix_spawn_file_actions_addchdir_np:
 *     the server never chdir()s.
 *   - Environment built from nothing: PATH, HOME (= the workspace), LANG, the
 *     spec's variables, NORN_RUN_ID and NORN_EVENTS_FD. Nothing of the
 *     server's environment is passed on.
 *   - stdin: the task text through a pipe, then closed. stdout and stderr:
 *     one pipe into a bounded tail ring (log_tail_bytes). fd 3: the write end
 *     of the events pipe (NORN_EVENTS_FD=3, see docs/events-protocol.md).
 *     Every other descriptor is closed in the child (addclosefrom_np).
 *
 * Containment
 *   - rlimits: RLIMIT_CPU, RLIMIT_AS, RLIMIT_NOFILE, RLIMIT_NPROC, RLIMIT_CORE=0.
 *   - Fork bombs: RLIMIT_NPROC counts every process of the uid and is not
 *     enforced for root. So when a pids cgroup can be created (cgroup v1
 *     `pids` hierarchy, or a v2 subtree with the pids controller enabled;
 *     probed at executor_new) each run gets its own cgroup with pids.max,
 *     which holds for root too, and escapees that left the process group
 *     (setsid) are still found and killed through it. Without a cgroup, set
 *     run_uid/run_gid so a root server runs agents as an unprivileged user
 *     for whom RLIMIT_NPROC is enforced.
 *   - When a run ends for any reason (its main process exited, timeout,
 *     cancel, guard TERMINATE) everything left in its process group and its
 *     cgroup is SIGKILLed.
 *   - A server that dies takes its agents along: the wrapper sets
 *     PR_SET_PDEATHSIG(SIGKILL) for the agent's main process, and the next
 *     executor_new kills and removes the cgroups of executors whose process
 *     is gone (their runs' descendants). The caller marks those runs FAILED
 *     from its own records (the executor keeps none).
 *   - An agent running as root can leave its cgroup or kill the server; set
 *     run_uid/run_gid for untrusted agents whenever the server is root. The
 *     child enters its workspace before dropping privileges, so the workspace
 *     (and the agent's files) must be readable, and writable if needed, by
 *     that uid.
 *
 * Threads: executor_submit/executor_cancel may be called from any thread,
 * including from inside a callback. Callbacks run on the executor thread with
 * no executor lock held; they must not block for long (they stall all runs).
 * The server must not set SIGCHLD to SIG_IGN (children would be reaped
 * behind the executor's back).
 */
#ifndef NORN_EXECUTOR_H
#define NORN_EXECUTOR_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* Hard limits on what a RunSpec may carry. */
#define EXEC_MAX_ID_LEN 128
#define EXEC_MAX_ARGS 256
#define EXEC_MAX_ENV 256
#define EXEC_MAX_STRING (64 * 1024) /* one argv or env string */
#define EXEC_MAX_STDIN (1024 * 1024)

/* Same numbers as norn.v1.RunState, so the caller can cast. */
typedef enum ExecRunState {
    EXEC_RUN_QUEUED = 1,
    EXEC_RUN_RUNNING = 2,
    EXEC_RUN_SUCCEEDED = 3,
    EXEC_RUN_FAILED = 4,
    EXEC_RUN_TIMED_OUT = 5,
    EXEC_RUN_CANCELLED = 6,
} ExecRunState;

/* Why the executor stopped a run (EXEC_STOP_NONE: it ended by itself). */
typedef enum ExecStopReason {
    EXEC_STOP_NONE = 0,
    EXEC_STOP_TIMEOUT,
    EXEC_STOP_CANCEL,
    EXEC_STOP_GUARD,    /* on_event asked to terminate */
    EXEC_STOP_SHUTDOWN, /* executor_free */
} ExecStopReason;

/* Resource limits applied in the child; 0 = leave that limit alone. */
typedef struct ExecLimits {
    uint64_t cpu_seconds;   /* RLIMIT_CPU: SIGXCPU at the limit, SIGKILL 1 s later */
    uint64_t address_space; /* RLIMIT_AS, bytes */
    uint64_t open_files;    /* RLIMIT_NOFILE */
    uint64_t processes;     /* RLIMIT_NPROC (per uid; not enforced for root) */
    uint64_t pids_max;      /* pids.max of the run's cgroup, when one is used */
} ExecLimits;

typedef enum ExecCgroupMode {
    EXEC_CGROUP_AUTO = 0, /* use a pids cgroup when one can be created */
    EXEC_CGROUP_OFF,      /* never (rlimits and process groups only) */
} ExecCgroupMode;

typedef struct ExecutorConfig {
    const char *wrapper_path;    /* required: the norn-run-wrapper executable */
    unsigned slots;              /* concurrent runs; 0 = 4 */
    unsigned queue_capacity;     /* queued runs beyond the slots; 0 = 64 */
    size_t log_tail_bytes;       /* combined stdout+stderr tail kept per run; 0 = 64 KiB */
    size_t max_event_line;       /* longest events line; 0 = 1 MiB */
    unsigned default_timeout_ms; /* a spec's 0 timeout; 0 = 600 s */
    unsigned kill_grace_ms;      /* SIGTERM → SIGKILL; 0 = 2000 */
    ExecLimits limits;           /* defaults for specs without their own */
    ExecCgroupMode cgroup_mode;
    /* Parent directory for per-run pids cgroups; NULL = probe
     * /sys/fs/cgroup/pids/<own cgroup> (v1) then /sys/fs/cgroup/<own cgroup> (v2). */
    const char *cgroup_dir;
    /* Run agents as this uid/gid (the server must be root); -1 = unchanged. */
    long run_uid;
    long run_gid;
} ExecutorConfig;

/* Fills the defaults above (limits: 600 s CPU, 1 GiB address space, 256
 * files, 256 processes, pids.max 256; run_uid/run_gid -1). */
void executor_config_defaults(ExecutorConfig *cfg);

typedef struct RunSpec {
    const char *run_id;       /* required, ≤ EXEC_MAX_ID_LEN, unique among live runs */
    const char *const *argv;  /* required, NULL-terminated; argv[0] is looked up in PATH */
    const char *workdir;      /* required: absolute path of the run's workspace */
    const char *const *env;   /* "NAME=value", NULL-terminated; may be NULL */
    const char *stdin_text;   /* fed on stdin then closed; NULL = empty stdin */
    unsigned timeout_ms;      /* wall clock; 0 = the config's default */
    const ExecLimits *limits; /* NULL = the config's limits */
} RunSpec;

/* What the executor read from one events line (docs/events-protocol.md). */
typedef enum ExecEventKind {
    EXEC_EVENT_OPEN = 1,
    EXEC_EVENT_BEGIN_STEP,
    EXEC_EVENT_END_STEP,
    EXEC_EVENT_COMPLETE,
    EXEC_EVENT_ERROR, /* a line that could not be used; `error` says why */
} ExecEventKind;

/* Strings are NULL when absent; all point into memory valid only during the
 * callback. Numbers mirror SessionService's requests. */
typedef struct ExecEvent {
    ExecEventKind kind;
    const char *line_json; /* the line's object, compact (NULL for ERROR) */
    const char *error;     /* ERROR only */
    /* open */
    const char *agent_name, *model, *system_prompt, *task;
    /* begin_step / end_step */
    const char *tool_use_id, *tool_name;
    const char *tool_input_json; /* begin_step: compact object, "{}" when absent */
    uint32_t step_number;        /* 0 = the server assigns */
    const char *result_text;
    int result_status; /* norn.v1.ResultStatus: 0 unspecified, 1 success, 2 error, 3 exception */
    double execution_time_ms;
    /* complete */
    int session_status; /* norn.v1.SessionStatus: 0 unspecified, 2 completed, 3 terminated */
    const char *final_text, *termination_reason;
    uint64_t input_tokens, output_tokens;
} ExecEvent;

/* A run's state change. Pointers are valid only during the callback. */
typedef struct ExecRunReport {
    const char *run_id;
    ExecRunState state;
    pid_t pid;  /* 0 before the spawn or when it failed */
    int exited; /* 1: exit_code is valid (the process exited) */
    int exit_code;
    int term_signal; /* signal that ended the process; 0 = none */
    ExecStopReason stop_reason;
    const char *log_tail;  /* final states: the output tail, valid UTF-8 */
    const char *error;     /* final states other than SUCCEEDED: why */
    unsigned event_errors; /* events lines reported as EXEC_EVENT_ERROR */
} ExecRunReport;

typedef struct ExecutorCallbacks {
    /* RUNNING once spawned, then exactly one final state (SUCCEEDED, FAILED,
     * TIMED_OUT, CANCELLED). A submitted run is QUEUED without a callback. */
    void (*on_state)(void *ud, const ExecRunReport *report);
    /* One events line. Return nonzero to terminate the run now (the guard's
     * TERMINATE): its whole process group and cgroup get SIGKILL and it ends
     * FAILED with stop_reason EXEC_STOP_GUARD. May be NULL (events dropped). */
    int (*on_event)(void *ud, const char *run_id, const ExecEvent *event);
} ExecutorCallbacks;

typedef struct Executor Executor;

/* Starts the executor thread. NULL on failure with the reason in err. `cfg`
 * and `cb` are copied (wrapper_path too; cgroup_dir is only read here). A
 * pids cgroup directory that a dead server left is reclaimed here. */
Executor *executor_new(const ExecutorConfig *cfg, const ExecutorCallbacks *cb, void *ud, char *err,
                       size_t errlen);

/* Queues a run (the spec is copied). 0, or NORN_ERR_INVALID (bad spec),
 * NORN_ERR_EXISTS (run id live), NORN_ERR_EXHAUSTED (queue full),
 * NORN_ERR_UNAVAILABLE (shutting down), NORN_ERR_NO_MEMORY; err says why. */
int executor_submit(Executor *ex, const RunSpec *spec, char *err, size_t errlen);

/* Cancels a run: a queued one ends CANCELLED without being spawned; a running
 * one gets SIGTERM on its group, SIGKILL after the grace period, and ends
 * CANCELLED. 0, or NORN_ERR_NOT_FOUND when no live run has that id. The
 * final state arrives through on_state. */
int executor_cancel(Executor *ex, const char *run_id);

/* Number of runs queued and running (for tests and stats). */
void executor_counts(Executor *ex, unsigned *queued, unsigned *running);

/* 1 when runs get a pids cgroup (see Containment). */
int executor_uses_cgroup(const Executor *ex);

/* Kills every run (reported CANCELLED, stop_reason SHUTDOWN), joins the
 * thread, frees. NULL is fine. */
void executor_free(Executor *ex);

/* The per-agent virtualenv install as a run (issue 8, item 6): fills argv_out
 * (EXEC_VENV_ARGC entries plus a NULL) so that the run creates `venv_dir` with
 * `python -m venv --system-site-packages`, then runs
 * `venv_dir/bin/python -m pip install -r requirements_path` (skipped when
 * requirements_path is NULL or ""), through /bin/sh with the paths as
 * positional parameters (never parsed as shell text). The strings are
 * borrowed, not copied. Give the spec a timeout and limits fit for pip
 * (e.g. no address-space limit, as the test does); network
 * settings (proxies, index URL) go in the spec's env. Exit status 0 = done;
 * otherwise the log tail says what pip said. */
#define EXEC_VENV_ARGC 6
void executor_venv_argv(const char *python, const char *venv_dir, const char *requirements_path,
                        const char *argv_out[EXEC_VENV_ARGC + 1]);

#endif
