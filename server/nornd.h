/*
 * nornd.h — assembles the daemon: gRPC server, Health, reflection and the
 * Norn services. main.c parses flags into NorndConfig; tests may start a
 * daemon in-process the same way.
 */
#ifndef NORN_NORND_H
#define NORN_NORND_H

#include <stdint.h>

#include "evaluator.h"
#include "rpc_server.h"

typedef struct NorndConfig {
    RpcServerOptions rpc;          /* listen, threads, limits, keepalive, auth, TLS */
    const char *data_dir;          /* created if missing */
    int64_t drain_grace_ms;        /* unary calls in flight get this long on SIGTERM */
    int sync_writes;               /* fsync every commit (power-loss safety) */
    int64_t retention_interval_ms; /* how often old sessions and events are removed */
    /* AI judge transport tuning (timeouts, retries, breaker, in flight);
     * endpoint, region, model and batching come from the config and the
     * environment (docs/bedrock.md). */
    EvaluatorOptions eval;
    /* ImportAgent bounds: bytes received from the remote and seconds for the
     * git part of one import (0 = the importer's defaults, 100 MiB, 120 s). */
    uint64_t import_max_bytes;
    uint32_t import_max_seconds;
    /* Runs (RunAgent): agents run as this uid/gid (a root server should set
     * them, e.g. nobody's); -1 = the server's own. */
    long run_uid;
    long run_gid;
    /* The norn-run-wrapper executable; NULL = next to nornd's own binary. */
    const char *run_wrapper;
} NorndConfig;

typedef struct Nornd Nornd;

void nornd_config_init(NorndConfig *c);
Nornd *nornd_start(const NorndConfig *c, char *err, size_t errlen);
int nornd_port(const Nornd *d);
/* Health NOT_SERVING, then a graceful drain of the RPC server. */
void nornd_drain(Nornd *d);
void nornd_free(Nornd *d);

#endif
