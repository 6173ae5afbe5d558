/*
 * names.h — protobuf-c's C name mangling, reproduced exactly.
 *
 * Generated gRPC code refers to the types, descriptors and service symbols
 * that protoc-c (protobuf-c 1.4.1) emits, so every C name the plugin prints
 * must be derived here, by the same rules as protoc-c's c_helpers.cc:
 *
 *   mangle_type_name  FullNameToC:     "foo.v2.Outer.Inner" -> "Foo__V2__Outer__Inner"
 *   mangle_lower      FullNameToLower: "foo.v2.HTTPRequest" -> "foo__v2__httprequest"
 *   mangle_upper      FullNameToUpper: "foo.v2.my_msg"      -> "FOO__V2__MY_MSG"
 *
 * A full name is split at dots (empty pieces, e.g. from the leading dot of a
 * protoc type reference, are skipped) and the pieces are joined with "__".
 * A single identifier such as a method name is a one-piece full name, so
 * mangle_lower("OpenSession") gives protoc-c's member name "open_session".
 *
 * All functions return a new heap string the caller frees.
 */
#ifndef NORN_PROTOC_GEN_NAMES_H
#define NORN_PROTOC_GEN_NAMES_H

char *mangle_type_name(const char *full_name);
char *mangle_lower(const char *full_name);
char *mangle_upper(const char *full_name);

/* protoc-c's OverrideFullName: a file with the option
 * `(pb_c_file).c_package` has its package replaced by c_package before any
 * mangling. `package` is the defining file's proto package ("" when none);
 * pass c_package NULL when the option is absent. */
char *mangle_c_package(const char *full_name, const char *package, const char *c_package);

/* protoc-c's FilenameIdentifier (used in include guards): alphanumerics are
 * kept, anything else becomes '_' plus its hex code. */
char *mangle_file_identifier(const char *filename);

/* protoc-c's StripProto: the file name without ".protodevel" or ".proto",
 * the stem every generated file name is built from. */
char *mangle_strip_proto(const char *filename);

#endif
