/*
 * strbuf.h — growable strings for the code generator.
 *
 * protoc-gen-norn-grpc is a short-lived build tool: running out of memory is
 * not something it can recover from, so every allocation here aborts with a
 * message instead of returning NULL. That keeps the generator free of
 * error paths that would never be tested.
 */
#ifndef NORN_PROTOC_GEN_STRBUF_H
#define NORN_PROTOC_GEN_STRBUF_H

#include <stdarg.h>
#include <stddef.h>

typedef struct StrBuf {
    char *data; /* always NUL-terminated once anything was appended */
    size_t len;
    size_t cap;
} StrBuf;

#define STRBUF_INIT ((StrBuf){NULL, 0, 0})

void *xmalloc(size_t n);
void *xrealloc(void *p, size_t n);
char *xstrdup(const char *s);

/* printf into a fresh heap string. */
char *xasprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
char *xvasprintf(const char *fmt, va_list ap) __attribute__((format(printf, 1, 0)));

void sb_putc(StrBuf *sb, char c);
void sb_puts(StrBuf *sb, const char *s);
void sb_printf(StrBuf *sb, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Hands the string to the caller ("" when nothing was appended) and resets
 * the buffer. */
char *sb_take(StrBuf *sb);

void sb_free(StrBuf *sb);

#endif
