/* util.h — small helpers shared by server and client: constant-time
 * comparison, whole-file reads with a size limit, and removing a tree. */
#ifndef NORN_UTIL_H
#define NORN_UTIL_H

#include <stddef.h>

/* 1 when a and b are equal. Time depends only on the length of `b` (the
 * secret), never on where the first difference is. */
int ct_equal(const char *a, size_t alen, const char *b, size_t blen);

/* Reads a whole file into a NUL-terminated malloc'd buffer; NULL if it can't
 * be read or is larger than `max` bytes (errno tells which). */
char *read_file_limited(const char *path, size_t max, size_t *len_out);

/* Removes `name` (relative to the directory open as `dirfd`, or AT_FDCWD)
 * and everything under it, never following a symbolic link and never
 * leaving the file system `name` is on. 0 (also when it does not exist) or
 * -1 with errno. */
int remove_tree_at(int dirfd, const char *name);

#endif
