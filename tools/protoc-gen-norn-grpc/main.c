/*
 * protoc-gen-norn-grpc — generates Norn's gRPC glue for protobuf-c messages.
 *
 *   protoc -Iproto --c_out=gen \
 *          --plugin=protoc-gen-norn-grpc=PATH --norn-grpc_out=gen \
 *          [--norn-grpc_opt=descriptor_set=NAME] proto/norn/v1/x.proto
 *
 * For each listed file with services it writes <stem>.grpc-c.{h,c} beside
 * protoc-c's <stem>.pb-c.{h,c} (see gen_service.c); with descriptor_set=NAME
 * it also writes NAME.{h,c} for server reflection (see gen_descset.c).
 *
 * As plugin.proto asks, problems with the .proto input are reported in
 * CodeGeneratorResponse.error (protoc prints them and fails), while an
 * unreadable request or a failed write exits non-zero with a message on
 * stderr.
 */
#include "gen.h"

#include "google/protobuf/compiler/plugin.pb-c.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef Google__Protobuf__Compiler__CodeGeneratorRequest Request;
typedef Google__Protobuf__Compiler__CodeGeneratorResponse Response;
typedef Google__Protobuf__Compiler__CodeGeneratorResponse__File ResponseFile;

typedef struct Params {
    char *descriptor_set; /* NAME of descriptor_set=NAME, or NULL */
} Params;

static uint8_t *read_all(FILE *f, size_t *len)
{
    size_t cap = 64 * 1024;
    uint8_t *buf = xmalloc(cap);
    *len = 0;
    for (;;) {
        *len += fread(buf + *len, 1, cap - *len, f);
        if (*len < cap)
            break;
        cap *= 2;
        buf = xrealloc(buf, cap);
    }
    if (ferror(f)) {
        free(buf);
        return NULL;
    }
    return buf;
}

static int is_c_identifier(const char *s)
{
    if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || *s == '_'))
        return 0;
    for (s++; *s; s++) {
        if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || *s == '_' ||
              (*s >= '0' && *s <= '9')))
            return 0;
    }
    return 1;
}

/* The parameter is protoc's comma-separated list of key=value options
 * (from --norn-grpc_out=OPTS:DIR and/or --norn-grpc_opt=OPTS). Unknown keys
 * are errors, so that a typo does not silently change the output. */
static char *parse_params(const char *param, Params *p)
{
    char *copy = xstrdup(param ? param : "");
    char *err = NULL;
    for (char *item = copy, *next; item != NULL && err == NULL; item = next) {
        next = strchr(item, ',');
        if (next != NULL)
            *next++ = '\0';
        if (*item == '\0')
            continue;
        char *eq = strchr(item, '=');
        const char *value = eq ? eq + 1 : "";
        if (eq != NULL)
            *eq = '\0';
        if (strcmp(item, "descriptor_set") != 0) {
            err = xasprintf("unknown parameter \"%s\" (the only one is descriptor_set=NAME)", item);
        } else if (!is_c_identifier(value)) {
            err = xasprintf("descriptor_set=\"%s\" is not a C identifier", value);
        } else {
            free(p->descriptor_set);
            p->descriptor_set = xstrdup(value);
        }
    }
    free(copy);
    return err;
}

static const Google__Protobuf__FileDescriptorProto *find_file(const Request *req, const char *name)
{
    for (size_t i = 0; i < req->n_proto_file; i++) {
        if (strcmp(req->proto_file[i]->name, name) == 0)
            return req->proto_file[i];
    }
    return NULL;
}

/* "a.proto, b.proto": what the descriptor set's banner says it came from. */
static char *join_file_names(const Request *req)
{
    StrBuf sb = STRBUF_INIT;
    for (size_t i = 0; i < req->n_file_to_generate; i++)
        sb_printf(&sb, "%s%s", i ? ", " : "", req->file_to_generate[i]);
    return sb_take(&sb);
}

static char *generate(const Request *req, Output *out)
{
    Params params = {NULL};
    char *err = parse_params(req->parameter, &params);
    for (size_t i = 0; i < req->n_file_to_generate && err == NULL; i++) {
        const Google__Protobuf__FileDescriptorProto *file =
            find_file(req, req->file_to_generate[i]);
        if (file == NULL)
            err = xasprintf("%s is not in the request", req->file_to_generate[i]);
        else if (file->n_service > 0)
            err = gen_service_file(req->proto_file, req->n_proto_file, file, out);
    }
    /* protoc sends at least the files to generate, so the set is never
     * empty. */
    if (err == NULL && params.descriptor_set != NULL && req->n_proto_file > 0) {
        char *source = join_file_names(req);
        gen_descriptor_set(req->proto_file, req->n_proto_file, params.descriptor_set, source, out);
        free(source);
    }
    free(params.descriptor_set);
    return err;
}

static int write_response(const Response *resp)
{
    size_t len = protobuf_c_message_get_packed_size(&resp->base);
    uint8_t *buf = xmalloc(len);
    protobuf_c_message_pack(&resp->base, buf);
    int ok = fwrite(buf, 1, len, stdout) == len && fflush(stdout) == 0;
    free(buf);
    return ok;
}

int main(void)
{
    size_t len;
    uint8_t *input = read_all(stdin, &len);
    if (input == NULL) {
        fputs("protoc-gen-norn-grpc: cannot read the request from stdin\n", stderr);
        return 1;
    }
    Request *req = google__protobuf__compiler__code_generator_request__unpack(NULL, len, input);
    free(input);
    if (req == NULL) {
        fputs("protoc-gen-norn-grpc: stdin is not a CodeGeneratorRequest "
              "(run me through protoc --plugin)\n",
              stderr);
        return 1;
    }

    Output out = {NULL, 0};
    char *err = generate(req, &out);

    Response resp = GOOGLE__PROTOBUF__COMPILER__CODE_GENERATOR_RESPONSE__INIT;
    /* The plugin never looks at fields, so proto3 `optional` is no concern;
     * without this flag protoc refuses files that use it. */
    resp.has_supported_features = 1;
    resp.supported_features =
        GOOGLE__PROTOBUF__COMPILER__CODE_GENERATOR_RESPONSE__FEATURE__FEATURE_PROTO3_OPTIONAL;
    ResponseFile *files = NULL;
    ResponseFile **file_ptrs = NULL;
    if (err != NULL) {
        /* Partial output would only hide the error. */
        resp.error = err;
    } else {
        files = xmalloc(out.n_files * sizeof *files);
        file_ptrs = xmalloc(out.n_files * sizeof *file_ptrs);
        for (size_t i = 0; i < out.n_files; i++) {
            ResponseFile f = GOOGLE__PROTOBUF__COMPILER__CODE_GENERATOR_RESPONSE__FILE__INIT;
            f.name = out.files[i].name;
            f.content = out.files[i].content;
            files[i] = f;
            file_ptrs[i] = &files[i];
        }
        resp.n_file = out.n_files;
        resp.file = file_ptrs;
    }

    int ok = write_response(&resp);

    free(file_ptrs);
    free(files);
    free(err);
    output_free(&out);
    google__protobuf__compiler__code_generator_request__free_unpacked(req, NULL);
    if (!ok) {
        fputs("protoc-gen-norn-grpc: cannot write the response to stdout\n", stderr);
        return 1;
    }
    return 0;
}
