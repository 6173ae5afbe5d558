/*
 * reflection.c — server reflection from embedded descriptors.
 *
 * At start-up every embedded FileDescriptorProto is parsed once to build a
 * sorted symbol table (fully-qualified name → file) and the dependency
 * lists; requests are then answered with binary searches. The two protocol
 * versions carry identical messages in different packages, so each gets a
 * thin adapter over the shared lookups.
 */
#include "reflection.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "google/protobuf/descriptor.pb-c.h"
#include "grpc/reflection/v1/reflection.grpc-c.h"
#include "grpc/reflection/v1alpha/reflection.grpc-c.h"

#define MAX_CLOSURE 64

typedef struct Symbol {
    char *name;
    int file;
} Symbol;

struct Reflection {
    const RpcFileDescriptor *files;
    size_t n_files;
    int **deps; /* per file: dependency indexes, -1 terminated */
    Symbol *symbols;
    size_t n_symbols, cap_symbols;
    char **services;
    size_t n_services;
};

static int add_symbol(Reflection *r, const char *prefix, const char *name, int file)
{
    if (r->n_symbols == r->cap_symbols) {
        size_t cap = r->cap_symbols ? r->cap_symbols * 2 : 256;
        Symbol *s = realloc(r->symbols, cap * sizeof *s);
        if (!s)
            return -1;
        r->symbols = s;
        r->cap_symbols = cap;
    }
    size_t len = strlen(prefix) + strlen(name) + 2;
    char *full = malloc(len);
    if (!full)
        return -1;
    snprintf(full, len, "%s%s%s", prefix, *prefix ? "." : "", name);
    r->symbols[r->n_symbols++] = (Symbol){full, file};
    return 0;
}

static int add_message(Reflection *r, const char *prefix,
                       const Google__Protobuf__DescriptorProto *m, int file)
{
    if (add_symbol(r, prefix, m->name, file))
        return -1;
    char inner[512];
    snprintf(inner, sizeof inner, "%s%s%s", prefix, *prefix ? "." : "", m->name);
    for (size_t i = 0; i < m->n_nested_type; i++)
        if (add_message(r, inner, m->nested_type[i], file))
            return -1;
    for (size_t i = 0; i < m->n_enum_type; i++)
        if (add_symbol(r, inner, m->enum_type[i]->name, file))
            return -1;
    return 0;
}

static int index_file(Reflection *r, int idx)
{
    const RpcFileDescriptor *f = &r->files[idx];
    Google__Protobuf__FileDescriptorProto *fd =
        google__protobuf__file_descriptor_proto__unpack(NULL, f->len, f->data);
    if (!fd)
        return -1;
    const char *pkg = fd->package ? fd->package : "";
    int rc = 0;
    for (size_t i = 0; !rc && i < fd->n_message_type; i++)
        rc = add_message(r, pkg, fd->message_type[i], idx);
    for (size_t i = 0; !rc && i < fd->n_enum_type; i++)
        rc = add_symbol(r, pkg, fd->enum_type[i]->name, idx);
    for (size_t i = 0; !rc && i < fd->n_extension; i++)
        rc = add_symbol(r, pkg, fd->extension[i]->name, idx);
    for (size_t i = 0; !rc && i < fd->n_service; i++) {
        const Google__Protobuf__ServiceDescriptorProto *s = fd->service[i];
        rc = add_symbol(r, pkg, s->name, idx);
        char svc[512];
        snprintf(svc, sizeof svc, "%s%s%s", pkg, *pkg ? "." : "", s->name);
        for (size_t k = 0; !rc && k < s->n_method; k++)
            rc = add_symbol(r, svc, s->method[k]->name, idx);
    }
    r->deps[idx] = calloc(fd->n_dependency + 1, sizeof(int));
    if (!r->deps[idx])
        rc = -1;
    for (size_t i = 0; !rc && i < fd->n_dependency; i++)
        r->deps[idx][i] = reflection_file_by_name(r, fd->dependency[i]);
    if (!rc)
        r->deps[idx][fd->n_dependency] = -1;
    google__protobuf__file_descriptor_proto__free_unpacked(fd, NULL);
    return rc;
}

static int symbol_cmp(const void *a, const void *b)
{
    return strcmp(((const Symbol *)a)->name, ((const Symbol *)b)->name);
}

