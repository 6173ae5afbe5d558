/*
 * harness.h — starts a real nornd binary (path in $NORND) on 127.0.0.1:0
 * with a fresh data dir, learns its port from --port-file, and stops it.
 */
#ifndef NORN_TEST_HARNESS_H
#define NORN_TEST_HARNESS_H

#include <sys/types.h>

typedef struct NorndProc {
    pid_t pid;
    int port;
    char target[64]; /* "127.0.0.1:PORT" */
    char dir[256];   /* scratch dir: data, port file, log */
    char log_path[300];
} NorndProc;

/* Starts nornd with extra args (NULL-terminated) and env entries
 * ("KEY=VALUE", NULL-terminated, may be NULL). 0 when it listens. */
int nornd_spawn(NorndProc *p, const char *const *extra_args, const char *const *env);
/* Starts nornd again in the same scratch dir, so on the same data dir,
 * after stopping it with SIGTERM if it still runs (-1 if that stop did not
 * exit 0; stop it yourself first, e.g. with SIGKILL, to restart after a
 * crash). It gets a new port (p->port, p->target); its log is appended to
 * p->log_path. 0 when it listens. */
int nornd_restart(NorndProc *p, const char *const *extra_args, const char *const *env);
/* Sends `sig` and waits; returns the exit status (or 128+signal). */
int nornd_stop(NorndProc *p, int sig);
/* Runs a command line, returns its exit code; stdout goes to out (may be NULL). */
int run_capture(const char *const *argv, char *out, size_t cap);
/* Makes a scratch dir under $TMPDIR, removed when the process exits
 * (kept when NORN_TEST_KEEP_DIRS is set). */
int make_scratch_dir(char *buf, size_t cap);

#endif
