/*
 * events.c — parsing of the NORN_EVENTS_FD line protocol with jansson
 * (docs/events-protocol.md). Unknown fields are ignored so agents written
 * for a newer protocol still work; wrong types are errors, never guesses.
 */
#include "events.h"

#include <jansson.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void fail(ParsedEvent *out, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void fail(ParsedEvent *out, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(out->error, sizeof out->error, fmt, ap);
    va_end(ap);
    out->event.kind = EXEC_EVENT_ERROR;
    out->event.error = out->error;
}

/* Reads an optional string field; 0, or -1 after fail() on a wrong type. */
static int get_string(ParsedEvent *out, json_t *root, const char *name, const char **dst)
{
    json_t *value = json_object_get(root, name);
    if (!value || json_is_null(value))
        return 0;
    if (!json_is_string(value)) {
        fail(out, "field \"%s\" must be a string", name);
        return -1;
    }
    *dst = json_string_value(value);
    return 0;
}

/* Reads an optional non-negative number field no larger than `max`. */
static int get_number(ParsedEvent *out, json_t *root, const char *name, double max, double *dst)
{
    json_t *value = json_object_get(root, name);
    if (!value || json_is_null(value))
        return 0;
    if (!json_is_number(value) || json_number_value(value) < 0 || json_number_value(value) > max) {
        fail(out, "field \"%s\" must be a number between 0 and %.0f", name, max);
        return -1;
    }
    *dst = json_number_value(value);
    return 0;
}

/* Maps an optional enum-like string field through `names` (index = value). */
static int get_enum(ParsedEvent *out, json_t *root, const char *name, const char *const *names,
                    int count, int *dst)
{
    const char *text = NULL;
    if (get_string(out, root, name, &text) != 0)
        return -1;
    if (!text)
        return 0;
    for (int i = 0; i < count; i++) {
        if (names[i] && strcmp(names[i], text) == 0) {
            *dst = i;
            return 0;
        }
    }
    fail(out, "field \"%s\" has an unknown value \"%.40s\"", name, text);
    return -1;
}

static int require(ParsedEvent *out, const char *type, const char *name, const char *value)
{
    if (value && *value)
        return 0;
    fail(out, "%s needs a non-empty \"%s\"", type, name);
    return -1;
}

static void parse_open(ParsedEvent *out, json_t *root)
{
    ExecEvent *ev = &out->event;
    if (get_string(out, root, "agent_name", &ev->agent_name) ||
        get_string(out, root, "model", &ev->model) ||
        get_string(out, root, "system_prompt", &ev->system_prompt))
        return;
    get_string(out, root, "task", &ev->task);
}

static void parse_begin_step(ParsedEvent *out, json_t *root)
{
    ExecEvent *ev = &out->event;
    double step_number = 0;
    if (get_string(out, root, "tool_use_id", &ev->tool_use_id) ||
        get_string(out, root, "tool_name", &ev->tool_name) ||
        get_number(out, root, "step_number", UINT32_MAX, &step_number) ||
        require(out, "begin_step", "tool_use_id", ev->tool_use_id) ||
        require(out, "begin_step", "tool_name", ev->tool_name))
        return;
    ev->step_number = (uint32_t)step_number;
    json_t *input = json_object_get(root, "tool_input");
    if (input && !json_is_null(input) && !json_is_object(input)) {
        fail(out, "field \"tool_input\" must be an object");
        return;
    }
    out->tool_input_json =
        input && json_is_object(input) ? json_dumps(input, JSON_COMPACT) : strdup("{}");
    if (!out->tool_input_json) {
        fail(out, "out of memory");
        return;
    }
    ev->tool_input_json = out->tool_input_json;
}

static void parse_end_step(ParsedEvent *out, json_t *root)
{
    static const char *const statuses[] = {NULL, "SUCCESS", "ERROR", "EXCEPTION"};
    ExecEvent *ev = &out->event;
    if (get_string(out, root, "tool_use_id", &ev->tool_use_id) ||
        get_string(out, root, "result_text", &ev->result_text) ||
        get_enum(out, root, "result_status", statuses, 4, &ev->result_status) ||
        get_number(out, root, "execution_time_ms", 1e12, &ev->execution_time_ms))
        return;
    require(out, "end_step", "tool_use_id", ev->tool_use_id);
}

static void parse_complete(ParsedEvent *out, json_t *root)
{
    static const char *const statuses[] = {NULL, NULL, "COMPLETED", "TERMINATED"};
    ExecEvent *ev = &out->event;
    double input_tokens = 0, output_tokens = 0;
    if (get_enum(out, root, "status", statuses, 4, &ev->session_status) ||
        get_string(out, root, "final_text", &ev->final_text) ||
        get_string(out, root, "termination_reason", &ev->termination_reason) ||
        get_number(out, root, "input_tokens", 1e15, &input_tokens) ||
        get_number(out, root, "output_tokens", 1e15, &output_tokens))
        return;
    ev->input_tokens = (uint64_t)input_tokens;
    ev->output_tokens = (uint64_t)output_tokens;
}

void parsed_event_parse(ParsedEvent *out, const char *line, size_t len)
{
    memset(out, 0, sizeof *out);
    json_error_t jerr;
    json_t *root = json_loadb(line, len, JSON_REJECT_DUPLICATES, &jerr);
    if (!root) {
        fail(out, "not JSON: %s (column %d)", jerr.text, jerr.column);
        return;
    }
    out->root = root;
    if (!json_is_object(root)) {
        fail(out, "a line must be a JSON object");
        return;
    }
    static const struct {
        const char *name;
        ExecEventKind kind;
        void (*parse)(ParsedEvent *, json_t *);
    } types[] = {
        {"open", EXEC_EVENT_OPEN, parse_open},
        {"begin_step", EXEC_EVENT_BEGIN_STEP, parse_begin_step},
        {"end_step", EXEC_EVENT_END_STEP, parse_end_step},
        {"complete", EXEC_EVENT_COMPLETE, parse_complete},
    };
    const char *type = NULL;
    if (get_string(out, root, "type", &type) != 0)
        return;
    if (!type) {
        fail(out, "missing \"type\"");
        return;
    }
    for (size_t i = 0; i < sizeof types / sizeof types[0]; i++) {
        if (strcmp(types[i].name, type) != 0)
            continue;
        out->event.kind = types[i].kind;
        types[i].parse(out, root);
        if (out->event.kind == EXEC_EVENT_ERROR)
            return;
        out->line_json = json_dumps(root, JSON_COMPACT);
        if (!out->line_json)
            fail(out, "out of memory");
        out->event.line_json = out->line_json;
        return;
    }
    fail(out, "unknown type \"%.40s\"", type);
}

void parsed_event_clear(ParsedEvent *out)
{
    json_decref((json_t *)out->root);
    free(out->line_json);
    free(out->tool_input_json);
    memset(out, 0, sizeof *out);
}
