/*
 * reflection.h — gRPC server reflection, v1 and v1alpha
 * (grpc.reflection.*.ServerReflection/ServerReflectionInfo), answered from
 * the FileDescriptorProtos the build embeds in the binary, so grpcurl-style
 * tools work without .proto files.
 */
#ifndef NORN_REFLECTION_H
#define NORN_REFLECTION_H

#include "rpc_server.h"

typedef struct Reflection Reflection;

/* Indexes `files` (every file the served services need, dependencies
 * included). NULL when a descriptor does not parse. */
Reflection *reflection_new(const RpcFileDescriptor *files, size_t n_files);
/* Names a service that list_services reports (call once per served service). */
void reflection_add_service(Reflection *r, const char *full_name);
/* Serves both reflection versions on srv. */
int reflection_register(Reflection *r, RpcServer *srv);
void reflection_free(Reflection *r);

/* ---- the lookups behind both versions (exposed for unit tests) -------- */

/* Index of the file named `filename`, or -1. */
int reflection_file_by_name(const Reflection *r, const char *filename);
/* Index of the file that declares `symbol` (package.Message, nested
 * messages and enums, services, package.Service.Method), or -1. */
int reflection_file_by_symbol(const Reflection *r, const char *symbol);
/* Fills out[] with `file` and its transitive dependencies, file first,
 * each once; returns how many (at most cap). */
size_t reflection_closure(const Reflection *r, int file, int *out, size_t cap);
const RpcFileDescriptor *reflection_file(const Reflection *r, int index);
size_t reflection_service_count(const Reflection *r);
const char *reflection_service_name(const Reflection *r, size_t i);

#endif
