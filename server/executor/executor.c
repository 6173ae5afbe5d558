/*
 * executor.c — the run pool, the queue and the one thread that spawns,
 * watches, times out and reaps every agent process (design in executor.h).
 */
#include "executor.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "error.h"
#include "events.h"
#include "log.h"

#define DEFAULT_SLOTS 4
#define DEFAULT_QUEUE 64
#define DEFAULT_LOG_TAIL (64 * 1024)
#define DEFAULT_EVENT_LINE (1024 * 1024)
#define DEFAULT_TIMEOUT_MS (600 * 1000)
#define DEFAULT_GRACE_MS 2000
#define EVENTS_FD 3
#define READ_CHUNK (64 * 1024)
/* Without pidfd_open (kernels before 5.3) children are polled this often. */
#define WAITPID_POLL_MS 50
/* Child descriptors are moved at least this high so that a dup2 onto 0..3 in
 * the file actions never has source == target (which would keep CLOEXEC). */
#define CHILD_FD_FLOOR 10
/* Rounds of "read cgroup.procs, SIGKILL each" before giving up (cgroup v1,
 * no cgroup.kill); pids.max bounds what a round has to kill. */
#define CGROUP_KILL_ROUNDS 50

typedef struct Run {
    /* The copied spec. */
    char *id;
    char **argv;
    char **envp;
    char *workdir;
    char *stdin_text;
    size_t stdin_len;
    unsigned timeout_ms;
    ExecLimits limits;
    int cancel_requested; /* under Executor.lock */

    /* Executor thread only, once spawned. */
    pid_t pid;
    int pidfd, out_fd, events_fd, stdin_fd;
    size_t stdin_written;
    char *ring; /* output tail */
    size_t ring_len, ring_start;
    char *line; /* partial events line */
    size_t line_len, line_cap;
    int line_too_long;
    unsigned event_errors;
    uint64_t deadline_ms, kill_at_ms;
    int killed;
    int reaped; /* the pid is no longer ours to signal */
    ExecStopReason stop_reason;
    char *cgroup; /* this run's cgroup directory, NULL without */
} Run;

struct Executor {
    ExecutorConfig cfg;
    char *wrapper_path;
    char *cgroup_parent; /* NULL: no cgroups */
    ExecutorCallbacks cb;
    void *ud;

    pthread_mutex_t lock;
    pthread_t thread;
    int wake_fd;
    Run **queue; /* ring of queue_capacity */
    unsigned queue_head, queue_len;
    Run **slots; /* slots entries; NULL = free */
    int stopping;

    /* Executor thread only. */
    uint64_t cgroup_seq;
    char read_buf[READ_CHUNK];
};

