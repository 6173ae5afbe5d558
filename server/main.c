/*
 * main.c — nornd: flags and environment, logging, signals, graceful drain.
 */
#include <errno.h>
#include <getopt.h>
#include <pwd.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "nornd.h"
#include "util.h"

#define MAX_SECRET_FILE (1u << 20)

static void usage(FILE *out)
{
    fputs("usage: nornd [options]\n"
          "\n"
          "Norn: monitoring for AI agents, as a gRPC service.\n"
          "\n"
          "options (each also read from the environment variable shown):\n"
          "  --listen ADDR            address to serve on (NORN_LISTEN, default 127.0.0.1:50051;\n"
          "                           port 0 picks a free port)\n"
          "  --data-dir DIR           RocksDB data directory (NORN_DATA_DIR, default ./norn-data)\n"
          "  --threads N              completion-queue worker threads (NORN_THREADS, default 2)\n"
          "  --log-level LEVEL        debug, info, warn or error (NORN_LOG_LEVEL, default info)\n"
          "  --api-key-file FILE      require this API key on every RPC but Health\n"
          "                           (NORN_API_KEY_FILE; or the key itself in NORN_API_KEY)\n"
          "  --tls-cert FILE          serve TLS with this PEM certificate chain (NORN_TLS_CERT)\n"
          "  --tls-key FILE           ...and this PEM private key (NORN_TLS_KEY)\n"
          "  --tls-client-ca FILE     require client certificates from this CA: mTLS\n"
          "                           (NORN_TLS_CLIENT_CA)\n"
          "  --max-message-bytes N    largest request message (NORN_MAX_MESSAGE_BYTES, 4194304)\n"
          "  --max-connection-age-ms N  close connections after N ms so load balancers\n"
          "                           rebalance (NORN_MAX_CONNECTION_AGE_MS, default 0 = never)\n"
          "  --drain-grace-ms N       on SIGTERM, time given to calls in flight\n"
          "                           (NORN_DRAIN_GRACE_MS, default 10000)\n"
          "  --sync-writes            fsync every commit: survives power loss, not only\n"
          "                           process crashes (NORN_SYNC_WRITES=1)\n"
          "  --retention-interval-ms N  how often sessions and audit events older than the\n"
          "                           log_retention_days setting are removed\n"
          "                           (NORN_RETENTION_INTERVAL_MS, default 600000)\n"
          "  --import-max-bytes N     ImportAgent: bytes one import may receive from the git\n"
          "                           remote (NORN_IMPORT_MAX_BYTES, default 104857600)\n"
          "  --import-max-seconds N   ImportAgent: time one clone may take\n"
          "                           (NORN_IMPORT_MAX_SECONDS, default 120)\n"
          "  --run-as-user NAME       RunAgent: run agents as this user (NORN_RUN_AS_USER; a root\n"
          "                           server should, e.g. nobody); default: nornd's own user\n"
          "  --port-file FILE         write the bound port here once listening\n"
          "\n"
          "AI judge (Amazon Bedrock Converse; docs/bedrock.md): credentials from\n"
          "AWS_BEARER_TOKEN_BEDROCK, or AWS_ACCESS_KEY_ID + AWS_SECRET_ACCESS_KEY\n"
          "(+ AWS_SESSION_TOKEN); region from AWS_REGION or AWS_DEFAULT_REGION; endpoint\n"
          "override NORN_BEDROCK_ENDPOINT (e.g. http://127.0.0.1:8089). Transport tuning:\n"
          "  --eval-in-flight N       concurrent model requests (NORN_EVAL_IN_FLIGHT, 4)\n"
          "  --eval-timeout-ms N      whole-request timeout per attempt (NORN_EVAL_TIMEOUT_MS,\n"
          "                           60000)\n"
          "  --eval-connect-timeout-ms N  connect timeout (NORN_EVAL_CONNECT_TIMEOUT_MS, 5000)\n"
          "  --eval-attempts N        attempts per request, retries included\n"
          "                           (NORN_EVAL_ATTEMPTS, 4)\n"
          "  --eval-backoff-ms N      first retry delay, doubling with jitter; Retry-After\n"
          "                           wins (NORN_EVAL_BACKOFF_MS, 200)\n"
          "  --eval-breaker-failures N  consecutive failures that pause judging\n"
          "                           (NORN_EVAL_BREAKER_FAILURES, 5)\n"
          "  --eval-breaker-cooldown-ms N  pause before a probe request\n"
          "                           (NORN_EVAL_BREAKER_COOLDOWN_MS, 30000)\n"
          "  --eval-max-pending N     steps waiting to be judged; beyond it the oldest is\n"
          "                           dropped and counted (NORN_EVAL_MAX_PENDING, 100000)\n"
          "\n"
          "  -h, --help               this text\n"
          "\n"
          "SIGTERM or SIGINT drains: Health turns NOT_SERVING, new calls are refused, open\n"
          "streams end with UNAVAILABLE, calls in flight finish, and nornd exits 0.\n",
          out);
}

