/*
 * gen.h — the two generators of protoc-gen-norn-grpc.
 *
 * Both take the complete list of FileDescriptorProtos protoc sent
 * (CodeGeneratorRequest.proto_file, dependencies first).
 */
#ifndef NORN_PROTOC_GEN_GEN_H
#define NORN_PROTOC_GEN_GEN_H

#include "output.h"

#include "google/protobuf/descriptor.pb-c.h"

#include <stddef.h>

/* <stem>.grpc-c.h and <stem>.grpc-c.c for `file`, which must declare at
 * least one service. Message types used by its methods are looked up in
 * `files`, since protobuf-c names them after their own file's package.
 * Returns NULL, or a heap-allocated message for CodeGeneratorResponse.error
 * (and then adds nothing to `out`). */
char *gen_service_file(Google__Protobuf__FileDescriptorProto *const *files, size_t n_files,
                       const Google__Protobuf__FileDescriptorProto *file, Output *out);

/* <name>.h and <name>.c embedding every file in `files` (at least one) for
 * server reflection. `name` must be a C identifier; `source` goes in the
 * banner. */
void gen_descriptor_set(Google__Protobuf__FileDescriptorProto *const *files, size_t n_files,
                        const char *name, const char *source, Output *out);

#endif