static void set_err(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void set_err(char *err, size_t errlen, const char *fmt, ...)
{
    if (!err || !errlen)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

void executor_config_defaults(ExecutorConfig *cfg)
{
    memset(cfg, 0, sizeof *cfg);
    cfg->slots = DEFAULT_SLOTS;
    cfg->queue_capacity = DEFAULT_QUEUE;
    cfg->log_tail_bytes = DEFAULT_LOG_TAIL;
    cfg->max_event_line = DEFAULT_EVENT_LINE;
    cfg->default_timeout_ms = DEFAULT_TIMEOUT_MS;
    cfg->kill_grace_ms = DEFAULT_GRACE_MS;
    cfg->limits.cpu_seconds = 600;
    cfg->limits.address_space = 1024ull * 1024 * 1024;
    cfg->limits.open_files = 256;
    cfg->limits.processes = 256;
    cfg->limits.pids_max = 256;
    cfg->cgroup_mode = EXEC_CGROUP_AUTO;
    cfg->run_uid = -1;
    cfg->run_gid = -1;
}

/* ---- runs: copy and free -------------------------------------------------- */

static void free_strv(char **v)
{
    if (!v)
        return;
    for (char **p = v; *p; p++)
        free(*p);
    free(v);
}

static void run_free(Run *run)
{
    if (!run)
        return;
    free(run->id);
    free_strv(run->argv);
    free_strv(run->envp);
    free(run->workdir);
    free(run->stdin_text);
    free(run->ring);
    free(run->line);
    free(run->cgroup);
    free(run);
}

static size_t env_name_len(const char *entry)
{
    const char *eq = strchr(entry, '=');
    return eq ? (size_t)(eq - entry) : 0;
}

/* Sets NAME=value in a NULL-terminated vector of capacity `cap`, replacing an
 * entry with the same name. 0, or -1 when out of memory. */
static int env_set(char **envp, size_t cap, const char *entry)
{
    size_t name_len = env_name_len(entry);
    size_t i = 0;
    for (; envp[i]; i++) {
        if (env_name_len(envp[i]) == name_len && strncmp(envp[i], entry, name_len) == 0)
            break;
    }
    if (i + 1 >= cap)
        return -1;
    char *copy = strdup(entry);
    if (!copy)
        return -1;
    free(envp[i]);
    envp[i] = copy;
    return 0;
}

/* The child's whole environment: defaults, the spec's variables, then the
 * executor's own NORN_ variables. */
static char **build_env(const RunSpec *spec, size_t env_count)
{
    size_t cap = env_count + 6;
    char **envp = calloc(cap, sizeof *envp);
    if (!envp)
        return NULL;
    size_t home_len = strlen(spec->workdir) + sizeof "HOME=";
    char *home = malloc(home_len);
    size_t run_len = strlen(spec->run_id) + sizeof "NORN_RUN_ID=";
    char *run_id = malloc(run_len);
    int ok = home && run_id;
    if (ok) {
        snprintf(home, home_len, "HOME=%s", spec->workdir);
        snprintf(run_id, run_len, "NORN_RUN_ID=%s", spec->run_id);
        ok = env_set(envp, cap, "PATH=/usr/local/bin:/usr/bin:/bin") == 0 &&
             env_set(envp, cap, home) == 0 && env_set(envp, cap, "LANG=C.UTF-8") == 0;
    }
    for (size_t i = 0; ok && i < env_count; i++)
        ok = env_set(envp, cap, spec->env[i]) == 0;
    ok = ok && env_set(envp, cap, run_id) == 0 && env_set(envp, cap, "NORN_EVENTS_FD=3") == 0;
    free(home);
    free(run_id);
    if (!ok) {
        free_strv(envp);
        return NULL;
    }
    return envp;
}

static size_t strv_count(const char *const *v, size_t max)
{
    size_t n = 0;
    while (v && v[n] && n <= max)
        n++;
    return n;
}

static int validate_spec(const RunSpec *spec, size_t *argc_out, size_t *envc_out, char *err,
                         size_t errlen)
{
    if (!spec->run_id || !*spec->run_id || strlen(spec->run_id) > EXEC_MAX_ID_LEN) {
        set_err(err, errlen, "run id must have 1 to %d characters", EXEC_MAX_ID_LEN);
        return NORN_ERR_INVALID;
    }
    size_t argc = strv_count(spec->argv, EXEC_MAX_ARGS);
    if (argc == 0 || argc > EXEC_MAX_ARGS || !*spec->argv[0]) {
        set_err(err, errlen, "argv must have 1 to %d entries and a program", EXEC_MAX_ARGS);
        return NORN_ERR_INVALID;
    }
    for (size_t i = 0; i < argc; i++) {
        if (strlen(spec->argv[i]) > EXEC_MAX_STRING) {
            set_err(err, errlen, "argv[%zu] is longer than %d bytes", i, EXEC_MAX_STRING);
            return NORN_ERR_INVALID;
        }
    }
    if (!spec->workdir || spec->workdir[0] != '/' || strlen(spec->workdir) >= PATH_MAX) {
        set_err(err, errlen, "workdir must be an absolute path shorter than %d", PATH_MAX);
        return NORN_ERR_INVALID;
    }
    size_t envc = strv_count(spec->env, EXEC_MAX_ENV);
    if (envc > EXEC_MAX_ENV) {
        set_err(err, errlen, "more than %d environment variables", EXEC_MAX_ENV);
        return NORN_ERR_INVALID;
    }
    for (size_t i = 0; i < envc; i++) {
        const char *entry = spec->env[i];
        if (env_name_len(entry) == 0 || strlen(entry) > EXEC_MAX_STRING) {
            set_err(err, errlen, "env[%zu] must be NAME=value of at most %d bytes", i,
                    EXEC_MAX_STRING);
            return NORN_ERR_INVALID;
        }
        if (strncmp(entry, "NORN_RUN_ID=", 12) == 0 || strncmp(entry, "NORN_EVENTS_FD=", 15) == 0) {
            set_err(err, errlen, "env[%zu]: NORN_RUN_ID and NORN_EVENTS_FD are set by the executor",
                    i);
            return NORN_ERR_INVALID;
        }
    }
    if (spec->stdin_text && strlen(spec->stdin_text) > EXEC_MAX_STDIN) {
        set_err(err, errlen, "stdin text is longer than %d bytes", EXEC_MAX_STDIN);
        return NORN_ERR_INVALID;
    }
    *argc_out = argc;
    *envc_out = envc;
    return 0;
}

static Run *run_new(const Executor *ex, const RunSpec *spec, size_t argc, size_t envc)
{
    Run *run = calloc(1, sizeof *run);
    if (!run)
        return NULL;
    run->pidfd = run->out_fd = run->events_fd = run->stdin_fd = -1;
    run->id = strdup(spec->run_id);
    run->workdir = strdup(spec->workdir);
    run->stdin_text = strdup(spec->stdin_text ? spec->stdin_text : "");
    run->argv = calloc(argc + 1, sizeof *run->argv);
    run->envp = build_env(spec, envc);
    int ok = run->id && run->workdir && run->stdin_text && run->argv && run->envp;
    for (size_t i = 0; ok && i < argc; i++)
        ok = (run->argv[i] = strdup(spec->argv[i])) != NULL;
    if (!ok) {
        run_free(run);
        return NULL;
    }
    run->stdin_len = strlen(run->stdin_text);
    run->timeout_ms = spec->timeout_ms ? spec->timeout_ms : ex->cfg.default_timeout_ms;
    run->limits = spec->limits ? *spec->limits : ex->cfg.limits;
    return run;
}

/* ---- cgroups ------------------------------------------------------------- */

static int write_text(const char *dir, const char *file, const char *text)
{
    char path[PATH_MAX];
    if ((size_t)snprintf(path, sizeof path, "%s/%s", dir, file) >= sizeof path) {
        errno = ENAMETOOLONG;
        return -1;
    }
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    ssize_t n = write(fd, text, strlen(text));
    int saved = errno;
    close(fd);
    errno = saved;
    return n == (ssize_t)strlen(text) ? 0 : -1;
}

static int has_file(const char *dir, const char *file)
{
    char path[PATH_MAX];
    if ((size_t)snprintf(path, sizeof path, "%s/%s", dir, file) >= sizeof path)
        return 0;
    return access(path, F_OK) == 0;
}

/* SIGKILLs everything in a run's cgroup, including processes that left its
 * process group. */
static void cgroup_kill_all(const char *dir)
{
    if (has_file(dir, "cgroup.kill")) {
        if (write_text(dir, "cgroup.kill", "1") == 0)
            return;
    }
    char path[PATH_MAX];
    if ((size_t)snprintf(path, sizeof path, "%s/cgroup.procs", dir) >= sizeof path)
        return;
    for (int round = 0; round < CGROUP_KILL_ROUNDS; round++) {
        FILE *f = fopen(path, "re");
        if (!f)
            return;
        long pid;
        int seen = 0;
        while (fscanf(f, "%ld", &pid) == 1) {
            kill((pid_t)pid, SIGKILL);
            seen++;
        }
        fclose(f);
        if (!seen)
            return;
    }
}

/* rmdir fails while killed processes are still exiting; retry briefly. */
static void cgroup_remove(const char *dir)
{
    for (int attempt = 0; attempt < 200; attempt++) {
        if (rmdir(dir) == 0 || errno == ENOENT)
            return;
        if (errno != EBUSY)
            break;
        cgroup_kill_all(dir);
        struct timespec pause = {0, 5 * 1000 * 1000};
        nanosleep(&pause, NULL);
    }
    log_warn("executor_cgroup_left", "dir=%s err=%d", dir, errno);
}

/* Kills and removes what a dead server left under `base`: directories
 * norn-executor-<pid>-<n> whose <pid> is gone, with their run-* cgroups.
 * Agents of a live server (another nornd, another executor) are left alone. */
static void reclaim_stale_cgroups(const char *base)
{
    DIR *dir = opendir(base);
    if (!dir)
        return;
    struct dirent *entry;
    while ((entry = readdir(dir))) {
        long owner;
        if (sscanf(entry->d_name, "norn-executor-%ld-", &owner) != 1 || owner <= 0 ||
            owner == (long)getpid() || kill((pid_t)owner, 0) == 0 || errno != ESRCH)
            continue;
        char stale[PATH_MAX];
        if ((size_t)snprintf(stale, sizeof stale, "%s/%s", base, entry->d_name) >= sizeof stale)
            continue;
        DIR *runs = opendir(stale);
        struct dirent *run;
        while (runs && (run = readdir(runs))) {
            char run_dir[PATH_MAX];
            if (strncmp(run->d_name, "run-", 4) != 0 ||
                (size_t)snprintf(run_dir, sizeof run_dir, "%s/%s", stale, run->d_name) >=
                    sizeof run_dir)
                continue;
            cgroup_kill_all(run_dir);
            cgroup_remove(run_dir);
        }
        if (runs)
            closedir(runs);
        log_warn("executor_reclaimed_cgroup", "dir=%s", stale);
        cgroup_remove(stale);
    }
    closedir(dir);
}

/* Creates `<base>/norn-executor-<pid>-<n>` and keeps it when it has
 * pids.max, after reclaiming what a crashed server left there. */
static char *try_cgroup_parent(const char *base)
{
    static unsigned executors_made;
    unsigned n = __atomic_add_fetch(&executors_made, 1, __ATOMIC_RELAXED);
    reclaim_stale_cgroups(base);
    char dir[PATH_MAX];
    if ((size_t)snprintf(dir, sizeof dir, "%s/norn-executor-%ld-%u", base, (long)getpid(), n) >=
        sizeof dir)
        return NULL;
    if (mkdir(dir, 0755) != 0 && errno != EEXIST)
        return NULL;
    if (!has_file(dir, "pids.max")) {
        rmdir(dir);
        return NULL;
    }
    return strdup(dir);
}

/* The directory of our own cgroup: `mount` plus the path of the
 * /proc/self/cgroup line containing `needle` (":pids:" for v1, "0::" at the
 * start of the line for v2). 0, or -1 when there is no such line. */
static int own_cgroup_dir(const char *mount, const char *needle, char *out, size_t cap)
{
    FILE *f = fopen("/proc/self/cgroup", "re");
    if (!f)
        return -1;
    char line[PATH_MAX + 64];
    int found = -1;
    while (found != 0 && fgets(line, sizeof line, f)) {
        line[strcspn(line, "\n")] = '\0';
        char *hit = strstr(line, needle);
        if (!hit || (needle[0] == '0' && hit != line))
            continue;
        const char *path = hit + strlen(needle);
        if (path[0] != '/')
            continue;
        if ((size_t)snprintf(out, cap, "%s%s", mount, path[1] ? path : "") < cap)
            found = 0;
    }
    fclose(f);
    return found;
}

static char *probe_cgroup_parent(void)
{
    char base[PATH_MAX];
    if (own_cgroup_dir("/sys/fs/cgroup/pids", ":pids:", base, sizeof base) == 0) {
        char *dir = try_cgroup_parent(base);
        if (dir)
            return dir;
    }
    if (own_cgroup_dir("/sys/fs/cgroup", "0::", base, sizeof base) == 0)
        return try_cgroup_parent(base);
    return NULL;
}

/* ---- spawning ------------------------------------------------------------ */

/* A pipe whose ends are CLOEXEC and at least CHILD_FD_FLOOR. */
static int pipe_high(int fds[2])
{
    int raw[2];
    if (pipe2(raw, O_CLOEXEC) != 0)
        return -1;
    for (int i = 0; i < 2; i++) {
        fds[i] = fcntl(raw[i], F_DUPFD_CLOEXEC, CHILD_FD_FLOOR);
        close(raw[i]);
    }
    if (fds[0] < 0 || fds[1] < 0) {
        if (fds[0] >= 0)
            close(fds[0]);
        if (fds[1] >= 0)
            close(fds[1]);
        return -1;
    }
    return 0;
}

static void close_fd(int *fd)
{
    if (*fd >= 0)
        close(*fd);
    *fd = -1;
}

static int set_nonblock(int fd)
{
    int flags = fcntl(fd, F_GETFL);
    return flags < 0 ? -1 : fcntl(fd, F_SETFL, flags | O_NONBLOCK);
}

/* Wrapper options for the limits, the cgroup, the uid and the server's pid,
 * then "--" and the agent's argv. Numbers are formatted into `numbers`. */
#define WRAPPER_MAX_OPTIONS 19 /* the program, 8 option pairs, "--", NULL */
static char **wrapper_argv(const Executor *ex, const Run *run, char numbers[7][24])
{
    size_t argc = 0;
    while (run->argv[argc])
        argc++;
    char **argv = calloc(argc + WRAPPER_MAX_OPTIONS, sizeof *argv);
    if (!argv)
        return NULL;
    size_t n = 0, k = 0;
    argv[n++] = ex->wrapper_path;
    const struct {
        const char *flag;
        uint64_t value;
    } opts[] = {
        {"--cpu", run->limits.cpu_seconds},
        {"--as", run->limits.address_space},
        {"--nofile", run->limits.open_files},
        {"--nproc", run->limits.processes},
    };
    for (size_t i = 0; i < sizeof opts / sizeof opts[0]; i++) {
        if (!opts[i].value)
            continue;
        snprintf(numbers[k], sizeof numbers[k], "%llu", (unsigned long long)opts[i].value);
        argv[n++] = (char *)opts[i].flag;
        argv[n++] = numbers[k++];
    }
    if (run->cgroup) {
        argv[n++] = "--cgroup";
        argv[n++] = run->cgroup;
    }
    if (ex->cfg.run_uid >= 0) {
        snprintf(numbers[k], sizeof numbers[k], "%ld", ex->cfg.run_uid);
        argv[n++] = "--uid";
        argv[n++] = numbers[k++];
        snprintf(numbers[k], sizeof numbers[k], "%ld", ex->cfg.run_gid);
        argv[n++] = "--gid";
        argv[n++] = numbers[k++];
    }
    snprintf(numbers[k], sizeof numbers[k], "%ld", (long)getpid());
    argv[n++] = "--parent";
    argv[n++] = numbers[k++];
    argv[n++] = "--";
    for (size_t i = 0; i < argc; i++)
        argv[n++] = run->argv[i];
    return argv;
}

static int make_run_cgroup(Executor *ex, Run *run, char *err, size_t errlen)
{
    char dir[PATH_MAX], limit[24];
    snprintf(dir, sizeof dir, "%s/run-%llu", ex->cgroup_parent,
             (unsigned long long)++ex->cgroup_seq);
    if (mkdir(dir, 0755) != 0) {
        set_err(err, errlen, "cannot create cgroup %s: %s", dir, strerror(errno));
        return -1;
    }
    if (run->limits.pids_max) {
        snprintf(limit, sizeof limit, "%llu", (unsigned long long)run->limits.pids_max);
        if (write_text(dir, "pids.max", limit) != 0) {
            set_err(err, errlen, "cannot set pids.max in %s: %s", dir, strerror(errno));
            rmdir(dir);
            return -1;
        }
    }
    /* A root server running agents as another uid lets the wrapper join
     * before it drops privileges, so root ownership is fine. */
    run->cgroup = strdup(dir);
    if (!run->cgroup) {
        rmdir(dir);
        set_err(err, errlen, "out of memory");
        return -1;
    }
    return 0;
}

/* Starts a run's process. 0, or -1 with the reason in err (nothing left
 * open). */
static int spawn_run(Executor *ex, Run *run, char *err, size_t errlen)
{
    int in[2] = {-1, -1}, out[2] = {-1, -1}, events[2] = {-1, -1};
    char numbers[7][24];
    char **argv = NULL;
    int rc = -1;
    run->ring = malloc(ex->cfg.log_tail_bytes);
    if (!run->ring) {
        set_err(err, errlen, "out of memory");
        return -1;
    }
    if (pipe_high(in) || pipe_high(out) || pipe_high(events)) {
        set_err(err, errlen, "cannot create pipes: %s", strerror(errno));
        goto done;
    }
    if (ex->cgroup_parent && make_run_cgroup(ex, run, err, errlen) != 0)
        goto done;
    argv = wrapper_argv(ex, run, numbers);
    if (!argv) {
        set_err(err, errlen, "out of memory");
        goto done;
    }

    posix_spawn_file_actions_t actions;
    posix_spawnattr_t attr;
    posix_spawn_file_actions_init(&actions);
    posix_spawnattr_init(&attr);
    sigset_t none, all;
    sigemptyset(&none);
    sigfillset(&all);
    posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGMASK |
                                        POSIX_SPAWN_SETSIGDEF);
    posix_spawnattr_setpgroup(&attr, 0);
    posix_spawnattr_setsigmask(&attr, &none);
    posix_spawnattr_setsigdefault(&attr, &all);
    posix_spawn_file_actions_adddup2(&actions, in[0], STDIN_FILENO);
    posix_spawn_file_actions_adddup2(&actions, out[1], STDOUT_FILENO);
    posix_spawn_file_actions_adddup2(&actions, out[1], STDERR_FILENO);
    posix_spawn_file_actions_adddup2(&actions, events[1], EVENTS_FD);
    posix_spawn_file_actions_addclosefrom_np(&actions, EVENTS_FD + 1);
    posix_spawn_file_actions_addchdir_np(&actions, run->workdir);
    pid_t pid;
    int spawn_err = posix_spawn(&pid, ex->wrapper_path, &actions, &attr, argv, run->envp);
    posix_spawn_file_actions_destroy(&actions);
    posix_spawnattr_destroy(&attr);
    if (spawn_err) {
        set_err(err, errlen, "cannot start %s in %s: %s", ex->wrapper_path, run->workdir,
                strerror(spawn_err));
        goto done;
    }
    run->pid = pid;
    run->pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
    run->stdin_fd = in[1];
    run->out_fd = out[0];
    run->events_fd = events[0];
    in[1] = out[0] = events[0] = -1;
    set_nonblock(run->stdin_fd);
    set_nonblock(run->out_fd);
    set_nonblock(run->events_fd);
    if (run->stdin_len == 0)
        close_fd(&run->stdin_fd);
    run->deadline_ms = now_ms() + run->timeout_ms;
    rc = 0;
done:
    free(argv);
    for (int i = 0; i < 2; i++) {
        close_fd(&in[i]);
        close_fd(&out[i]);
        close_fd(&events[i]);
    }
    if (rc != 0 && run->cgroup) {
        rmdir(run->cgroup);
        free(run->cgroup);
        run->cgroup = NULL;
    }
    return rc;
}

/* ---- a running run ------------------------------------------------------- */

static void kill_everything(Run *run)
{
    kill(-run->pid, SIGKILL);
    if (run->cgroup)
        cgroup_kill_all(run->cgroup);
    run->killed = 1;
}

/* Starts stopping a run: SIGTERM now and SIGKILL after the grace period, or
 * SIGKILL at once for the guard and shutdown. The first reason sticks. */
static void stop_run(const Executor *ex, Run *run, ExecStopReason reason)
{
    if (run->stop_reason != EXEC_STOP_NONE)
        return;
    run->stop_reason = reason;
    if (run->reaped) /* a TERMINATE for lines drained after the exit */
        return;
    if (reason == EXEC_STOP_GUARD || reason == EXEC_STOP_SHUTDOWN) {
        kill_everything(run);
        return;
    }
    kill(-run->pid, SIGTERM);
    run->kill_at_ms = now_ms() + ex->cfg.kill_grace_ms;
}

static void ring_append(Run *run, size_t cap, const char *data, size_t len)
{
    if (len >= cap) {
        memcpy(run->ring, data + len - cap, cap);
        run->ring_start = 0;
        run->ring_len = cap;
        return;
    }
    for (size_t i = 0; i < len; i++) {
        run->ring[(run->ring_start + run->ring_len) % cap] = data[i];
        if (run->ring_len < cap)
            run->ring_len++;
        else
            run->ring_start = (run->ring_start + 1) % cap;
    }
}

/* Length of the valid UTF-8 sequence at s (1..4), or 0 when invalid. */
static size_t utf8_sequence(const unsigned char *s, size_t left)
{
    if (s[0] < 0x80)
        return s[0] ? 1 : 0;
    size_t len = (s[0] & 0xE0) == 0xC0   ? 2
                 : (s[0] & 0xF0) == 0xE0 ? 3
                 : (s[0] & 0xF8) == 0xF0 ? 4
                                         : 0;
    if (!len || len > left || s[0] == 0xC0 || s[0] == 0xC1 || s[0] > 0xF4)
        return 0;
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xC0) != 0x80)
            return 0;
    }
    uint32_t cp = s[0] & (0x7F >> len);
    for (size_t i = 1; i < len; i++)
        cp = (cp << 6) | (s[i] & 0x3F);
    static const uint32_t min_cp[] = {0, 0, 0x80, 0x800, 0x10000};
    if (cp < min_cp[len] || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
        return 0;
    return len;
}

