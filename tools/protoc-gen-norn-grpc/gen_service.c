/*
 * gen_service.c — <stem>.grpc-c.h and <stem>.grpc-c.c for one .proto file.
 *
 * The header carries everything a service or a client needs (method index
 * enum, handler struct, registration, typed send helpers, typed client
 * stubs); the stubs are static inline so that a server binary that never
 * calls them does not need the client half of the adapter at link time. The
 * .c file holds only what must exist once: the thunks and the method table.
 *
 * All C names are computed up front (build_service) and emitted afterwards;
 * computing a name also records it, so two proto names that mangle to the
 * same C identifier are reported as an error instead of as generated code
 * that does not compile.
 */
#include "gen.h"

#include "names.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

typedef Google__Protobuf__FileDescriptorProto FileProto;
typedef Google__Protobuf__DescriptorProto MessageProto;
typedef Google__Protobuf__ServiceDescriptorProto ServiceProto;
typedef Google__Protobuf__MethodDescriptorProto MethodProto;

typedef enum Kind { KIND_UNARY, KIND_SERVER_STREAM, KIND_CLIENT_STREAM, KIND_BIDI } Kind;

static const char *const kind_enum[] = {
    [KIND_UNARY] = "RPC_KIND_UNARY",
    [KIND_SERVER_STREAM] = "RPC_KIND_SERVER_STREAM",
    [KIND_CLIENT_STREAM] = "RPC_KIND_CLIENT_STREAM",
    [KIND_BIDI] = "RPC_KIND_BIDI",
};

/* A message type as protobuf-c names it. */
typedef struct TypeNames {
    char *type; /* "Norn__V1__OpenSessionRequest" */
    char *desc; /* "norn__v1__open_session_request__descriptor" */
} TypeNames;

/* Every C name one method needs; the ones its kind does not use are NULL. */
typedef struct Method {
    const MethodProto *proto;
    Kind kind;
    char *path;  /* "/norn.v1.SessionService/OpenSession" */
    char *index; /* "NORN__V1__SESSION_SERVICE__OPEN_SESSION" */
    TypeNames in, out;
    char *handler;    /* handler member: unary, server stream */
    char *on_message; /* handler members: client stream, bidi */
    char *on_end;
    char *invoke; /* thunks (static in the .c) */
    char *invoke_end;
    char *call;  /* unary client stub */
    char *send;  /* server-side typed send: server stream, bidi */
    char *start; /* streaming client stubs */
    char *read;
    char *write;
    char *finish;
} Method;

typedef struct Service {
    char *full_name; /* "norn.v1.SessionService" */
    char *rpc;       /* the RpcService object */
    char *table;     /* the RpcMethod array */
    char *serve;
    char *handlers;  /* the handler struct type */
    char *n_methods; /* enum constant */
    Method *methods;
    size_t n;
} Service;

/* C identifiers with the proto element each came from. */
typedef struct Claims {
    char **names;
    char **owners;
    size_t n;
} Claims;

typedef struct Gen {
    Google__Protobuf__FileDescriptorProto *const *files;
    size_t n_files;
    const FileProto *file;
    char *c_package; /* the file's (pb_c_file).c_package, or NULL */
    Claims symbols;  /* file scope: ours and protoc-c's service symbols */
    char *error;     /* first clash, if any */
} Gen;

/* ---- (pb_c_file).c_package ---------------------------------------------- */

/* protobuf-c.proto: `extend FileOptions { ProtobufCFileOptions pb_c_file =
 * 1019; }` and ProtobufCFileOptions.c_package is field 6. */
enum { PB_C_FILE_FIELD = 1019, C_PACKAGE_FIELD = 6 };

static int read_varint(const uint8_t **p, const uint8_t *end, uint64_t *v)
{
    uint64_t r = 0;
    for (unsigned shift = 0; shift < 64 && *p < end; shift += 7) {
        uint8_t b = *(*p)++;
        r |= (uint64_t)(b & 0x7f) << shift;
        if ((b & 0x80) == 0) {
            *v = r;
            return 1;
        }
    }
    return 0;
}

static int read_length_prefixed(const uint8_t **p, const uint8_t *end, const uint8_t **data,
                                size_t *len)
{
    uint64_t n;
    if (!read_varint(p, end, &n) || n > (uint64_t)(end - *p))
        return 0;
    *data = *p;
    *len = (size_t)n;
    *p += n;
    return 1;
}

/* Scans one serialized ProtobufCFileOptions. A later c_package replaces an
 * earlier one, as when protobuf merges repeated occurrences. */