Reflection *reflection_new(const RpcFileDescriptor *files, size_t n_files)
{
    Reflection *r = calloc(1, sizeof *r);
    if (!r)
        return NULL;
    r->files = files;
    r->n_files = n_files;
    r->deps = calloc(n_files ? n_files : 1, sizeof *r->deps);
    if (!r->deps) {
        reflection_free(r);
        return NULL;
    }
    for (size_t i = 0; i < n_files; i++) {
        if (index_file(r, (int)i) != 0) {
            reflection_free(r);
            return NULL;
        }
    }
    qsort(r->symbols, r->n_symbols, sizeof *r->symbols, symbol_cmp);
    return r;
}

void reflection_add_service(Reflection *r, const char *full_name)
{
    char **s = realloc(r->services, (r->n_services + 1) * sizeof *s);
    if (!s)
        return;
    r->services = s;
    s[r->n_services++] = strdup(full_name);
}

void reflection_free(Reflection *r)
{
    if (!r)
        return;
    for (size_t i = 0; i < r->n_symbols; i++)
        free(r->symbols[i].name);
    free(r->symbols);
    for (size_t i = 0; r->deps && i < r->n_files; i++)
        free(r->deps[i]);
    free(r->deps);
    for (size_t i = 0; i < r->n_services; i++)
        free(r->services[i]);
    free(r->services);
    free(r);
}

int reflection_file_by_name(const Reflection *r, const char *filename)
{
    for (size_t i = 0; i < r->n_files; i++)
        if (strcmp(r->files[i].name, filename) == 0)
            return (int)i;
    return -1;
}

int reflection_file_by_symbol(const Reflection *r, const char *symbol)
{
    /* Tools also ask with a leading dot. */
    if (symbol[0] == '.')
        symbol++;
    Symbol key = {(char *)symbol, 0};
    const Symbol *s = bsearch(&key, r->symbols, r->n_symbols, sizeof key, symbol_cmp);
    return s ? s->file : -1;
}

size_t reflection_closure(const Reflection *r, int file, int *out, size_t cap)
{
    size_t n = 0;
    if (file < 0 || (size_t)file >= r->n_files || cap == 0)
        return 0;
    out[n++] = file;
    for (size_t i = 0; i < n; i++) {
        for (const int *d = r->deps[out[i]]; *d != -1; d++) {
            int seen = *d < 0;
            for (size_t k = 0; k < n && !seen; k++)
                seen = out[k] == *d;
            if (!seen && n < cap)
                out[n++] = *d;
        }
    }
    return n;
}

const RpcFileDescriptor *reflection_file(const Reflection *r, int index)
{
    return index >= 0 && (size_t)index < r->n_files ? &r->files[index] : NULL;
}

size_t reflection_service_count(const Reflection *r)
{
    return r->n_services;
}

const char *reflection_service_name(const Reflection *r, size_t i)
{
    return r->services[i];
}

/* ---- the shared answer ------------------------------------------------- */

typedef enum AnswerKind {
    ANSWER_FILES,
    ANSWER_SERVICES,
    ANSWER_EXTENSIONS,
    ANSWER_ERROR
} AnswerKind;

typedef struct Answer {
    AnswerKind kind;
    int files[MAX_CLOSURE];
    size_t n_files;
    const char *base_type; /* ANSWER_EXTENSIONS */
    RpcCode code;
    char message[256];
} Answer;

typedef enum RequestKind {
    REQ_FILE_BY_NAME,
    REQ_FILE_BY_SYMBOL,
    REQ_FILE_BY_EXTENSION,
    REQ_EXTENSION_NUMBERS,
    REQ_LIST_SERVICES,
    REQ_NONE,
} RequestKind;