/* The tail as a C string of valid UTF-8: a sequence cut by the ring start is
 * dropped, other invalid bytes and NULs become '?'. Caller frees. */
static char *ring_text(const Run *run, size_t cap)
{
    unsigned char *flat = malloc(run->ring_len + 1);
    if (!flat)
        return NULL;
    for (size_t i = 0; i < run->ring_len; i++)
        flat[i] = (unsigned char)run->ring[(run->ring_start + i) % cap];
    size_t i = 0, o = 0;
    while (i < run->ring_len && (flat[i] & 0xC0) == 0x80)
        i++;
    while (i < run->ring_len) {
        size_t len = utf8_sequence(flat + i, run->ring_len - i);
        if (len == 0) {
            flat[o++] = '?';
            i++;
            continue;
        }
        memmove(flat + o, flat + i, len);
        o += len;
        i += len;
    }
    flat[o] = '\0';
    return (char *)flat;
}

/* Reads from a run's pipe: 1 after data, 0 when nothing is there now, -1
 * at end of file or on an error. */
static int read_pipe(Executor *ex, int fd, size_t *len)
{
    ssize_t n = read(fd, ex->read_buf, sizeof ex->read_buf);
    *len = n > 0 ? (size_t)n : 0;
    if (n > 0)
        return 1;
    return n < 0 && (errno == EAGAIN || errno == EINTR) ? 0 : -1;
}

