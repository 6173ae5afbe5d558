/*
 * gen_descset.c — <name>.h and <name>.c: the request's FileDescriptorProtos
 * as byte arrays, for the server-reflection service.
 *
 * Reflection clients resolve imports themselves, so the set is every file
 * protoc sent, dependencies included, in protoc's order (dependencies
 * first). Source code info (comments and spans) is dropped: reflection does
 * not need it and it is most of a descriptor's size.
 */
#include "gen.h"

#include <stdint.h>
#include <stdlib.h>

enum { BYTES_PER_LINE = 16 };

/* Serializes `file` without its source code info. The field is detached
 * only for the duration of the pack, so the request stays intact. */
static uint8_t *pack_without_source_info(Google__Protobuf__FileDescriptorProto *file, size_t *len)
{
    Google__Protobuf__SourceCodeInfo *info = file->source_code_info;
    file->source_code_info = NULL;
    *len = protobuf_c_message_get_packed_size(&file->base);
    uint8_t *data = xmalloc(*len);
    protobuf_c_message_pack(&file->base, data);
    file->source_code_info = info;
    return data;
}

static void emit_bytes(StrBuf *c, const char *array, const uint8_t *data, size_t len)
{
    sb_printf(c, "static const uint8_t %s[%zu] = {", array, len);
    for (size_t i = 0; i < len; i++) {
        if (i % BYTES_PER_LINE == 0)
            sb_puts(c, "\n   ");
        sb_printf(c, " 0x%02x,", data[i]);
    }
    sb_puts(c, "\n};\n\n");
}

void gen_descriptor_set(Google__Protobuf__FileDescriptorProto *const *files, size_t n_files,
                        const char *name, const char *source, Output *out)
{
    StrBuf h = STRBUF_INIT;
    emit_banner(&h, source);
    sb_printf(&h,
              "#ifndef NORN_DESCRIPTOR_SET_%s__INCLUDED\n"
              "#define NORN_DESCRIPTOR_SET_%s__INCLUDED\n\n"
              "#include <stddef.h>\n\n"
              "#include \"rpc.h\"\n\n"
              "/* Serialized FileDescriptorProtos, dependencies first. */\n"
              "extern const RpcFileDescriptor %s[];\n"
              "extern const size_t %s_count;\n\n"
              "#endif /* NORN_DESCRIPTOR_SET_%s__INCLUDED */\n",
              name, name, name, name, name);

    StrBuf c = STRBUF_INIT;
    StrBuf table = STRBUF_INIT;
    emit_banner(&c, source);
    sb_printf(&c, "#include \"%s.h\"\n\n#include <stdint.h>\n\n", name);
    for (size_t i = 0; i < n_files; i++) {
        size_t len;
        uint8_t *data = pack_without_source_info(files[i], &len);
        char *array = xasprintf("%s__%zu", name, i);
        sb_printf(&c, "/* %zu: ", i);
        emit_comment_text(&c, files[i]->name);
        sb_puts(&c, " */\n");
        emit_bytes(&c, array, data, len);
        sb_puts(&table, "    {");
        emit_c_string(&table, files[i]->name);
        sb_printf(&table, ", %s, sizeof %s},\n", array, array);
        free(array);
        free(data);
    }
    sb_printf(&c, "const RpcFileDescriptor %s[%zu] = {\n%s};\n\n", name, n_files, table.data);
    sb_printf(&c, "const size_t %s_count = %zu;\n", name, n_files);
    sb_free(&table);

    output_add(out, xasprintf("%s.h", name), sb_take(&h));
    output_add(out, xasprintf("%s.c", name), sb_take(&c));
}
