"""Seeds nornd's persisted configuration straight into its RocksDB store.

nornd reads its configuration at start from the store (column family `meta`,
key `config`, a serialized norn.v1.Config; see server/nornd.c and
storage/store.c) and falls back to config_defaults() (server/config.c) when
there is none. Until ConfigService.UpdateConfig is implemented this is the
only way to run nornd with other limits (max_steps_per_session,
max_input_bytes, max_result_bytes); tests call update_config() below, which
uses UpdateConfig when the server has it and this seeding otherwise.

The RocksDB C API is reached through ctypes and the same shared library
nornd links (librocksdb from Debian's librocksdb-dev). nornd must not be
running on the store (RocksDB's LOCK file).

The defaults are parsed from server/config.c's config_defaults() so a seeded
Config differs from the built-in one only in the fields a test overrides.
"""

import ctypes
import ctypes.util
import os
import re

HERE = os.path.dirname(os.path.abspath(__file__))
CONFIG_C = os.path.normpath(os.path.join(HERE, "..", "..", "server", "config.c"))
META_CF = b"meta"
CONFIG_KEY = b"config"

_lib = None


def _rocksdb():
    global _lib
    if _lib is not None:
        return _lib
    names = [ctypes.util.find_library("rocksdb"), "librocksdb.so", "librocksdb.so.7.8"]
    last = None
    for name in names:
        if not name:
            continue
        try:
            lib = ctypes.CDLL(name)
            break
        except OSError as e:
            last = e
    else:
        raise OSError("cannot load librocksdb (%s)" % last)
    vp, cp, sz = ctypes.c_void_p, ctypes.c_char_p, ctypes.c_size_t
    errp = ctypes.POINTER(ctypes.c_void_p)
    sigs = {
        "rocksdb_options_create": (vp, []),
        "rocksdb_options_destroy": (None, [vp]),
        "rocksdb_options_set_create_if_missing": (None, [vp, ctypes.c_ubyte]),
        "rocksdb_options_set_create_missing_column_families": (None, [vp, ctypes.c_ubyte]),
        "rocksdb_list_column_families": (ctypes.POINTER(ctypes.c_char_p),
                                         [vp, cp, ctypes.POINTER(sz), errp]),
        "rocksdb_list_column_families_destroy": (None, [ctypes.POINTER(ctypes.c_char_p), sz]),
        "rocksdb_open_column_families": (vp, [vp, cp, ctypes.c_int,
                                              ctypes.POINTER(ctypes.c_char_p),
                                              ctypes.POINTER(ctypes.c_void_p),
                                              ctypes.POINTER(ctypes.c_void_p), errp]),
        "rocksdb_writeoptions_create": (vp, []),
        "rocksdb_writeoptions_destroy": (None, [vp]),
        "rocksdb_writeoptions_set_sync": (None, [vp, ctypes.c_ubyte]),
        "rocksdb_put_cf": (None, [vp, vp, vp, cp, sz, cp, sz, errp]),
        "rocksdb_column_family_handle_destroy": (None, [vp]),
        "rocksdb_close": (None, [vp]),
        "rocksdb_free": (None, [vp]),
    }
    for fn, (res, args) in sigs.items():
        f = getattr(lib, fn)
        f.restype = res
        f.argtypes = args
    _lib = lib
    return lib


def _check(lib, err, what):
    if err.value:
        msg = ctypes.cast(err, ctypes.c_char_p).value.decode(errors="replace")
        lib.rocksdb_free(err)
        raise RuntimeError("%s: %s" % (what, msg))


def put_meta(store_dir, key, value):
    """Writes one key of the `meta` column family (creating the store if needed)."""
    lib = _rocksdb()
    os.makedirs(os.path.dirname(store_dir), exist_ok=True)
    opts = lib.rocksdb_options_create()
    lib.rocksdb_options_set_create_if_missing(opts, 1)
    lib.rocksdb_options_set_create_missing_column_families(opts, 1)
    try:
        # An existing store must be opened with every column family it has.
        cfs = [b"default"]
        if os.path.exists(os.path.join(store_dir, "CURRENT")):
            n = ctypes.c_size_t(0)
            err = ctypes.c_void_p()
            arr = lib.rocksdb_list_column_families(opts, store_dir.encode(), ctypes.byref(n),
                                                   ctypes.byref(err))
            _check(lib, err, "list column families of %s" % store_dir)
            cfs = [arr[i] for i in range(n.value)]
            lib.rocksdb_list_column_families_destroy(arr, n)
        if META_CF not in cfs:
            cfs.append(META_CF)
        names = (ctypes.c_char_p * len(cfs))(*cfs)
        cfopts = (ctypes.c_void_p * len(cfs))(*([opts] * len(cfs)))
        handles = (ctypes.c_void_p * len(cfs))()
        err = ctypes.c_void_p()
        db = lib.rocksdb_open_column_families(opts, store_dir.encode(), len(cfs), names, cfopts,
                                              handles, ctypes.byref(err))
        _check(lib, err, "open %s" % store_dir)
        wo = lib.rocksdb_writeoptions_create()
        lib.rocksdb_writeoptions_set_sync(wo, 1)
        try:
            err = ctypes.c_void_p()
            lib.rocksdb_put_cf(db, wo, handles[cfs.index(META_CF)], key, len(key), value,
                               len(value), ctypes.byref(err))
            _check(lib, err, "put meta/%s" % key.decode())
        finally:
            lib.rocksdb_writeoptions_destroy(wo)
            for h in handles:
                if h:
                    lib.rocksdb_column_family_handle_destroy(h)
            lib.rocksdb_close(db)
    finally:
        lib.rocksdb_options_destroy(opts)


def default_config(config_pb2, common_pb2):
    """norn.v1.Config filled like server/config.c's config_defaults()."""
    with open(CONFIG_C) as f:
        src = f.read()
    m = re.search(r"void config_defaults\([^)]*\)\s*\{(.*?)\n\}", src, re.S)
    if not m:
        raise RuntimeError("config_defaults() not found in %s" % CONFIG_C)
    cfg = config_pb2.Config()
    for field, expr in re.findall(r"c->(\w+)\s*=\s*([^;]+);", m.group(1)):
        expr = expr.strip()
        if expr.startswith('"'):
            setattr(cfg, field, expr.strip('"'))
        elif expr.startswith("NORN__V1__"):
            # NORN__V1__GUARD_MODE__GUARD_MODE_MONITOR -> GUARD_MODE_MONITOR,
            # looked up in the field's own enum.
            fd = cfg.DESCRIPTOR.fields_by_name[field]
            setattr(cfg, field, fd.enum_type.values_by_name[expr.split("__")[-1]].number)
        elif re.fullmatch(r"[0-9]+\.[0-9]+", expr):
            setattr(cfg, field, float(expr))
        elif re.fullmatch(r"[0-9uU\s*+<()-]+", expr):
            v = int(eval(re.sub(r"(\d+)[uU]", r"\1", expr), {"__builtins__": {}}, {}))
            fd = cfg.DESCRIPTOR.fields_by_name[field]
            setattr(cfg, field, bool(v) if fd.type == fd.TYPE_BOOL else v)
        else:
            raise RuntimeError("cannot read default %s = %s from %s" % (field, expr, CONFIG_C))
    return cfg


def seed_config(data_dir, config):
    """Stores `config` (a norn.v1.Config) as nornd's persisted configuration."""
    put_meta(os.path.join(data_dir, "db"), CONFIG_KEY, config.SerializeToString())