static int read_output(Executor *ex, Run *run)
{
    size_t len;
    int rc = read_pipe(ex, run->out_fd, &len);
    if (rc > 0)
        ring_append(run, ex->cfg.log_tail_bytes, ex->read_buf, len);
    return rc;
}

static void dispatch_line(Executor *ex, Run *run, const char *line, size_t len)
{
    ParsedEvent parsed;
    parsed_event_parse(&parsed, line, len);
    if (parsed.event.kind == EXEC_EVENT_ERROR)
        run->event_errors++;
    int terminate = ex->cb.on_event ? ex->cb.on_event(ex->ud, run->id, &parsed.event) : 0;
    parsed_event_clear(&parsed);
    if (terminate)
        stop_run(ex, run, EXEC_STOP_GUARD);
}

static void report_long_line(Executor *ex, Run *run)
{
    char msg[96];
    snprintf(msg, sizeof msg, "line longer than %zu bytes dropped", ex->cfg.max_event_line);
    ExecEvent event = {.kind = EXEC_EVENT_ERROR, .error = msg};
    run->event_errors++;
    if (ex->cb.on_event && ex->cb.on_event(ex->ud, run->id, &event))
        stop_run(ex, run, EXEC_STOP_GUARD);
}

/* Appends to the partial line, growing its buffer up to max_event_line. */
static int line_append(Executor *ex, Run *run, const char *data, size_t len)
{
    if (run->line_len + len > ex->cfg.max_event_line)
        return -1;
    if (run->line_len + len > run->line_cap) {
        size_t cap = run->line_cap ? run->line_cap : 4096;
        while (cap < run->line_len + len)
            cap *= 2;
        if (cap > ex->cfg.max_event_line)
            cap = ex->cfg.max_event_line;
        char *grown = realloc(run->line, cap);
        if (!grown)
            return -1;
        run->line = grown;
        run->line_cap = cap;
    }
    memcpy(run->line + run->line_len, data, len);
    run->line_len += len;
    return 0;
}