static void answer(const Reflection *r, RequestKind kind, const char *arg, Answer *a)
{
    memset(a, 0, sizeof *a);
    int file = -1;
    switch (kind) {
    case REQ_LIST_SERVICES: a->kind = ANSWER_SERVICES; return;
    case REQ_FILE_BY_NAME: file = reflection_file_by_name(r, arg); break;
    case REQ_FILE_BY_SYMBOL: file = reflection_file_by_symbol(r, arg); break;
    case REQ_EXTENSION_NUMBERS:
        /* Norn declares no extensions: known types have none. */
        if (reflection_file_by_symbol(r, arg) >= 0) {
            a->kind = ANSWER_EXTENSIONS;
            a->base_type = arg;
            return;
        }
        break;
    case REQ_FILE_BY_EXTENSION:
    case REQ_NONE: break;
    }
    if (file < 0) {
        a->kind = ANSWER_ERROR;
        a->code = kind == REQ_NONE ? RPC_INVALID_ARGUMENT : RPC_NOT_FOUND;
        snprintf(a->message, sizeof a->message,
                 kind == REQ_NONE ? "empty request" : "not found: %.200s", arg ? arg : "");
        return;
    }
    a->kind = ANSWER_FILES;
    a->n_files = reflection_closure(r, file, a->files, MAX_CLOSURE);
}