static int parse_long(const char *name, const char *s, long long lo, long long hi, long long *out)
{
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || end == s || *end || v < lo || v > hi) {
        fprintf(stderr, "nornd: %s must be a whole number from %lld to %lld (got '%s')\n", name, lo,
                hi, s);
        return -1;
    }
    *out = v;
    return 0;
}

static char *read_pem(const char *what, const char *path)
{
    char *s = read_file_limited(path, MAX_SECRET_FILE, NULL);
    if (!s)
        fprintf(stderr, "nornd: cannot read %s file %s: %s\n", what, path, strerror(errno));
    return s;
}

/* Trailing newlines in a key file are not part of the key. */
static void chomp(char *s)
{
    size_t n = strlen(s);
    while (n && (s[n - 1] == '\n' || s[n - 1] == '\r' || s[n - 1] == ' '))
        s[--n] = '\0';
}

enum {
    OPT_LISTEN = 256,
    OPT_DATA_DIR,
    OPT_THREADS,
    OPT_LOG_LEVEL,
    OPT_API_KEY_FILE,
    OPT_TLS_CERT,
    OPT_TLS_KEY,
    OPT_TLS_CLIENT_CA,
    OPT_MAX_MESSAGE,
    OPT_MAX_AGE,
    OPT_GRACE,
    OPT_PORT_FILE,
    OPT_SYNC_WRITES,
    OPT_RETENTION,
    OPT_IMPORT_MAX_BYTES,
    OPT_IMPORT_MAX_SECONDS,
    OPT_RUN_AS_USER,
    OPT_EVAL_FIRST, /* the eval_flags table, in order */
};

/* The AI judge's numeric flags: name, environment variable, range, target. */
typedef struct EvalFlag {
    const char *name, *env;
    long long lo, hi;
    size_t offset; /* of an unsigned in EvaluatorOptions */
} EvalFlag;

static const EvalFlag eval_flags[] = {
    {"eval-in-flight", "NORN_EVAL_IN_FLIGHT", 1, 64, offsetof(EvaluatorOptions, max_in_flight)},
    {"eval-timeout-ms", "NORN_EVAL_TIMEOUT_MS", 100, 600000,
     offsetof(EvaluatorOptions, request_timeout_ms)},
    {"eval-connect-timeout-ms", "NORN_EVAL_CONNECT_TIMEOUT_MS", 100, 600000,
     offsetof(EvaluatorOptions, connect_timeout_ms)},
    {"eval-attempts", "NORN_EVAL_ATTEMPTS", 1, 20, offsetof(EvaluatorOptions, max_attempts)},
    {"eval-backoff-ms", "NORN_EVAL_BACKOFF_MS", 1, 600000,
     offsetof(EvaluatorOptions, backoff_base_ms)},
    {"eval-breaker-failures", "NORN_EVAL_BREAKER_FAILURES", 1, 1000,
     offsetof(EvaluatorOptions, breaker_failures)},
    {"eval-breaker-cooldown-ms", "NORN_EVAL_BREAKER_COOLDOWN_MS", 10, 3600000,
     offsetof(EvaluatorOptions, breaker_cooldown_ms)},
    {"eval-max-pending", "NORN_EVAL_MAX_PENDING", 1, 10000000,
     offsetof(EvaluatorOptions, max_pending_steps)},
};
#define N_EVAL_FLAGS (sizeof eval_flags / sizeof eval_flags[0])