/* Splits events data into lines; after a guard TERMINATE the rest is dropped. */
static void take_events(Executor *ex, Run *run, const char *data, size_t len)
{
    while (len > 0 && run->stop_reason != EXEC_STOP_GUARD) {
        const char *nl = memchr(data, '\n', len);
        size_t part = nl ? (size_t)(nl - data) : len;
        if (!run->line_too_long && line_append(ex, run, data, part) != 0) {
            run->line_too_long = 1;
            run->line_len = 0;
        }
        if (nl) {
            if (run->line_too_long)
                report_long_line(ex, run);
            else if (run->line_len > 0)
                dispatch_line(ex, run, run->line, run->line_len);
            run->line_len = 0;
            run->line_too_long = 0;
            part++;
        }
        data += part;
        len -= part;
    }
}

static int read_events(Executor *ex, Run *run)
{
    size_t len;
    int rc = read_pipe(ex, run->events_fd, &len);
    if (rc > 0)
        take_events(ex, run, ex->read_buf, len);
    return rc;
}

static void write_stdin(Run *run)
{
    ssize_t n = write(run->stdin_fd, run->stdin_text + run->stdin_written,
                      run->stdin_len - run->stdin_written);
    if (n > 0)
        run->stdin_written += (size_t)n;
    if (n < 0 && errno == EPIPE) {
        /* The agent closed stdin; the SIGPIPE is pending on this thread
         * (which blocks every signal): consume it. */
        sigset_t pipe_only;
        sigemptyset(&pipe_only);
        sigaddset(&pipe_only, SIGPIPE);
        struct timespec zero = {0, 0};
        sigtimedwait(&pipe_only, NULL, &zero);
    }
    if ((n < 0 && errno != EAGAIN && errno != EINTR) || run->stdin_written == run->stdin_len)
        close_fd(&run->stdin_fd);
}

static const char *signal_hint(int sig)
{
    switch (sig) {
    case SIGKILL: return " (SIGKILL: killed, e.g. at the CPU hard limit)";
    case SIGXCPU: return " (SIGXCPU: CPU time limit)";
    case SIGSEGV: return " (SIGSEGV)";
    case SIGABRT: return " (SIGABRT)";
    case SIGTERM: return " (SIGTERM)";
    default: return "";
    }
}

static void report(Executor *ex, const ExecRunReport *r)
{
    if (ex->cb.on_state)
        ex->cb.on_state(ex->ud, r);
}

/* The main process was reaped with `status` after everything else of the
 * run got SIGKILL: drain the pipes, report the final state. The caller frees
 * the run. Draining stops at the first empty read, since a killed process
 * may still hold a write end for a moment; DRAIN_READS bounds it too. */
