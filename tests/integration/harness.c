/* harness.c — see harness.h. */
#include "harness.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "util.h"

extern char **environ;

/* Scratch dirs this process made; removed at exit unless
 * NORN_TEST_KEEP_DIRS is set (to read a failed test's nornd.log). */
#define MAX_SCRATCH 64
static char *scratch[MAX_SCRATCH];
static int n_scratch;

static void remove_scratch_dirs(void)
{
    if (getenv("NORN_TEST_KEEP_DIRS"))
        return;
    for (int i = 0; i < n_scratch; i++) {
        remove_tree_at(AT_FDCWD, scratch[i]);
        free(scratch[i]);
    }
    n_scratch = 0;
}

int make_scratch_dir(char *buf, size_t cap)
{
    const char *tmp = getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
    snprintf(buf, cap, "%s/norn-test-XXXXXX", tmp);
    if (!mkdtemp(buf))
        return -1;
    if (n_scratch == 0)
        atexit(remove_scratch_dirs);
    if (n_scratch < MAX_SCRATCH)
        scratch[n_scratch++] = strdup(buf);
    return 0;
}

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* Starts nornd in p->dir (data, port file and log there); `log_flags`
 * O_TRUNC for a fresh log, O_APPEND to keep what an earlier run wrote. */
static int spawn_in_dir(NorndProc *p, const char *const *extra, const char *const *env,
                        int log_flags)
{
    const char *bin = getenv("NORND");
    if (!bin)
        return -1;
    char data[300], port_file[300];
    snprintf(data, sizeof data, "%s/data", p->dir);
    snprintf(port_file, sizeof port_file, "%s/port", p->dir);
    snprintf(p->log_path, sizeof p->log_path, "%s/nornd.log", p->dir);
    unlink(port_file); /* a previous run's port must not be mistaken for ours */
    p->port = 0;
    p->target[0] = '\0';

    const char *argv[64];
    int n = 0;
    argv[n++] = bin;
    argv[n++] = "--listen";
    argv[n++] = "127.0.0.1:0";
    argv[n++] = "--data-dir";
    argv[n++] = data;
    argv[n++] = "--port-file";
    argv[n++] = port_file;
    for (int i = 0; extra && extra[i] && n < 62; i++)
        argv[n++] = extra[i];
    argv[n] = NULL;

    /* Environment: ours minus NORN_* and AWS_* (tests choose those; real
     * credentials must never reach a test server), plus `env`. */
    char *envp[256];
    int e = 0;
    for (char **v = environ; *v && e < 200; v++)
        if (strncmp(*v, "NORN_", 5) != 0 && strncmp(*v, "AWS_", 4) != 0)
            envp[e++] = *v;
    for (int i = 0; env && env[i] && e < 254; i++)
        envp[e++] = (char *)env[i];
    envp[e] = NULL;

    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 2, p->log_path, O_WRONLY | O_CREAT | log_flags, 0600);
    int rc = posix_spawn(&p->pid, bin, &fa, NULL, (char *const *)argv, envp);
    posix_spawn_file_actions_destroy(&fa);
    if (rc != 0)
        return -1;
    for (int i = 0; i < 1000; i++) { /* up to 10 s */
        FILE *f = fopen(port_file, "r");
        if (f) {
            int port = 0;
            int ok = fscanf(f, "%d", &port) == 1 && port > 0;
            fclose(f);
            if (ok) {
                p->port = port;
                snprintf(p->target, sizeof p->target, "127.0.0.1:%d", port);
                return 0;
            }
        }
        int status;
        if (waitpid(p->pid, &status, WNOHANG) == p->pid) {
            p->pid = 0;
            return -1;
        }
        sleep_ms(10);
    }
    kill(p->pid, SIGKILL);
    waitpid(p->pid, NULL, 0);
    p->pid = 0;
    return -1;
}

int nornd_spawn(NorndProc *p, const char *const *extra, const char *const *env)
{
    memset(p, 0, sizeof *p);
    if (!getenv("NORND") || make_scratch_dir(p->dir, sizeof p->dir) != 0)
        return -1;
    return spawn_in_dir(p, extra, env, O_TRUNC);
}

int nornd_restart(NorndProc *p, const char *const *extra, const char *const *env)
{
    if (p->pid > 0 && nornd_stop(p, SIGTERM) != 0)
        return -1;
    if (!p->dir[0])
        return -1;
    return spawn_in_dir(p, extra, env, O_APPEND);
}

int nornd_stop(NorndProc *p, int sig)
{
    if (p->pid <= 0)
        return -1;
    kill(p->pid, sig);
    int status = 0;
    for (int i = 0; i < 3000; i++) { /* up to 30 s, then SIGKILL */
        pid_t r = waitpid(p->pid, &status, WNOHANG);
        if (r == p->pid) {
            p->pid = 0;
            return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
        }
        sleep_ms(10);
    }
    kill(p->pid, SIGKILL);
    waitpid(p->pid, &status, 0);
    p->pid = 0;
    return 128 + SIGKILL;
}

int run_capture(const char *const *argv, char *out, size_t cap)
{
    int fds[2];
    if (pipe(fds) != 0)
        return -1;
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, fds[1], 1);
    posix_spawn_file_actions_addclose(&fa, fds[0]);
    pid_t pid;
    int rc = posix_spawn(&pid, argv[0], &fa, NULL, (char *const *)argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    close(fds[1]);
    if (rc != 0) {
        close(fds[0]);
        return -1;
    }
    size_t len = 0;
    char buf[4096];
    ssize_t r;
    while ((r = read(fds[0], buf, sizeof buf)) > 0) {
        if (out && len + 1 < cap) {
            size_t k = (size_t)r < cap - 1 - len ? (size_t)r : cap - 1 - len;
            memcpy(out + len, buf, k);
            len += k;
        }
    }
    if (out && cap)
        out[len] = '\0';
    close(fds[0]);
    int status;
    waitpid(pid, &status, 0);
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}
