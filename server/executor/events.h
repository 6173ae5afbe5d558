/*
 * events.h — the NORN_EVENTS_FD line protocol (docs/events-protocol.md):
 * one JSON object per line, parsed into an ExecEvent. Internal to the
 * executor.
 */
#ifndef NORN_EXECUTOR_EVENTS_H
#define NORN_EXECUTOR_EVENTS_H

#include <stddef.h>

#include "executor.h"

/* A parsed line: `event` points into the other members. */
typedef struct ParsedEvent {
    ExecEvent event;
    void *root;            /* json_t * of the line */
    char *line_json;       /* compact text of the line's object */
    char *tool_input_json; /* compact text of tool_input */
    char error[256];
} ParsedEvent;

/* Parses one line (without its newline; need not be NUL-terminated). Always
 * fills `out`: a malformed line gives kind EXEC_EVENT_ERROR with the reason in
 * event.error. Release with parsed_event_clear(). */
void parsed_event_parse(ParsedEvent *out, const char *line, size_t len);

/* Frees what parsed_event_parse() built; `out` may then be reused. */
void parsed_event_clear(ParsedEvent *out);

#endif