#define DRAIN_READS 64
static void finish_run(Executor *ex, Run *run, int status)
{
    for (int i = 0; run->out_fd >= 0 && i < DRAIN_READS && read_output(ex, run) > 0; i++) {
    }
    for (int i = 0; run->events_fd >= 0 && i < DRAIN_READS && read_events(ex, run) > 0; i++) {
    }
    /* A last line without its newline still counts. */
    if (run->line_len > 0 && !run->line_too_long && run->stop_reason != EXEC_STOP_GUARD)
        dispatch_line(ex, run, run->line, run->line_len);
    close_fd(&run->out_fd);
    close_fd(&run->events_fd);
    close_fd(&run->stdin_fd);
    close_fd(&run->pidfd);
    if (run->cgroup)
        cgroup_remove(run->cgroup);

    ExecRunReport r = {.run_id = run->id,
                       .pid = run->pid,
                       .stop_reason = run->stop_reason,
                       .event_errors = run->event_errors};
    char error[160] = "";
    if (WIFEXITED(status)) {
        r.exited = 1;
        r.exit_code = WEXITSTATUS(status);
    } else if (WIFSIGNALED(status)) {
        r.term_signal = WTERMSIG(status);
    }
    switch (run->stop_reason) {
    case EXEC_STOP_TIMEOUT:
        r.state = EXEC_RUN_TIMED_OUT;
        snprintf(error, sizeof error, "timed out after %u ms", run->timeout_ms);
        break;
    case EXEC_STOP_CANCEL:
        r.state = EXEC_RUN_CANCELLED;
        snprintf(error, sizeof error, "cancelled");
        break;
    case EXEC_STOP_SHUTDOWN:
        r.state = EXEC_RUN_CANCELLED;
        snprintf(error, sizeof error, "the executor shut down");
        break;
    case EXEC_STOP_GUARD:
        r.state = EXEC_RUN_FAILED;
        snprintf(error, sizeof error, "terminated by the guard");
        break;
    case EXEC_STOP_NONE:
        if (r.exited && r.exit_code == 0)
            r.state = EXEC_RUN_SUCCEEDED;
        else if (r.exited) {
            r.state = EXEC_RUN_FAILED;
            snprintf(error, sizeof error, "exited with code %d%s", r.exit_code,
                     r.exit_code == 127 ? " (program not found or the wrapper failed; see log)"
                                        : "");
        } else {
            r.state = EXEC_RUN_FAILED;
            snprintf(error, sizeof error, "killed by signal %d%s", r.term_signal,
                     signal_hint(r.term_signal));
        }
        break;
    }
    char *tail = ring_text(run, ex->cfg.log_tail_bytes);
    r.log_tail = tail ? tail : "";
    r.error = error[0] ? error : NULL;
    report(ex, &r);
    free(tail);
}

/* ---- the executor thread ------------------------------------------------- */

static void report_simple(Executor *ex, Run *run, ExecRunState state, ExecStopReason reason,
                          const char *error)
{
    ExecRunReport r = {.run_id = run->id,
                       .state = state,
                       .pid = run->pid,
                       .stop_reason = reason,
                       .log_tail = "",
                       .error = error};
    report(ex, &r);
}

/* Takes a run out of its slot before its final state is reported, so that
 * once on_state has said so the run id is free (cancel: NOT_FOUND). */
static Run *detach_slot(Executor *ex, unsigned slot)
{
    pthread_mutex_lock(&ex->lock);
    Run *run = ex->slots[slot];
    ex->slots[slot] = NULL;
    pthread_mutex_unlock(&ex->lock);
    return run;
}

/* Under the lock: cancelled queued runs move to `cancelled`, free slots take
 * queued runs (marked in `fresh`), running runs with a cancel get stopped. */
static unsigned schedule_locked(Executor *ex, Run **cancelled, int *fresh, int *cancel_running)
{
    unsigned n_cancelled = 0, kept = 0;
    for (unsigned i = 0; i < ex->queue_len; i++) {
        Run *run = ex->queue[(ex->queue_head + i) % ex->cfg.queue_capacity];
        if (run->cancel_requested)
            cancelled[n_cancelled++] = run;
        else
            ex->queue[(ex->queue_head + kept++) % ex->cfg.queue_capacity] = run;
    }
    ex->queue_len = kept;
    for (unsigned s = 0; s < ex->cfg.slots; s++) {
        fresh[s] = 0;
        cancel_running[s] = ex->slots[s] && ex->slots[s]->cancel_requested;
        if (!ex->slots[s] && ex->queue_len > 0) {
            ex->slots[s] = ex->queue[ex->queue_head];
            ex->queue_head = (ex->queue_head + 1) % ex->cfg.queue_capacity;
            ex->queue_len--;
            fresh[s] = 1;
        }
    }
    return n_cancelled;
}

/* Reaps a run whose main process is done; 1 if it was. */
static int try_reap(Executor *ex, unsigned slot)
{
    Run *run = ex->slots[slot];
    siginfo_t info = {0};
    /* WNOWAIT: the process group must be killed while the pid still pins it. */
    if (waitid(P_PID, (id_t)run->pid, &info, WEXITED | WNOHANG | WNOWAIT) != 0 || info.si_pid == 0)
        return 0;
    kill_everything(run);
    int status = 0;
    waitpid(run->pid, &status, 0);
    run->reaped = 1;
    finish_run(ex, detach_slot(ex, slot), status);
    run_free(run);
    return 1;
}

static void check_timers(Executor *ex, uint64_t now)
{
    for (unsigned s = 0; s < ex->cfg.slots; s++) {
        Run *run = ex->slots[s];
        if (!run || !run->pid)
            continue;
        if (run->stop_reason == EXEC_STOP_NONE && now >= run->deadline_ms)
            stop_run(ex, run, EXEC_STOP_TIMEOUT);
        if (run->stop_reason != EXEC_STOP_NONE && !run->killed && now >= run->kill_at_ms)
            kill_everything(run);
    }
}

static int poll_timeout(const Executor *ex, uint64_t now)
{
    uint64_t next = UINT64_MAX;
    for (unsigned s = 0; s < ex->cfg.slots; s++) {
        const Run *run = ex->slots[s];
        if (!run || !run->pid)
            continue;
        uint64_t at = run->stop_reason == EXEC_STOP_NONE ? run->deadline_ms
                      : run->killed                      ? UINT64_MAX
                                                         : run->kill_at_ms;
        if (run->pidfd < 0 && now + WAITPID_POLL_MS < at)
            at = now + WAITPID_POLL_MS;
        if (at < next)
            next = at;
    }
    if (next == UINT64_MAX)
        return -1;
    return next <= now ? 0 : (int)(next - now > INT_MAX ? INT_MAX : next - now);
}

/* Kills and reports every run at shutdown. */
static void shut_down(Executor *ex)
{
    for (unsigned s = 0; s < ex->cfg.slots; s++) {
        Run *run = ex->slots[s];
        if (!run)
            continue;
        stop_run(ex, run, EXEC_STOP_SHUTDOWN);
        kill_everything(run);
        int status = 0;
        waitpid(run->pid, &status, 0);
        run->reaped = 1;
        finish_run(ex, detach_slot(ex, s), status);
        run_free(run);
    }
    pthread_mutex_lock(&ex->lock);
    unsigned queued = ex->queue_len;
    ex->queue_len = 0;
    pthread_mutex_unlock(&ex->lock);
    for (unsigned i = 0; i < queued; i++) {
        Run *run = ex->queue[(ex->queue_head + i) % ex->cfg.queue_capacity];
        report_simple(ex, run, EXEC_RUN_CANCELLED, EXEC_STOP_SHUTDOWN, "the executor shut down");
        run_free(run);
    }
}

