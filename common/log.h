/*
 * log.h — structured one-line logs (logfmt) on stderr.
 *
 *   ts=2026-12-03T16:50:01.123Z level=info event=listening addr=127.0.0.1:50051
 *
 * `event` is a fixed word; the format adds key=value pairs. Values with
 * spaces or quotes should go through %s of log_quote() output.
 */
#ifndef NORN_LOG_H
#define NORN_LOG_H

#include <stddef.h>

typedef enum LogLevel { LOG_DEBUG = 0, LOG_INFO, LOG_WARN, LOG_ERROR } LogLevel;

/* Returns 0 and sets *out for "debug", "info", "warn", "error"; -1 otherwise. */
int log_level_parse(const char *s, LogLevel *out);
void log_set_level(LogLevel level);
int log_enabled(LogLevel level);

void log_msg(LogLevel level, const char *event, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Quotes `s` for a logfmt value into buf (always terminated, cut to fit). */
const char *log_quote(const char *s, char *buf, size_t cap);

#define log_debug(ev, ...) log_msg(LOG_DEBUG, ev, __VA_ARGS__)
#define log_info(ev, ...) log_msg(LOG_INFO, ev, __VA_ARGS__)
#define log_warn(ev, ...) log_msg(LOG_WARN, ev, __VA_ARGS__)
#define log_error(ev, ...) log_msg(LOG_ERROR, ev, __VA_ARGS__)

#endif
