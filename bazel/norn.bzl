"""Compiler flags shared by Norn's BUILD files (mirror CMakeLists.txt)."""

# Our own C sources: CMake's C11 (extensions off) + _GNU_SOURCE + NORN_WARNINGS.
NORN_COPTS = [
    "-std=c11",
    "-D_GNU_SOURCE",
    "-Wall",
    "-Wextra",
    "-Werror",
    "-Wstrict-prototypes",
    "-Wno-missing-field-initializers",
]

# Generated protobuf-c / gRPC stub code: same language mode, no -Werror
# (CMake compiles it without NORN_WARNINGS too).
NORN_GEN_COPTS = [
    "-std=c11",
    "-D_GNU_SOURCE",
]

def pb_c_outs(protos, ext):
    """protoc --c_out's files for `protos` ("a/b.proto" -> "a/b.pb-c.<ext>")."""
    return [p[:-len(".proto")] + ".pb-c." + ext for p in protos]

def grpc_c_outs(protos, ext):
    """protoc-gen-norn-grpc's stub files for `protos` ("a/b.proto" -> "a/b.grpc-c.<ext>")."""
    return [p[:-len(".proto")] + ".grpc-c." + ext for p in protos]