enum { FD_WAKE, FD_PID, FD_OUT, FD_EVENTS, FD_STDIN };

static void *executor_thread(void *arg)
{
    Executor *ex = arg;
    sigset_t all;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, NULL);

    unsigned slots = ex->cfg.slots;
    Run **cancelled = calloc(ex->cfg.queue_capacity, sizeof *cancelled);
    int *fresh = calloc(slots, sizeof *fresh);
    int *cancel_running = calloc(slots, sizeof *cancel_running);
    struct pollfd *fds = calloc(1 + 4 * (size_t)slots, sizeof *fds);
    struct {
        unsigned slot;
        int kind;
    } *what = calloc(1 + 4 * (size_t)slots, sizeof *what);
    if (!cancelled || !fresh || !cancel_running || !fds || !what) {
        log_error("executor_no_memory", "thread=executor");
        abort();
    }

    for (;;) {
        pthread_mutex_lock(&ex->lock);
        int stopping = ex->stopping;
        unsigned n_cancelled = stopping ? 0 : schedule_locked(ex, cancelled, fresh, cancel_running);
        pthread_mutex_unlock(&ex->lock);
        if (stopping)
            break;

        for (unsigned i = 0; i < n_cancelled; i++) {
            report_simple(ex, cancelled[i], EXEC_RUN_CANCELLED, EXEC_STOP_CANCEL,
                          "cancelled while queued");
            run_free(cancelled[i]);
        }
        int respawn = 0;
        for (unsigned s = 0; s < slots; s++) {
            Run *run = ex->slots[s];
            if (cancel_running[s] && run->pid)
                stop_run(ex, run, EXEC_STOP_CANCEL);
            if (!fresh[s])
                continue;
            char err[PATH_MAX + 128];
            if (spawn_run(ex, run, err, sizeof err) != 0) {
                report_simple(ex, detach_slot(ex, s), EXEC_RUN_FAILED, EXEC_STOP_NONE, err);
                run_free(run);
                respawn = 1;
                continue;
            }
            ExecRunReport r = {.run_id = run->id, .state = EXEC_RUN_RUNNING, .pid = run->pid};
            report(ex, &r);
        }
        if (respawn)
            continue;

        size_t n = 0;
        fds[n] = (struct pollfd){.fd = ex->wake_fd, .events = POLLIN};
        what[n++].kind = FD_WAKE;
        for (unsigned s = 0; s < slots; s++) {
            Run *run = ex->slots[s];
            if (!run || !run->pid)
                continue;
            const struct {
                int fd;
                short events;
                int kind;
            } wanted[] = {{run->pidfd, POLLIN, FD_PID},
                          {run->out_fd, POLLIN, FD_OUT},
                          {run->events_fd, POLLIN, FD_EVENTS},
                          {run->stdin_fd, POLLOUT, FD_STDIN}};
            for (size_t w = 0; w < 4; w++) {
                if (wanted[w].fd < 0)
                    continue;
                fds[n] = (struct pollfd){.fd = wanted[w].fd, .events = wanted[w].events};
                what[n].slot = s;
                what[n++].kind = wanted[w].kind;
            }
        }
        int ready = poll(fds, n, poll_timeout(ex, now_ms()));
        if (ready < 0 && errno != EINTR) {
            log_error("executor_poll_failed", "errno=%d", errno);
            abort();
        }
        for (size_t i = 0; ready > 0 && i < n; i++) {
            if (!fds[i].revents)
                continue;
            Run *run = what[i].kind == FD_WAKE ? NULL : ex->slots[what[i].slot];
            switch (what[i].kind) {
            case FD_WAKE: {
                uint64_t count;
                if (read(ex->wake_fd, &count, sizeof count) < 0 && errno != EAGAIN)
                    log_warn("executor_wake_read", "errno=%d", errno);
                break;
            }
            case FD_OUT:
                if (read_output(ex, run) < 0)
                    close_fd(&run->out_fd);
                break;
            case FD_EVENTS:
                if (read_events(ex, run) < 0)
                    close_fd(&run->events_fd);
                break;
            case FD_STDIN: write_stdin(run); break;
            case FD_PID: break; /* reaped below, after its pipes were read */
            }
        }
        check_timers(ex, now_ms());
        for (unsigned s = 0; s < slots; s++) {
            if (ex->slots[s] && ex->slots[s]->pid)
                try_reap(ex, s);
        }
    }
    shut_down(ex);
    free(cancelled);
    free(fresh);
    free(cancel_running);
    free(fds);
    free(what);
    return NULL;
}

/* ---- public API ---------------------------------------------------------- */