static int scan_pb_c_file(const uint8_t *p, const uint8_t *end, char **c_package)
{
    while (p < end) {
        uint64_t tag, ignored;
        const uint8_t *data;
        size_t len;
        if (!read_varint(&p, end, &tag))
            return 0;
        switch (tag & 7) {
        case 0:
            if (!read_varint(&p, end, &ignored))
                return 0;
            break;
        case 1:
            if (end - p < 8)
                return 0;
            p += 8;
            break;
        case 2:
            if (!read_length_prefixed(&p, end, &data, &len))
                return 0;
            if (tag >> 3 == C_PACKAGE_FIELD) {
                free(*c_package);
                *c_package = xmalloc(len + 1);
                memcpy(*c_package, data, len);
                (*c_package)[len] = '\0';
            }
            break;
        case 5:
            if (end - p < 4)
                return 0;
            p += 4;
            break;
        default: return 0;
        }
    }
    return 1;
}

/* protoc-c applies c_package to every name from the file, so it must be
 * honoured here too. The descriptor.proto compiled into this plugin does not
 * know protobuf-c's extension, so protobuf-c left it among FileOptions'
 * unknown fields, whose data still starts with the length prefix. */
static char *file_c_package(const FileProto *file, char **c_package)
{
    *c_package = NULL;
    if (file->options == NULL)
        return NULL;
    const ProtobufCMessage *opts = &file->options->base;
    for (unsigned i = 0; i < opts->n_unknown_fields; i++) {
        const ProtobufCMessageUnknownField *f = &opts->unknown_fields[i];
        if (f->tag != PB_C_FILE_FIELD)
            continue;
        const uint8_t *p = f->data;
        const uint8_t *end = f->data + f->len;
        const uint8_t *data;
        size_t len;
        if (f->wire_type != PROTOBUF_C_WIRE_TYPE_LENGTH_PREFIXED ||
            !read_length_prefixed(&p, end, &data, &len) || p != end ||
            !scan_pb_c_file(data, data + len, c_package)) {
            free(*c_package);
            *c_package = NULL;
            return xasprintf("%s: malformed (pb_c_file) file option", file->name);
        }
    }
    return NULL;
}

/* ---- names ------------------------------------------------------------- */

static const char *package_of(const FileProto *file)
{
    return file->package ? file->package : "";
}

/* C11's keywords, but for the _Capitalised ones, which lower-case mangling
 * cannot produce. protoc-c names service struct members after methods
 * unchanged, so a method whose mangled name is one of these cannot compile. */
static const char *const c_keywords[] = {
    "auto",    "break",  "case",     "char",   "const",    "continue", "default",
    "do",      "double", "else",     "enum",   "extern",   "float",    "for",
    "goto",    "if",     "inline",   "int",    "long",     "register", "restrict",
    "return",  "short",  "signed",   "sizeof", "static",   "struct",   "switch",
    "typedef", "union",  "unsigned", "void",   "volatile", "while",
};

static int is_c_keyword(const char *s)
{
    for (size_t i = 0; i < sizeof c_keywords / sizeof c_keywords[0]; i++) {
        if (strcmp(c_keywords[i], s) == 0)
            return 1;
    }
    return 0;
}

