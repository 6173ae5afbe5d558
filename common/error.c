/* error.c — the single table from NornError to gRPC status codes. */
#include "error.h"

static const struct {
    NornError err;
    RpcCode code;
    const char *name;
} error_table[] = {
    {NORN_OK, RPC_OK, "ok"},
    {NORN_ERR_INVALID, RPC_INVALID_ARGUMENT, "invalid argument"},
    {NORN_ERR_NOT_FOUND, RPC_NOT_FOUND, "not found"},
    {NORN_ERR_PRECONDITION, RPC_FAILED_PRECONDITION, "failed precondition"},
    {NORN_ERR_OUT_OF_RANGE, RPC_OUT_OF_RANGE, "out of range"},
    {NORN_ERR_EXHAUSTED, RPC_RESOURCE_EXHAUSTED, "resource exhausted"},
    {NORN_ERR_UNAUTHENTICATED, RPC_UNAUTHENTICATED, "unauthenticated"},
    {NORN_ERR_STORAGE, RPC_UNAVAILABLE, "storage error"},
    {NORN_ERR_INTERNAL, RPC_INTERNAL, "internal error"},
    {NORN_ERR_UNAVAILABLE, RPC_UNAVAILABLE, "unavailable"},
    {NORN_ERR_NO_MEMORY, RPC_RESOURCE_EXHAUSTED, "out of memory"},
    {NORN_ERR_EXISTS, RPC_ALREADY_EXISTS, "already exists"},
};

RpcCode norn_error_to_rpc(int err)
{
    for (size_t i = 0; i < sizeof error_table / sizeof error_table[0]; i++)
        if ((int)error_table[i].err == err)
            return error_table[i].code;
    return RPC_INTERNAL;
}

const char *norn_error_name(int err)
{
    for (size_t i = 0; i < sizeof error_table / sizeof error_table[0]; i++)
        if ((int)error_table[i].err == err)
            return error_table[i].name;
    return "unknown error";
}

const char *rpc_code_name(RpcCode code)
{
    static const char *const names[] = {
        "OK",
        "CANCELLED",
        "UNKNOWN",
        "INVALID_ARGUMENT",
        "DEADLINE_EXCEEDED",
        "NOT_FOUND",
        "ALREADY_EXISTS",
        "PERMISSION_DENIED",
        "RESOURCE_EXHAUSTED",
        "FAILED_PRECONDITION",
        "ABORTED",
        "OUT_OF_RANGE",
        "UNIMPLEMENTED",
        "INTERNAL",
        "UNAVAILABLE",
        "DATA_LOSS",
        "UNAUTHENTICATED",
    };
    if ((int)code >= 0 && (size_t)code < sizeof names / sizeof names[0])
        return names[code];
    return code == RPC_PENDING ? "PENDING" : "UNKNOWN";
}
