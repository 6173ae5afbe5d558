/*
 * run_wrapper.c — norn-run-wrapper: the few steps between posix_spawn and
 * the agent that posix_spawn cannot do itself (executor.h, "Each run").
 *
 *   norn-run-wrapper [--cpu S] [--as BYTES] [--nofile N] [--nproc N]
 *                    [--cgroup DIR] [--uid U --gid G] [--parent PID]
 *                    -- PROGRAM ARG...
 *
 * In order: join the cgroup DIR (write our pid to DIR/cgroup.procs, while
 * still privileged), set the limits (RLIMIT_CORE always 0), drop to U/G,
 * ask for SIGKILL when the server dies (PR_SET_PDEATHSIG, after the uid
 * change which would clear it; PID is the server, to catch a death before
 * that), set PR_SET_NO_NEW_PRIVS, exec PROGRAM (looked up in the PATH of the
 * environment the executor built). Any failure: a message on stderr (the
 * run's log) and exit 127, so nothing runs unconfined.
 */
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <unistd.h>

#define WRAPPER_FAILED 127

static void die(const char *what, const char *detail)
{
    fprintf(stderr, "norn-run-wrapper: %s%s%s\n", what, detail ? ": " : "", detail ? detail : "");
    exit(WRAPPER_FAILED);
}

static unsigned long long parse_number(const char *flag, const char *text)
{
    if (!text || !*text || *text == '-')
        die("missing or negative value for", flag);
    char *end;
    errno = 0;
    unsigned long long value = strtoull(text, &end, 10);
    if (errno || *end)
        die("not a number after", flag);
    return value;
}

static void set_limit(int resource, const char *name, rlim_t soft, rlim_t hard)
{
    struct rlimit limit = {.rlim_cur = soft, .rlim_max = hard};
    if (setrlimit(resource, &limit) != 0)
        die(name, strerror(errno));
}

static void join_cgroup(const char *dir)
{
    char path[4096];
    if ((size_t)snprintf(path, sizeof path, "%s/cgroup.procs", dir) >= sizeof path)
        die("cgroup path too long", dir);
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0)
        die("cannot open cgroup.procs", strerror(errno));
    /* "0" means the writing process itself. */
    if (write(fd, "0\n", 2) != 2)
        die("cannot join the run's cgroup", strerror(errno));
    close(fd);
}

int main(int argc, char **argv)
{
    unsigned long long cpu = 0, as = 0, nofile = 0, nproc = 0;
    long long uid = -1, gid = -1, parent = -1;
    const char *cgroup = NULL;
    int i = 1;
    for (; i < argc && strcmp(argv[i], "--") != 0; i += 2) {
        const char *flag = argv[i], *value = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(flag, "--cpu") == 0)
            cpu = parse_number(flag, value);
        else if (strcmp(flag, "--as") == 0)
            as = parse_number(flag, value);
        else if (strcmp(flag, "--nofile") == 0)
            nofile = parse_number(flag, value);
        else if (strcmp(flag, "--nproc") == 0)
            nproc = parse_number(flag, value);
        else if (strcmp(flag, "--uid") == 0)
            uid = (long long)parse_number(flag, value);
        else if (strcmp(flag, "--gid") == 0)
            gid = (long long)parse_number(flag, value);
        else if (strcmp(flag, "--parent") == 0)
            parent = (long long)parse_number(flag, value);
        else if (strcmp(flag, "--cgroup") == 0 && value)
            cgroup = value;
        else
            die("unknown option", flag);
    }
    if (i + 1 >= argc)
        die("usage: norn-run-wrapper [options] -- PROGRAM [ARG...]", NULL);
    if ((uid < 0) != (gid < 0))
        die("--uid and --gid go together", NULL);

    if (cgroup)
        join_cgroup(cgroup);
    set_limit(RLIMIT_CORE, "RLIMIT_CORE", 0, 0);
    /* The hard CPU limit one second later turns the ignored SIGXCPU into SIGKILL. */
    if (cpu)
        set_limit(RLIMIT_CPU, "RLIMIT_CPU", cpu, cpu + 1);
    if (as)
        set_limit(RLIMIT_AS, "RLIMIT_AS", as, as);
    if (nofile)
        set_limit(RLIMIT_NOFILE, "RLIMIT_NOFILE", nofile, nofile);
    if (nproc)
        set_limit(RLIMIT_NPROC, "RLIMIT_NPROC", nproc, nproc);
    if (uid >= 0) {
        if (setgroups(0, NULL) != 0 || setgid((gid_t)gid) != 0)
            die("cannot drop the group", strerror(errno));
        if (setuid((uid_t)uid) != 0)
            die("cannot drop the user", strerror(errno));
    }
    if (parent >= 0) {
        if (prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0) != 0)
            die("PR_SET_PDEATHSIG", strerror(errno));
        if ((long long)getppid() != parent)
            die("the server is gone", NULL);
    }
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0)
        die("PR_SET_NO_NEW_PRIVS", strerror(errno));
    execvp(argv[i + 1], argv + i + 1);
    die(argv[i + 1], strerror(errno));
}