/* Formats a C identifier and records it in `set` under `owner`. */
static char *claim(Gen *g, Claims *set, const char *owner, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static char *claim(Gen *g, Claims *set, const char *owner, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *name = xvasprintf(fmt, ap);
    va_end(ap);

    for (size_t i = 0; i < set->n; i++) {
        if (strcmp(set->names[i], name) == 0 && g->error == NULL)
            g->error = xasprintf("%s: %s and %s both need the C name %s", g->file->name,
                                 set->owners[i], owner, name);
    }
    set->names = xrealloc(set->names, (set->n + 1) * sizeof *set->names);
    set->owners = xrealloc(set->owners, (set->n + 1) * sizeof *set->owners);
    set->names[set->n] = xstrdup(name);
    set->owners[set->n] = xstrdup(owner);
    set->n++;
    return name;
}

static void claims_free(Claims *set)
{
    for (size_t i = 0; i < set->n; i++) {
        free(set->names[i]);
        free(set->owners[i]);
    }
    free(set->names);
    free(set->owners);
}

/* Whether `path` ("Outer.Inner") names one of `msgs` or a type nested in it. */
static int has_message(MessageProto *const *msgs, size_t n, const char *path)
{
    const char *dot = strchr(path, '.');
    size_t len = dot ? (size_t)(dot - path) : strlen(path);
    for (size_t i = 0; i < n; i++) {
        const MessageProto *m = msgs[i];
        if (strlen(m->name) != len || memcmp(m->name, path, len) != 0)
            continue;
        return dot ? has_message(m->nested_type, m->n_nested_type, dot + 1) : 1;
    }
    return 0;
}

/* The file declaring message `full` ("pkg.Outer.Inner"). */
static const FileProto *find_message_file(const Gen *g, const char *full)
{
    for (size_t i = 0; i < g->n_files; i++) {
        const FileProto *f = g->files[i];
        const char *pkg = package_of(f);
        size_t plen = strlen(pkg);
        const char *rest = full;
        if (plen > 0) {
            if (strncmp(full, pkg, plen) != 0 || full[plen] != '.')
                continue;
            rest = full + plen + 1;
        }
        if (has_message(f->message_type, f->n_message_type, rest))
            return f;
    }
    return NULL;
}

/* protobuf-c names a message after its own file's package (and c_package),
 * which for imports such as google.protobuf.Empty is not this file's. */
static char *type_names(const Gen *g, const char *ref, TypeNames *out)
{
    /* protoc passes fully qualified references: ".pkg.Message". */
    if (ref == NULL || ref[0] != '.')
        return xasprintf("%s: unexpected type reference \"%s\"", g->file->name, ref ? ref : "");
    const FileProto *f = find_message_file(g, ref + 1);
    if (f == NULL)
        return xasprintf("%s: message type %s is not in the request", g->file->name, ref + 1);
    char *c_package;
    char *err = file_c_package(f, &c_package);
    if (err != NULL)
        return err;
    char *full = mangle_c_package(ref + 1, package_of(f), c_package);
    char *lower = mangle_lower(full);
    out->type = mangle_type_name(full);
    out->desc = xasprintf("%s__descriptor", lower);
    free(lower);
    free(full);
    free(c_package);
    return NULL;
}

static char *build_method(Gen *g, const Service *svc, const char *svc_lower, const char *svc_upper,
                          Claims *members, const MethodProto *mp, Method *m)
{
    m->proto = mp;
    int cs = mp->has_client_streaming && mp->client_streaming;
    int ss = mp->has_server_streaming && mp->server_streaming;
    m->kind = cs ? (ss ? KIND_BIDI : KIND_CLIENT_STREAM) : (ss ? KIND_SERVER_STREAM : KIND_UNARY);

    char *err = type_names(g, mp->input_type, &m->in);
    if (err == NULL)
        err = type_names(g, mp->output_type, &m->out);
    if (err != NULL)
        return err;

    char *lower = mangle_lower(mp->name);
    if (is_c_keyword(lower)) {
        err = xasprintf("%s: method %s.%s mangles to the C keyword \"%s\", which neither "
                        "protoc-c nor this plugin can use as a name; rename the method",
                        g->file->name, svc->full_name, mp->name, lower);
        free(lower);
        return err;
    }
    char *owner = xasprintf("method %s.%s", svc->full_name, mp->name);
    char *upper = mangle_upper(mp->name);
    /* Prefix of every per-method function, as protoc-c's own caller
     * function for the method is named (that exact name is taken). */
    char *fn = xasprintf("%s__%s", svc_lower, lower);
    Claims *sym = &g->symbols;

    m->path = xasprintf("/%s/%s", svc->full_name, mp->name);
    m->index = claim(g, sym, owner, "%s__%s", svc_upper, upper);
    m->invoke = claim(g, sym, owner, "%s__invoke", fn);
    switch (m->kind) {
    case KIND_UNARY:
        m->handler = claim(g, members, owner, "%s", lower);
        m->call = claim(g, sym, owner, "%s__call", fn);
        break;
    case KIND_SERVER_STREAM:
        m->handler = claim(g, members, owner, "%s", lower);
        m->send = claim(g, sym, owner, "%s__send", fn);
        m->start = claim(g, sym, owner, "%s__start", fn);
        m->read = claim(g, sym, owner, "%s__read", fn);
        break;
    case KIND_CLIENT_STREAM:
        m->on_message = claim(g, members, owner, "%s_message", lower);
        m->on_end = claim(g, members, owner, "%s_end", lower);
        m->invoke_end = claim(g, sym, owner, "%s__invoke_end", fn);
        m->start = claim(g, sym, owner, "%s__start", fn);
        m->write = claim(g, sym, owner, "%s__write", fn);
        m->finish = claim(g, sym, owner, "%s__finish", fn);
        break;
    case KIND_BIDI:
        m->on_message = claim(g, members, owner, "%s_message", lower);
        m->on_end = claim(g, members, owner, "%s_end", lower);
        m->invoke_end = claim(g, sym, owner, "%s__invoke_end", fn);
        m->send = claim(g, sym, owner, "%s__send", fn);
        m->start = claim(g, sym, owner, "%s__start", fn);
        m->write = claim(g, sym, owner, "%s__write", fn);
        m->read = claim(g, sym, owner, "%s__read", fn);
        break;
    }
    free(fn);
    free(upper);
    free(lower);
    free(owner);
    return NULL;
}

/* Records the file-scope names protoc-c's .pb-c.h declares for a service
 * (c_service.cc), which the generated header sees through its include. */
static void claim_protoc_c_service(Gen *g, const ServiceProto *sp, const char *full,
                                   const char *type, const char *lower, const char *upper)
{
    char *owner = xasprintf("protoc-c's code for service %s", full);
    Claims *sym = &g->symbols;
    free(claim(g, sym, owner, "%s_Service", type));
    free(claim(g, sym, owner, "%s_ServiceDestroy", type));
    free(claim(g, sym, owner, "%s__init", lower));
    free(claim(g, sym, owner, "%s__descriptor", lower));
    free(claim(g, sym, owner, "%s__BASE_INIT", upper));
    free(claim(g, sym, owner, "%s__INIT", upper));
    for (size_t i = 0; i < sp->n_method; i++) {
        char *m = mangle_lower(sp->method[i]->name);
        free(claim(g, sym, owner, "%s__%s", lower, m));
        free(m);
    }
    free(owner);
}

static void free_type_names(TypeNames *t)
{
    free(t->type);
    free(t->desc);
}

static void free_service(Service *s)
{
    for (size_t i = 0; i < s->n; i++) {
        Method *m = &s->methods[i];
        free(m->path);
        free(m->index);
        free_type_names(&m->in);
        free_type_names(&m->out);
        free(m->handler);
        free(m->on_message);
        free(m->on_end);
        free(m->invoke);
        free(m->invoke_end);
        free(m->call);
        free(m->send);
        free(m->start);
        free(m->read);
        free(m->write);
        free(m->finish);
    }
    free(s->methods);
    free(s->full_name);
    free(s->rpc);
    free(s->table);
    free(s->serve);
    free(s->handlers);
    free(s->n_methods);
}

static char *build_service(Gen *g, const ServiceProto *sp, Service *svc)
{
    const char *pkg = package_of(g->file);
    svc->full_name = pkg[0] ? xasprintf("%s.%s", pkg, sp->name) : xstrdup(sp->name);
    if (sp->n_method == 0)
        /* C has no empty structs or arrays, and a service nobody can call
         * has nothing to generate. */
        return xasprintf("%s: service %s has no methods", g->file->name, svc->full_name);

    char *c_full = mangle_c_package(svc->full_name, pkg, g->c_package);
    char *type = mangle_type_name(c_full);
    char *lower = mangle_lower(c_full);
    char *upper = mangle_upper(c_full);
    char *owner = xasprintf("service %s", svc->full_name);
    Claims members = {NULL, NULL, 0};
    char *err = NULL;

    claim_protoc_c_service(g, sp, svc->full_name, type, lower, upper);
    svc->rpc = claim(g, &g->symbols, owner, "%s__rpc", lower);
    svc->table = claim(g, &g->symbols, owner, "%s__methods", lower);
    svc->serve = claim(g, &g->symbols, owner, "%s__serve", lower);
    svc->handlers = claim(g, &g->symbols, owner, "%s_Handlers", type);
    svc->n_methods = claim(g, &g->symbols, owner, "%s__N_METHODS", upper);

    svc->methods = xmalloc(sp->n_method * sizeof *svc->methods);
    memset(svc->methods, 0, sp->n_method * sizeof *svc->methods);
    for (size_t i = 0; i < sp->n_method && err == NULL; i++) {
        err = build_method(g, svc, lower, upper, &members, sp->method[i], &svc->methods[i]);
        svc->n = i + 1;
    }

    claims_free(&members);
    free(owner);
    free(upper);
    free(lower);
    free(type);
    free(c_full);
    return err;
}

/* ---- header ---------------------------------------------------------------- */

/* Declarations shared by every generated header, emitted once per
 * translation unit however many generated headers it includes. */
static const char header_common[] =
    "#ifndef NORN_GRPC_C_COMMON\n"
    "#define NORN_GRPC_C_COMMON\n"
    "\n"
    "struct RpcServer;\n"
    "\n"
    "/* Implemented by the gRPC adapter. Declared here rather than included so\n"
    " * that generated headers need nothing from the server. */\n"
    "int rpc_server_add_service(struct RpcServer *srv, const RpcService *svc,\n"
    "                           const void *handlers, void *ud);\n"
    "\n"
    "/* rpc_stream_read() that also checks the message type, so that reading a\n"
    " * call started for another method fails (-1) instead of mistyping it. */\n"
    "static inline int norn_grpc_c_read_as(RpcClientCall *c, const ProtobufCMessageDescriptor *d,\n"
    "                                      ProtobufCMessage **out)\n"
    "{\n"
    "    ProtobufCMessage *m = NULL;\n"
    "    int r = rpc_stream_read(c, &m);\n"
    "    *out = NULL;\n"
    "    if (r != 1)\n"
    "        return r;\n"
    "    if (m->descriptor != d) {\n"
    "        protobuf_c_message_free_unpacked(m, NULL);\n"
    "        return -1;\n"
    "    }\n"
    "    *out = m;\n"
    "    return 1;\n"
    "}\n"
    "\n"
    "/* Ends a client-streaming call: half-close, take the one response, then\n"
    " * the status (this frees the call). A server that answers OK without a\n"
    " * response broke the protocol, which the caller sees as RPC_INTERNAL. */\n"
    "static inline RpcCode norn_grpc_c_finish_one(RpcClientCall *c,\n"
    "                                             const ProtobufCMessageDescriptor *d,\n"
    "                                             ProtobufCMessage **out, RpcStatus *st)\n"
    "{\n"
    "    ProtobufCMessage *m = NULL;\n"
    "    *out = NULL;\n"
    "    /* A failed half-close breaks the stream; the status says why. */\n"
    "    (void)rpc_stream_writes_done(c);\n"
    "    int got = norn_grpc_c_read_as(c, d, &m);\n"
    "    RpcCode code = rpc_stream_finish(c, st);\n"
    "    if (code == RPC_OK && got != 1) {\n"
    "        code = RPC_INTERNAL;\n"
    "        if (st != NULL) {\n"
    "            const char *why = \"client-streaming call ended without a valid response\";\n"
    "            st->code = code;\n"
    "            if (st->message == NULL && (st->message = malloc(strlen(why) + 1)) != NULL)\n"
    "                memcpy(st->message, why, strlen(why) + 1);\n"
    "        }\n"
    "    }\n"
    "    if (code != RPC_OK) {\n"
    "        if (m != NULL)\n"
    "            protobuf_c_message_free_unpacked(m, NULL);\n"
    "        return code;\n"
    "    }\n"
    "    *out = m;\n"
    "    return code;\n"
    "}\n"
    "\n"
    "#endif /* NORN_GRPC_C_COMMON */\n";

/* Prints a doc comment built with printf. */
static void doc(StrBuf *sb, const char *indent, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void doc(StrBuf *sb, const char *indent, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *text = xvasprintf(fmt, ap);
    va_end(ap);
    emit_comment(sb, indent, text);
    free(text);
}

static void emit_handler_members(StrBuf *h, const Method *m)
{
    const char *name = m->proto->name;
    switch (m->kind) {
    case KIND_UNARY:
        doc(h, "    ", "%s (unary): fill the initialised *resp and return a status.", name);
        emit_decl(h, ");\n", "    RpcCode (*%s)(|void *ud|RpcCall *call|const %s *req|%s *resp",
                  m->handler, m->in.type, m->out.type);
        break;
    case KIND_SERVER_STREAM:
        doc(h, "    ",
            "%s (server stream): send with %s(); return a status, or RPC_PENDING and "
            "rpc_call_finish() later.",
            name, m->send);
        emit_decl(h, ");\n", "    RpcCode (*%s)(|void *ud|RpcCall *call|const %s *req", m->handler,
                  m->in.type);
        break;
    case KIND_CLIENT_STREAM:
        doc(h, "    ",
            "%s (client stream): %s for each request (RPC_OK to go on); %s at half-close "
            "fills the initialised *resp and returns a status.",
            name, m->on_message, m->on_end);
        emit_decl(h, ");\n", "    RpcCode (*%s)(|void *ud|RpcCall *call|const %s *req",
                  m->on_message, m->in.type);
        emit_decl(h, ");\n", "    RpcCode (*%s)(|void *ud|RpcCall *call|%s *resp", m->on_end,
                  m->out.type);
        break;
    case KIND_BIDI:
        doc(h, "    ",
            "%s (bidi): %s for each request (RPC_OK to go on), sending with %s(); %s at "
            "half-close returns a status, or RPC_PENDING and rpc_call_finish() later.",
            name, m->on_message, m->send, m->on_end);
        emit_decl(h, ");\n", "    RpcCode (*%s)(|void *ud|RpcCall *call|const %s *req",
                  m->on_message, m->in.type);
        emit_decl(h, ");\n", "    RpcCode (*%s)(|void *ud|RpcCall *call", m->on_end);
        break;
    }
}

static const char body_open[] = ")\n{\n";

static void emit_client_stubs(StrBuf *h, const Service *s, const Method *m)
{
    const char *name = m->proto->name;
    const char *in = m->in.type;
    const char *out = m->out.type;
    switch (m->kind) {
    case KIND_UNARY:
        doc(h, "",
            "Client, %s: on RPC_OK *resp is set; free it with "
            "protobuf_c_message_free_unpacked().",
            name);
        emit_decl(h, body_open,
                  "static inline RpcCode %s(|RpcChannel *ch|const %s *req|%s **resp"
                  "|const RpcCallOptions *opts|RpcStatus *st",
                  m->call, in, out);
        sb_puts(h, "    ProtobufCMessage *out = NULL;\n");
        emit_decl(h, ");\n",
                  "    RpcCode code = rpc_unary(|ch|&%s.methods[%s]|(const ProtobufCMessage *)req"
                  "|&out|opts|st",
                  s->rpc, m->index);
        sb_printf(h, "    *resp = (%s *)out;\n    return code;\n}\n\n", out);
        break;
    case KIND_SERVER_STREAM:
        doc(h, "", "Client, %s: %s(), then %s() until 0 (end) or -1, then rpc_stream_finish().",
            name, m->start, m->read);
        emit_decl(h, body_open,
                  "static inline RpcClientCall *%s(|RpcChannel *ch|const %s *req"
                  "|const RpcCallOptions *opts",
                  m->start, in);
        emit_decl(h, ");\n}\n\n",
                  "    return rpc_stream_start(|ch|&%s.methods[%s]|(const ProtobufCMessage *)req"
                  "|opts",
                  s->rpc, m->index);
        break;
    case KIND_CLIENT_STREAM:
    case KIND_BIDI:
        if (m->kind == KIND_CLIENT_STREAM)
            doc(h, "", "Client, %s: %s(), %s() for each request, then %s().", name, m->start,
                m->write, m->finish);
        else
            doc(h, "",
                "Client, %s: %s(), then %s() and %s() in any order; rpc_stream_writes_done() "
                "half-closes and rpc_stream_finish() ends the call.",
                name, m->start, m->write, m->read);
        emit_decl(h, body_open,
                  "static inline RpcClientCall *%s(|RpcChannel *ch"
                  "|const RpcCallOptions *opts",
                  m->start);
        emit_decl(h, ");\n}\n\n", "    return rpc_stream_start(|ch|&%s.methods[%s]|NULL|opts",
                  s->rpc, m->index);
        doc(h, "", "0, or -1 when the stream is broken (finishing tells why).");
        emit_decl(h, body_open, "static inline int %s(|RpcClientCall *c|const %s *req", m->write,
                  in);
        sb_puts(h, "    return rpc_stream_write(c, (const ProtobufCMessage *)req);\n}\n\n");
        break;
    }
    if (m->read != NULL) {
        doc(h, "",
            "1 with *out set (free it with protobuf_c_message_free_unpacked()), 0 at end of "
            "stream, -1 on a broken stream or a bad message.");
        emit_decl(h, body_open, "static inline int %s(|RpcClientCall *c|%s **out", m->read, out);
        sb_printf(h,
                  "    ProtobufCMessage *m;\n"
                  "    int r = norn_grpc_c_read_as(c, &%s, &m);\n"
                  "    *out = (%s *)m;\n"
                  "    return r;\n"
                  "}\n\n",
                  m->out.desc, out);
    }
    if (m->finish != NULL) {
        doc(h, "",
            "Half-closes, takes the response and the status, and frees the call. On RPC_OK "
            "*resp is set; free it with protobuf_c_message_free_unpacked().");
        emit_decl(h, body_open,
                  "static inline RpcCode %s(|RpcClientCall *c|%s **resp|RpcStatus *st", m->finish,
                  out);
        sb_printf(h,
                  "    ProtobufCMessage *m;\n"
                  "    RpcCode code = norn_grpc_c_finish_one(c, &%s, &m, st);\n"
                  "    *resp = (%s *)m;\n"
                  "    return code;\n"
                  "}\n\n",
                  m->out.desc, out);
    }
}

static void emit_header_service(StrBuf *h, const Service *s)
{
    sb_printf(h, "/* ---- %s ---- */\n\n", s->full_name);
    sb_printf(h, "extern const RpcService %s;\n\n", s->rpc);

    doc(h, "", "Indexes into %s.methods.", s->rpc);
    sb_puts(h, "enum {\n");
    for (size_t i = 0; i < s->n; i++)
        sb_printf(h, "    %s = %zu,\n", s->methods[i].index, i);
    sb_printf(h, "    %s\n};\n\n", s->n_methods);

    doc(h, "",
        "The implementation of %s; NULL members answer RPC_UNIMPLEMENTED. `ud` is the "
        "pointer given to %s(). Memory a response points to must come from rpc_call_alloc().",
        s->full_name, s->serve);
    sb_printf(h, "typedef struct %s {\n", s->handlers);
    for (size_t i = 0; i < s->n; i++)
        emit_handler_members(h, &s->methods[i]);
    sb_printf(h, "} %s;\n\n", s->handlers);

    doc(h, "", "Adds %s to the server; the adapter keeps `h` and `ud`.", s->full_name);
    emit_decl(h, body_open, "static inline int %s(|struct RpcServer *srv|const %s *h|void *ud",
              s->serve, s->handlers);
    sb_printf(h, "    return rpc_server_add_service(srv, &%s, h, ud);\n}\n\n", s->rpc);

    for (size_t i = 0; i < s->n; i++) {
        const Method *m = &s->methods[i];
        if (m->send == NULL)
            continue;
        doc(h, "", "Queues one %s response; see rpc_call_send().", m->proto->name);
        emit_decl(h, body_open, "static inline RpcCode %s(|RpcCall *call|const %s *msg", m->send,
                  m->out.type);
        sb_puts(h, "    return rpc_call_send(call, (const ProtobufCMessage *)msg);\n}\n\n");
    }

    for (size_t i = 0; i < s->n; i++)
        emit_client_stubs(h, s, &s->methods[i]);
}

static char *emit_header(const FileProto *file, const char *stem, const Service *svcs, size_t n)
{
    StrBuf h = STRBUF_INIT;
    char *guard = mangle_file_identifier(file->name);
    char *pbc = xasprintf("%s.pb-c.h", stem);
    emit_banner(&h, file->name);
    sb_printf(&h,
              "#ifndef NORN_GRPC_C_%s__INCLUDED\n"
              "#define NORN_GRPC_C_%s__INCLUDED\n\n"
              "#include <stdlib.h>\n"
              "#include <string.h>\n\n"
              "#include \"rpc.h\"\n"
              "#include ",
              guard, guard);
    emit_c_string(&h, pbc);
    sb_printf(&h, "\n\n%s\n", header_common);
    for (size_t i = 0; i < n; i++)
        emit_header_service(&h, &svcs[i]);
    sb_printf(&h, "#endif /* NORN_GRPC_C_%s__INCLUDED */\n", guard);
    free(pbc);
    free(guard);
    return sb_take(&h);
}

/* ---- source ---------------------------------------------------------------- */

/* Which generic arguments a handler member takes. */
enum { PASS_REQ = 1, PASS_RESP = 2 };

/* One RpcThunk: calls `member` with the generic messages it takes cast to
 * the method's types, and voids the ones it does not take. */
static void emit_thunk(StrBuf *c, const Service *s, const Method *m, const char *thunk,
                       const char *member, int pass)
{
    emit_decl(c, body_open,
              "static RpcCode %s(|const void *handlers|void *ud|RpcCall *call"
              "|const ProtobufCMessage *req|ProtobufCMessage *resp",
              thunk);
    sb_printf(c, "    const %s *h = handlers;\n", s->handlers);
    if (!(pass & PASS_REQ))
        sb_puts(c, "    (void)req;\n");
    if (!(pass & PASS_RESP))
        sb_puts(c, "    (void)resp;\n");
    sb_printf(c, "    if (h->%s == NULL)\n        return RPC_UNIMPLEMENTED;\n", member);
    StrBuf call = STRBUF_INIT;
    sb_printf(&call, "    return h->%s(|ud|call", member);
    if (pass & PASS_REQ)
        sb_printf(&call, "|(const %s *)req", m->in.type);
    if (pass & PASS_RESP)
        sb_printf(&call, "|(%s *)resp", m->out.type);
    emit_decl(c, ");\n}\n\n", "%s", call.data);
    sb_free(&call);
}

static void emit_thunks(StrBuf *c, const Service *s, const Method *m)
{
    switch (m->kind) {
    case KIND_UNARY: emit_thunk(c, s, m, m->invoke, m->handler, PASS_REQ | PASS_RESP); break;
    case KIND_SERVER_STREAM: emit_thunk(c, s, m, m->invoke, m->handler, PASS_REQ); break;
    case KIND_CLIENT_STREAM:
        emit_thunk(c, s, m, m->invoke, m->on_message, PASS_REQ);
        emit_thunk(c, s, m, m->invoke_end, m->on_end, PASS_RESP);
        break;
    case KIND_BIDI:
        emit_thunk(c, s, m, m->invoke, m->on_message, PASS_REQ);
        emit_thunk(c, s, m, m->invoke_end, m->on_end, 0);
        break;
    }
}

static void emit_source_service(StrBuf *c, const Service *s)
{
    sb_printf(c, "/* ---- %s ---- */\n\n", s->full_name);
    for (size_t i = 0; i < s->n; i++)
        emit_thunks(c, s, &s->methods[i]);

    sb_printf(c, "static const RpcMethod %s[%s] = {\n", s->table, s->n_methods);
    for (size_t i = 0; i < s->n; i++) {
        const Method *m = &s->methods[i];
        sb_printf(c, "    [%s] = {\n        .path = ", m->index);
        emit_c_string(c, m->path);
        sb_puts(c, ",\n        .name = ");
        emit_c_string(c, m->proto->name);
        sb_printf(c,
                  ",\n"
                  "        .kind = %s,\n"
                  "        .input = &%s,\n"
                  "        .output = &%s,\n"
                  "        .invoke = %s,\n"
                  "        .invoke_end = %s,\n"
                  "    },\n",
                  kind_enum[m->kind], m->in.desc, m->out.desc, m->invoke,
                  m->invoke_end ? m->invoke_end : "NULL");
    }
    sb_puts(c, "};\n\n");

    sb_printf(c, "const RpcService %s = {\n    .name = ", s->rpc);
    emit_c_string(c, s->full_name);
    sb_printf(c,
              ",\n"
              "    .n_methods = %s,\n"
              "    .methods = %s,\n"
              "};\n",
              s->n_methods, s->table);
}

static char *emit_source(const FileProto *file, const char *stem, const Service *svcs, size_t n)
{
    StrBuf c = STRBUF_INIT;
    emit_banner(&c, file->name);
    sb_puts(&c, "#include ");
    char *hdr = xasprintf("%s.grpc-c.h", stem);
    emit_c_string(&c, hdr);
    sb_puts(&c, "\n");
    for (size_t i = 0; i < n; i++) {
        sb_puts(&c, "\n");
        emit_source_service(&c, &svcs[i]);
    }
    free(hdr);
    return sb_take(&c);
}

/* ---- entry point ----------------------------------------------------------- */

char *gen_service_file(Google__Protobuf__FileDescriptorProto *const *files, size_t n_files,
                       const Google__Protobuf__FileDescriptorProto *file, Output *out)
{
    Gen g = {files, n_files, file, NULL, {NULL, NULL, 0}, NULL};
    size_t n = file->n_service;
    Service *svcs = xmalloc(n * sizeof *svcs);
    memset(svcs, 0, n * sizeof *svcs);

    char *err = file_c_package(file, &g.c_package);
    for (size_t i = 0; i < n && err == NULL; i++)
        err = build_service(&g, file->service[i], &svcs[i]);
    if (err == NULL && g.error != NULL) {
        err = g.error;
        g.error = NULL;
    }
    if (err == NULL) {
        char *stem = mangle_strip_proto(file->name);
        output_add(out, xasprintf("%s.grpc-c.h", stem), emit_header(file, stem, svcs, n));
        output_add(out, xasprintf("%s.grpc-c.c", stem), emit_source(file, stem, svcs, n));
        free(stem);
    }

    for (size_t i = 0; i < n; i++)
        free_service(&svcs[i]);
    free(svcs);
    free(g.error);
    free(g.c_package);
    claims_free(&g.symbols);
    return err;
}