/* One adapter per protocol version; the macro keeps the two identical. */
#define REFLECTION_VERSION(ver, VER)                                                                                    \
    static RpcCode ver##_message(void *ud, RpcCall *call,                                                               \
                                 const Grpc__Reflection__##ver##__ServerReflectionRequest *req)                         \
    {                                                                                                                   \
        const Reflection *r = ud;                                                                                       \
        RequestKind kind = REQ_NONE;                                                                                    \
        const char *arg = NULL;                                                                                         \
        switch (req->message_request_case) {                                                                            \
        case GRPC__REFLECTION__##VER##__SERVER_REFLECTION_REQUEST__MESSAGE_REQUEST_FILE_BY_FILENAME:                    \
            kind = REQ_FILE_BY_NAME;                                                                                    \
            arg = req->file_by_filename;                                                                                \
            break;                                                                                                      \
        case GRPC__REFLECTION__##VER##__SERVER_REFLECTION_REQUEST__MESSAGE_REQUEST_FILE_CONTAINING_SYMBOL:              \
            kind = REQ_FILE_BY_SYMBOL;                                                                                  \
            arg = req->file_containing_symbol;                                                                          \
            break;                                                                                                      \
        case GRPC__REFLECTION__##VER##__SERVER_REFLECTION_REQUEST__MESSAGE_REQUEST_FILE_CONTAINING_EXTENSION:           \
            kind = REQ_FILE_BY_EXTENSION;                                                                               \
            arg = req->file_containing_extension->containing_type;                                                      \
            break;                                                                                                      \
        case GRPC__REFLECTION__##VER##__SERVER_REFLECTION_REQUEST__MESSAGE_REQUEST_ALL_EXTENSION_NUMBERS_OF_TYPE:       \
            kind = REQ_EXTENSION_NUMBERS;                                                                               \
            arg = req->all_extension_numbers_of_type;                                                                   \
            break;                                                                                                      \
        case GRPC__REFLECTION__##VER##__SERVER_REFLECTION_REQUEST__MESSAGE_REQUEST_LIST_SERVICES:                       \
            kind = REQ_LIST_SERVICES;                                                                                   \
            break;                                                                                                      \
        default: break;                                                                                                 \
        }                                                                                                               \
        Answer a;                                                                                                       \
        answer(r, kind, arg, &a);                                                                                       \
        Grpc__Reflection__##ver##__ServerReflectionResponse resp =                                                      \
            GRPC__REFLECTION__##VER##__SERVER_REFLECTION_RESPONSE__INIT;                                                \
        resp.valid_host = req->host;                                                                                    \
        resp.original_request = (Grpc__Reflection__##ver##__ServerReflectionRequest *)req;                              \
        Grpc__Reflection__##ver##__FileDescriptorResponse files =                                                       \
            GRPC__REFLECTION__##VER##__FILE_DESCRIPTOR_RESPONSE__INIT;                                                  \
        ProtobufCBinaryData blobs[MAX_CLOSURE];                                                                         \
        Grpc__Reflection__##ver##__ListServiceResponse list =                                                           \
            GRPC__REFLECTION__##VER##__LIST_SERVICE_RESPONSE__INIT;                                                     \
        Grpc__Reflection__##ver##__ServiceResponse *svc_ptrs[32];                                                       \
        Grpc__Reflection__##ver##__ServiceResponse svcs[32];                                                            \
        Grpc__Reflection__##ver##__ExtensionNumberResponse ext =                                                        \
            GRPC__REFLECTION__##VER##__EXTENSION_NUMBER_RESPONSE__INIT;                                                 \
        Grpc__Reflection__##ver##__ErrorResponse err =                                                                  \
            GRPC__REFLECTION__##VER##__ERROR_RESPONSE__INIT;                                                            \
        switch (a.kind) {                                                                                               \
        case ANSWER_FILES:                                                                                              \
            for (size_t i = 0; i < a.n_files; i++) {                                                                    \
                const RpcFileDescriptor *f = reflection_file(r, a.files[i]);                                            \
                blobs[i].data = (uint8_t *)f->data;                                                                     \
                blobs[i].len = f->len;                                                                                  \
            }                                                                                                           \
            files.n_file_descriptor_proto = a.n_files;                                                                  \
            files.file_descriptor_proto = blobs;                                                                        \
            resp.message_response_case =                                                                                \
                GRPC__REFLECTION__##VER##__SERVER_REFLECTION_RESPONSE__MESSAGE_RESPONSE_FILE_DESCRIPTOR_RESPONSE;       \
            resp.file_descriptor_response = &files;                                                                     \
            break;                                                                                                      \
        case ANSWER_SERVICES:                                                                                           \
            for (size_t i = 0; i < r->n_services && i < 32; i++) {                                                      \
                Grpc__Reflection__##ver##__ServiceResponse s =                                                          \
                    GRPC__REFLECTION__##VER##__SERVICE_RESPONSE__INIT;                                                  \
                s.name = r->services[i];                                                                                \
                svcs[i] = s;                                                                                            \
                svc_ptrs[i] = &svcs[i];                                                                                 \
                list.n_service = i + 1;                                                                                 \
            }                                                                                                           \
            list.service = svc_ptrs;                                                                                    \
            resp.message_response_case =                                                                                \
                GRPC__REFLECTION__##VER##__SERVER_REFLECTION_RESPONSE__MESSAGE_RESPONSE_LIST_SERVICES_RESPONSE;         \
            resp.list_services_response = &list;                                                                        \
            break;                                                                                                      \
        case ANSWER_EXTENSIONS:                                                                                         \
            ext.base_type_name = (char *)a.base_type;                                                                   \
            resp.message_response_case =                                                                                \
                GRPC__REFLECTION__##VER##__SERVER_REFLECTION_RESPONSE__MESSAGE_RESPONSE_ALL_EXTENSION_NUMBERS_RESPONSE; \
            resp.all_extension_numbers_response = &ext;                                                                 \
            break;                                                                                                      \
        case ANSWER_ERROR:                                                                                              \
            err.error_code = (int32_t)a.code;                                                                           \
            err.error_message = a.message;                                                                              \
            resp.message_response_case =                                                                                \
                GRPC__REFLECTION__##VER##__SERVER_REFLECTION_RESPONSE__MESSAGE_RESPONSE_ERROR_RESPONSE;                 \
            resp.error_response = &err;                                                                                 \
            break;                                                                                                      \
        }                                                                                                               \
        RpcCode sent = rpc_call_send(call, &resp.base);                                                                 \
        return sent == RPC_CANCELLED ? RPC_OK : sent;                                                                   \
    }                                                                                                                   \
    static RpcCode ver##_end(void *ud, RpcCall *call)                                                                   \
    {                                                                                                                   \
        (void)ud;                                                                                                       \
        (void)call;                                                                                                     \
        return RPC_OK;                                                                                                  \
    }

REFLECTION_VERSION(V1, V1)
REFLECTION_VERSION(V1alpha, V1ALPHA)

static const Grpc__Reflection__V1__ServerReflection_Handlers v1_handlers = {
    .server_reflection_info_message = V1_message,
    .server_reflection_info_end = V1_end,
};

static const Grpc__Reflection__V1alpha__ServerReflection_Handlers v1alpha_handlers = {
    .server_reflection_info_message = V1alpha_message,
    .server_reflection_info_end = V1alpha_end,
};

int reflection_register(Reflection *r, RpcServer *srv)
{
    if (grpc__reflection__v1__server_reflection__serve(srv, &v1_handlers, r) != 0 ||
        grpc__reflection__v1alpha__server_reflection__serve(srv, &v1alpha_handlers, r) != 0)
        return -1;
    return 0;
}