Executor *executor_new(const ExecutorConfig *cfg, const ExecutorCallbacks *cb, void *ud, char *err,
                       size_t errlen)
{
    ExecutorConfig defaults;
    executor_config_defaults(&defaults);
    if (!cfg->wrapper_path || access(cfg->wrapper_path, X_OK) != 0) {
        set_err(err, errlen, "exec wrapper %s is not an executable",
                cfg->wrapper_path ? cfg->wrapper_path : "(unset)");
        return NULL;
    }
    if ((cfg->run_uid < 0) != (cfg->run_gid < 0)) {
        set_err(err, errlen, "run_uid and run_gid must be set together");
        return NULL;
    }
    if (cfg->run_uid >= 0 && geteuid() != 0) {
        set_err(err, errlen, "run_uid needs a server running as root");
        return NULL;
    }
    Executor *ex = calloc(1, sizeof *ex);
    if (!ex) {
        set_err(err, errlen, "out of memory");
        return NULL;
    }
    ex->cfg = *cfg;
    ex->cfg.wrapper_path = NULL;
    ex->cfg.cgroup_dir = NULL;
    if (!ex->cfg.slots)
        ex->cfg.slots = defaults.slots;
    if (!ex->cfg.queue_capacity)
        ex->cfg.queue_capacity = defaults.queue_capacity;
    if (!ex->cfg.log_tail_bytes)
        ex->cfg.log_tail_bytes = defaults.log_tail_bytes;
    if (!ex->cfg.max_event_line)
        ex->cfg.max_event_line = defaults.max_event_line;
    if (!ex->cfg.default_timeout_ms)
        ex->cfg.default_timeout_ms = defaults.default_timeout_ms;
    if (!ex->cfg.kill_grace_ms)
        ex->cfg.kill_grace_ms = defaults.kill_grace_ms;
    ex->cb = *cb;
    ex->ud = ud;
    ex->wake_fd = -1;
    ex->wrapper_path = strdup(cfg->wrapper_path);
    ex->queue = calloc(ex->cfg.queue_capacity, sizeof *ex->queue);
    ex->slots = calloc(ex->cfg.slots, sizeof *ex->slots);
    if (!ex->wrapper_path || !ex->queue || !ex->slots) {
        set_err(err, errlen, "out of memory");
        goto fail;
    }
    if (cfg->cgroup_mode == EXEC_CGROUP_AUTO) {
        ex->cgroup_parent =
            cfg->cgroup_dir ? try_cgroup_parent(cfg->cgroup_dir) : probe_cgroup_parent();
        if (cfg->cgroup_dir && !ex->cgroup_parent) {
            set_err(err, errlen, "cannot create a pids cgroup under %s", cfg->cgroup_dir);
            goto fail;
        }
    }
    ex->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (ex->wake_fd < 0) {
        set_err(err, errlen, "eventfd: %s", strerror(errno));
        goto fail;
    }
    pthread_mutex_init(&ex->lock, NULL);
    int rc = pthread_create(&ex->thread, NULL, executor_thread, ex);
    if (rc != 0) {
        pthread_mutex_destroy(&ex->lock);
        set_err(err, errlen, "cannot start the executor thread: %s", strerror(rc));
        goto fail;
    }
    log_info("executor_started", "slots=%u queue=%u cgroup=%s", ex->cfg.slots,
             ex->cfg.queue_capacity, ex->cgroup_parent ? ex->cgroup_parent : "none");
    return ex;
fail:
    if (ex->wake_fd >= 0)
        close(ex->wake_fd);
    if (ex->cgroup_parent)
        rmdir(ex->cgroup_parent);
    free(ex->cgroup_parent);
    free(ex->wrapper_path);
    free(ex->queue);
    free(ex->slots);
    free(ex);
    return NULL;
}

static void wake(Executor *ex)
{
    uint64_t one = 1;
    if (write(ex->wake_fd, &one, sizeof one) < 0 && errno != EAGAIN)
        log_warn("executor_wake_write", "errno=%d", errno);
}

/* Under the lock: the live run with that id, or NULL. */
static Run *find_locked(Executor *ex, const char *run_id)
{
    for (unsigned i = 0; i < ex->queue_len; i++) {
        Run *run = ex->queue[(ex->queue_head + i) % ex->cfg.queue_capacity];
        if (strcmp(run->id, run_id) == 0)
            return run;
    }
    for (unsigned s = 0; s < ex->cfg.slots; s++) {
        if (ex->slots[s] && strcmp(ex->slots[s]->id, run_id) == 0)
            return ex->slots[s];
    }
    return NULL;
}

int executor_submit(Executor *ex, const RunSpec *spec, char *err, size_t errlen)
{
    size_t argc, envc;
    int rc = validate_spec(spec, &argc, &envc, err, errlen);
    if (rc != 0)
        return rc;
    Run *run = run_new(ex, spec, argc, envc);
    if (!run) {
        set_err(err, errlen, "out of memory");
        return NORN_ERR_NO_MEMORY;
    }
    pthread_mutex_lock(&ex->lock);
    if (ex->stopping) {
        rc = NORN_ERR_UNAVAILABLE;
        set_err(err, errlen, "the executor is shutting down");
    } else if (find_locked(ex, spec->run_id)) {
        rc = NORN_ERR_EXISTS;
        set_err(err, errlen, "run %s is already queued or running", spec->run_id);
    } else if (ex->queue_len == ex->cfg.queue_capacity) {
        rc = NORN_ERR_EXHAUSTED;
        set_err(err, errlen, "the run queue is full (%u queued)", ex->cfg.queue_capacity);
    } else {
        ex->queue[(ex->queue_head + ex->queue_len++) % ex->cfg.queue_capacity] = run;
        run = NULL;
    }
    pthread_mutex_unlock(&ex->lock);
    run_free(run);
    if (rc == 0)
        wake(ex);
    return rc;
}

int executor_cancel(Executor *ex, const char *run_id)
{
    pthread_mutex_lock(&ex->lock);
    Run *run = run_id ? find_locked(ex, run_id) : NULL;
    if (run)
        run->cancel_requested = 1;
    pthread_mutex_unlock(&ex->lock);
    if (!run)
        return NORN_ERR_NOT_FOUND;
    wake(ex);
    return 0;
}

void executor_counts(Executor *ex, unsigned *queued, unsigned *running)
{
    pthread_mutex_lock(&ex->lock);
    unsigned busy = 0;
    for (unsigned s = 0; s < ex->cfg.slots; s++)
        busy += ex->slots[s] != NULL;
    if (queued)
        *queued = ex->queue_len;
    if (running)
        *running = busy;
    pthread_mutex_unlock(&ex->lock);
}

int executor_uses_cgroup(const Executor *ex)
{
    return ex->cgroup_parent != NULL;
}

void executor_free(Executor *ex)
{
    if (!ex)
        return;
    pthread_mutex_lock(&ex->lock);
    ex->stopping = 1;
    pthread_mutex_unlock(&ex->lock);
    wake(ex);
    pthread_join(ex->thread, NULL);
    pthread_mutex_destroy(&ex->lock);
    close(ex->wake_fd);
    if (ex->cgroup_parent)
        cgroup_remove(ex->cgroup_parent);
    free(ex->cgroup_parent);
    free(ex->wrapper_path);
    free(ex->queue);
    free(ex->slots);
    free(ex);
}

/* $0 = python, $1 = venv dir, $2 = requirements file: positional parameters,
 * so no path is ever parsed as shell text. */
static const char venv_script[] =
    "set -e\n"
    "\"$0\" -m venv --system-site-packages \"$1\"\n"
    "if [ -n \"$2\" ]; then\n"
    "  \"$1/bin/python\" -m pip install --no-input --disable-pip-version-check -r \"$2\"\n"
    "fi\n";

void executor_venv_argv(const char *python, const char *venv_dir, const char *requirements_path,
                        const char *argv_out[EXEC_VENV_ARGC + 1])
{
    argv_out[0] = "/bin/sh";
    argv_out[1] = "-c";
    argv_out[2] = venv_script;
    argv_out[3] = python;
    argv_out[4] = venv_dir;
    argv_out[5] = requirements_path ? requirements_path : "";
    argv_out[6] = NULL;
}