int main(int argc, char **argv)
{
    NorndConfig cfg;
    nornd_config_init(&cfg);
    const char *listen = getenv("NORN_LISTEN"), *data_dir = getenv("NORN_DATA_DIR");
    const char *threads = getenv("NORN_THREADS"), *level = getenv("NORN_LOG_LEVEL");
    const char *key_file = getenv("NORN_API_KEY_FILE"), *tls_cert = getenv("NORN_TLS_CERT");
    const char *tls_key = getenv("NORN_TLS_KEY"), *tls_ca = getenv("NORN_TLS_CLIENT_CA");
    const char *max_msg = getenv("NORN_MAX_MESSAGE_BYTES");
    const char *max_age = getenv("NORN_MAX_CONNECTION_AGE_MS");
    const char *grace = getenv("NORN_DRAIN_GRACE_MS"), *port_file = NULL;
    const char *retention = getenv("NORN_RETENTION_INTERVAL_MS");
    const char *import_bytes = getenv("NORN_IMPORT_MAX_BYTES");
    const char *import_seconds = getenv("NORN_IMPORT_MAX_SECONDS");
    const char *run_as_user = getenv("NORN_RUN_AS_USER");

    static const struct option longopts[] = {
        {"listen", required_argument, NULL, OPT_LISTEN},
        {"data-dir", required_argument, NULL, OPT_DATA_DIR},
        {"threads", required_argument, NULL, OPT_THREADS},
        {"log-level", required_argument, NULL, OPT_LOG_LEVEL},
        {"api-key-file", required_argument, NULL, OPT_API_KEY_FILE},
        {"tls-cert", required_argument, NULL, OPT_TLS_CERT},
        {"tls-key", required_argument, NULL, OPT_TLS_KEY},
        {"tls-client-ca", required_argument, NULL, OPT_TLS_CLIENT_CA},
        {"max-message-bytes", required_argument, NULL, OPT_MAX_MESSAGE},
        {"max-connection-age-ms", required_argument, NULL, OPT_MAX_AGE},
        {"drain-grace-ms", required_argument, NULL, OPT_GRACE},
        {"port-file", required_argument, NULL, OPT_PORT_FILE},
        {"sync-writes", no_argument, NULL, OPT_SYNC_WRITES},
        {"retention-interval-ms", required_argument, NULL, OPT_RETENTION},
        {"import-max-bytes", required_argument, NULL, OPT_IMPORT_MAX_BYTES},
        {"import-max-seconds", required_argument, NULL, OPT_IMPORT_MAX_SECONDS},
        {"run-as-user", required_argument, NULL, OPT_RUN_AS_USER},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    struct option all_opts[sizeof longopts / sizeof longopts[0] + N_EVAL_FLAGS];
    const char *eval_values[N_EVAL_FLAGS];
    size_t n_fixed = sizeof longopts / sizeof longopts[0] - 1;
    memcpy(all_opts, longopts, n_fixed * sizeof longopts[0]);
    for (size_t i = 0; i < N_EVAL_FLAGS; i++) {
        all_opts[n_fixed + i] =
            (struct option){eval_flags[i].name, required_argument, NULL, OPT_EVAL_FIRST + (int)i};
        eval_values[i] = getenv(eval_flags[i].env);
    }
    all_opts[n_fixed + N_EVAL_FLAGS] = (struct option){NULL, 0, NULL, 0};
    int opt;
    while ((opt = getopt_long(argc, argv, "h", all_opts, NULL)) != -1) {
        if (opt >= OPT_EVAL_FIRST && opt < OPT_EVAL_FIRST + (int)N_EVAL_FLAGS) {
            eval_values[opt - OPT_EVAL_FIRST] = optarg;
            continue;
        }
        switch (opt) {
        case OPT_LISTEN: listen = optarg; break;
        case OPT_DATA_DIR: data_dir = optarg; break;
        case OPT_THREADS: threads = optarg; break;
        case OPT_LOG_LEVEL: level = optarg; break;
        case OPT_API_KEY_FILE: key_file = optarg; break;
        case OPT_TLS_CERT: tls_cert = optarg; break;
        case OPT_TLS_KEY: tls_key = optarg; break;
        case OPT_TLS_CLIENT_CA: tls_ca = optarg; break;
        case OPT_MAX_MESSAGE: max_msg = optarg; break;
        case OPT_MAX_AGE: max_age = optarg; break;
        case OPT_GRACE: grace = optarg; break;
        case OPT_PORT_FILE: port_file = optarg; break;
        case OPT_SYNC_WRITES: cfg.sync_writes = 1; break;
        case OPT_RETENTION: retention = optarg; break;
        case OPT_IMPORT_MAX_BYTES: import_bytes = optarg; break;
        case OPT_IMPORT_MAX_SECONDS: import_seconds = optarg; break;
        case OPT_RUN_AS_USER: run_as_user = optarg; break;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "nornd: unexpected argument '%s' (see --help)\n", argv[optind]);
        return 2;
    }

    if (getenv("NORN_SYNC_WRITES") && strcmp(getenv("NORN_SYNC_WRITES"), "1") == 0)
        cfg.sync_writes = 1;
    long long v;
    if (level) {
        LogLevel lv;
        if (log_level_parse(level, &lv) != 0) {
            fprintf(stderr, "nornd: --log-level must be debug, info, warn or error (got '%s')\n",
                    level);
            return 2;
        }
        log_set_level(lv);
    }
    if (listen)
        cfg.rpc.listen = listen;
    if (data_dir)
        cfg.data_dir = data_dir;
    if (threads) {
        if (parse_long("--threads", threads, 1, 64, &v))
            return 2;
        cfg.rpc.threads = (int)v;
    }
    if (max_msg) {
        if (parse_long("--max-message-bytes", max_msg, 1024, 1 << 30, &v))
            return 2;
        cfg.rpc.max_recv_bytes = (size_t)v;
    }
    if (max_age) {
        if (parse_long("--max-connection-age-ms", max_age, 0, INT32_MAX, &v))
            return 2;
        cfg.rpc.max_connection_age_ms = v;
    }
    if (grace) {
        if (parse_long("--drain-grace-ms", grace, 0, 3600000, &v))
            return 2;
        cfg.drain_grace_ms = v;
    }
    if (retention) {
        if (parse_long("--retention-interval-ms", retention, 100, 86400000LL * 7, &v))
            return 2;
        cfg.retention_interval_ms = v;
    }
    if (import_bytes) {
        if (parse_long("--import-max-bytes", import_bytes, 1024, 1LL << 40, &v))
            return 2;
        cfg.import_max_bytes = (uint64_t)v;
    }
    if (import_seconds) {
        if (parse_long("--import-max-seconds", import_seconds, 1, 86400, &v))
            return 2;
        cfg.import_max_seconds = (uint32_t)v;
    }
    if (run_as_user && *run_as_user) {
        struct passwd *pw = getpwnam(run_as_user);
        if (!pw) {
            fprintf(stderr, "nornd: --run-as-user: no user '%s'\n", run_as_user);
            return 2;
        }
        cfg.run_uid = (long)pw->pw_uid;
        cfg.run_gid = (long)pw->pw_gid;
    }
    for (size_t i = 0; i < N_EVAL_FLAGS; i++) {
        if (!eval_values[i])
            continue;
        char name[64];
        snprintf(name, sizeof name, "--%s", eval_flags[i].name);
        if (parse_long(name, eval_values[i], eval_flags[i].lo, eval_flags[i].hi, &v))
            return 2;
        *(unsigned *)((char *)&cfg.eval + eval_flags[i].offset) = (unsigned)v;
    }
    char *api_key = NULL, *cert = NULL, *key = NULL, *ca = NULL;
    if (key_file) {
        if (!(api_key = read_pem("API key", key_file)))
            return 2;
        chomp(api_key);
        if (!*api_key) {
            fprintf(stderr, "nornd: API key file %s is empty\n", key_file);
            return 2;
        }
    } else if (getenv("NORN_API_KEY") && *getenv("NORN_API_KEY")) {
        api_key = strdup(getenv("NORN_API_KEY"));
    }
    cfg.rpc.api_key = api_key;
    if ((tls_cert != NULL) != (tls_key != NULL)) {
        fprintf(stderr, "nornd: --tls-cert and --tls-key go together\n");
        return 2;
    }
    if (tls_ca && !tls_cert) {
        fprintf(stderr, "nornd: --tls-client-ca needs --tls-cert and --tls-key\n");
        return 2;
    }
    if (tls_cert &&
        (!(cert = read_pem("TLS certificate", tls_cert)) || !(key = read_pem("TLS key", tls_key))))
        return 2;
    if (tls_ca && !(ca = read_pem("client CA", tls_ca)))
        return 2;
    cfg.rpc.tls_cert_pem = cert;
    cfg.rpc.tls_key_pem = key;
    cfg.rpc.tls_client_ca_pem = ca;

    /* gRPC's threads inherit this mask, so only sigwait below sees them. */
    sigset_t sigs;
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGINT);
    sigaddset(&sigs, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &sigs, NULL);
    signal(SIGPIPE, SIG_IGN);

    char err[512];
    Nornd *d = nornd_start(&cfg, err, sizeof err);
    free(cert);
    free(key);
    free(ca);
    if (!d) {
        log_error("start_failed", "error=%s", log_quote(err, (char[600]){0}, 600));
        fprintf(stderr, "nornd: %s\n", err);
        free(api_key);
        return 1;
    }
    log_info("listening", "listen=%s port=%d threads=%d data_dir=%s auth=%s tls=%s", cfg.rpc.listen,
             nornd_port(d), cfg.rpc.threads, cfg.data_dir, api_key ? "api-key" : "off",
             ca         ? "mtls"
             : tls_cert ? "on"
                        : "off");
    if (port_file) {
        FILE *f = fopen(port_file, "w");
        if (!f || fprintf(f, "%d\n", nornd_port(d)) < 0 || fclose(f) != 0) {
            fprintf(stderr, "nornd: cannot write port file %s\n", port_file);
            nornd_drain(d);
            nornd_free(d);
            free(api_key);
            return 1;
        }
    }

    int sig = 0;
    sigwait(&sigs, &sig);
    log_info("draining", "signal=%s", sig == SIGTERM ? "SIGTERM" : "SIGINT");
    nornd_drain(d);
    nornd_free(d);
    free(api_key);
    log_info("stopped", "exit=0");
    return 0;
}
