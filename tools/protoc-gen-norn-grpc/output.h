/*
 * output.h — the files a generator run produces, and helpers for printing C.
 *
 * Generators add finished files here rather than to the CodeGeneratorResponse
 * directly, so that nothing but main.c depends on plugin.proto and a failed
 * run can drop everything and report only the error.
 */
#ifndef NORN_PROTOC_GEN_OUTPUT_H
#define NORN_PROTOC_GEN_OUTPUT_H

#include "strbuf.h"

#include <stddef.h>

typedef struct OutputFile {
    char *name; /* relative to the --norn-grpc_out directory */
    char *content;
} OutputFile;

typedef struct Output {
    OutputFile *files;
    size_t n_files;
} Output;

/* Takes ownership of both strings. */
void output_add(Output *out, char *name, char *content);
void output_free(Output *out);

/* The first line of every generated file. `source` is the .proto file (or
 * list of files) the output was made from. */
void emit_banner(StrBuf *sb, const char *source);

/* `s` as a C string literal, quotes included. */
void emit_c_string(StrBuf *sb, const char *s);

/* `s` made safe to sit inside a C block comment. */
void emit_comment_text(StrBuf *sb, const char *s);

/* Generated code is read by the people implementing services, so it is
 * wrapped to EMIT_WIDTH columns like hand-written code. */
enum { EMIT_WIDTH = 100 };

/* `text` as a block comment at `indent`, word-wrapped. */
void emit_comment(StrBuf *sb, const char *indent, const char *text);

/* A function head (one line) and its parameters, wrapped and aligned after
 * the '('.
 * The formatted `fmt` is split at '|': the first piece is the head up to and
 * including '(', each further piece one parameter. `tail` follows the last
 * parameter (e.g. ");\n"). */
void emit_decl(StrBuf *sb, const char *tail, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#endif
