/*
 * rpc_server.h — the gRPC server adapter: the only server code that calls
 * grpc_*. It serves generated RpcService tables (common/rpc.h) on N worker
 * threads, one completion queue each, and owns transport policy: message
 * size limits, keepalive, API-key checks, TLS, and graceful drain.
 */
#ifndef NORN_RPC_SERVER_H
#define NORN_RPC_SERVER_H

#include <stddef.h>
#include <stdint.h>

#include "rpc.h"

typedef struct RpcServer RpcServer;

typedef struct RpcServerOptions {
    const char *listen;            /* "127.0.0.1:50051"; port 0 picks one */
    int threads;                   /* completion-queue workers, >= 1 */
    size_t max_recv_bytes;         /* per incoming message */
    size_t max_send_bytes;         /* per outgoing message */
    size_t max_stream_queue_bytes; /* per call, packed but unsent */
    int64_t keepalive_time_ms;     /* server pings idle connections */
    int64_t keepalive_timeout_ms;  /* ...and drops them if unanswered */
    int64_t min_client_ping_ms;    /* clients may ping this often, calls or not */
    int64_t max_connection_age_ms; /* 0 = connections live forever */
    int64_t max_connection_age_grace_ms;
    const char *api_key;           /* NULL/"" = no authentication */
    const char *tls_cert_pem;      /* server certificate chain (PEM text) */
    const char *tls_key_pem;       /* its private key (PEM text) */
    const char *tls_client_ca_pem; /* set = mTLS: clients need a cert from this CA */
} RpcServerOptions;

/* Defaults for every field (listen 127.0.0.1:50051, 2 threads, 4 MiB
 * messages, 10 s minimum client ping interval, ...). */
void rpc_server_options_init(RpcServerOptions *o);

/* Creates the server and binds the port; NULL with a message in err when
 * the address is bad or busy or the TLS material is unusable. */
RpcServer *rpc_server_create(const RpcServerOptions *o, char *err, size_t errlen);

/* Registers a service (before start). `handlers` is the generated typed
 * handler struct; it and `ud` must outlive the server. 0 or -1. */
int rpc_server_add_service(struct RpcServer *srv, const RpcService *svc, const void *handlers,
                           void *ud);

/* Calls to this service skip the API-key check (Health). */
void rpc_server_set_public(RpcServer *srv, const char *service_name);

/* The bound port (known after create). */
int rpc_server_port(const RpcServer *srv);

/* Starts the worker threads. 0 or -1. */
int rpc_server_start(RpcServer *srv, char *err, size_t errlen);

/*
 * Graceful drain: stop accepting calls; end open streams with UNAVAILABLE;
 * give unary calls in flight up to `grace_ms` to finish, then cancel what is
 * left; stop the workers. Returns the number of calls that had to be
 * cancelled.
 */
int rpc_server_shutdown(RpcServer *srv, int64_t grace_ms);

void rpc_server_destroy(RpcServer *srv);

/* Figures for logs and tests. */
typedef struct RpcServerCounters {
    uint64_t calls_started;
    uint64_t calls_unauthenticated;
    uint64_t calls_unimplemented;
    int64_t calls_live;
} RpcServerCounters;

void rpc_server_counters(RpcServer *srv, RpcServerCounters *out);

#endif
