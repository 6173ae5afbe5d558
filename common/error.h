/*
 * error.h — Norn's one error type and its one mapping to RPC status codes.
 *
 * Every module returns these (0 = ok, negative = error); the RPC layer maps
 * them with norn_error_to_rpc() so the same failure always reaches clients
 * as the same gRPC code (design/api.md, "Status codes").
 */
#ifndef NORN_ERROR_H
#define NORN_ERROR_H

#include "rpc.h"

typedef enum NornError {
    NORN_OK = 0,
    NORN_ERR_INVALID = -1,      /* malformed or out-of-range input */
    NORN_ERR_NOT_FOUND = -2,    /* unknown session, agent, run, swarm */
    NORN_ERR_PRECONDITION = -3, /* e.g. a step for a completed session */
    NORN_ERR_OUT_OF_RANGE = -4, /* e.g. a watch from a compacted revision */
    NORN_ERR_EXHAUSTED = -5,    /* a queue or limit is full */
    NORN_ERR_UNAUTHENTICATED = -6,
    NORN_ERR_STORAGE = -7, /* the store refused a read or write */
    NORN_ERR_INTERNAL = -8,
    NORN_ERR_UNAVAILABLE = -9, /* draining, or a dependency is down */
    NORN_ERR_NO_MEMORY = -10,
    NORN_ERR_EXISTS = -11,
} NornError;

RpcCode norn_error_to_rpc(int err);
const char *norn_error_name(int err);

#endif
