/* Canonical forms of a request's path and host, the one spelling that route
 * matching and descriptor keys see (docs/normalize.md). Pure functions over
 * caller buffers: nothing allocates, and an input that is already canonical
 * is returned as the same view without being copied, which is the common
 * case on the request path. */
#ifndef SLUICE_POLICY_NORMALIZE_H
#define SLUICE_POLICY_NORMALIZE_H

#include <stdbool.h>
#include <stddef.h>
#include "policy/policy-t.h"

/* RFC 3986 section 6.2.2 on an origin-form path (one that starts with '/';
 * anything else, such as the "*" of OPTIONS, is returned as it is): hex
 * digits of percent-escapes upper-cased, escapes of unreserved characters
 * (ALPHA DIGIT - . _ ~) decoded, repeated slashes merged, then dot segments
 * removed (section 5.2.4; ".." at the root stays at the root). Other
 * escapes, %2F among them, stay encoded. *out is `in` itself when nothing
 * changes, else a view into buf (cap bytes; the result is never longer
 * than in). Returns 0; SL_EINVAL for a '%' not followed by two hex digits
 * or an escaped NUL (%00); SL_ENOMEM when a rewrite does not fit in cap
 * (bytes, which must hold the path with its escapes and slashes done).
 * *upper (unless NULL): the result has an ASCII upper-case letter, so a
 * case-blind key must be lower-cased. Thread: any. */
int sl_norm_path(struct sl_str in, char *buf, size_t cap, struct sl_str *out, bool *upper);

/* The view of a canonical path that route matching and the `path`
 * descriptor compare: with fold_slash, one trailing '/' is dropped (except
 * from "/" itself). */
struct sl_str sl_norm_match_path(struct sl_str canon, bool fold_slash);

/* A Host value (or absolute-form authority) in canonical form: blanks
 * trimmed, letters lower-cased, trailing dots of the name dropped, the port
 * without leading zeros and left out when it is empty, 80 or 443.
 * Bracketed IPv6 literals keep their brackets. *out is `in` when nothing
 * changes, else a view into buf (cap bytes). Returns 0 or SL_ENOMEM when a
 * rewrite does not fit. Never refuses: validity is the HTTP parser's job.
 * Thread: any. */
int sl_norm_host(struct sl_str in, char *buf, size_t cap, struct sl_str *out);

/* Whether a and b are equal, letters compared case-insensitively when
 * icase (route paths under `normalize.case: insensitive`). */
bool sl_norm_eq(const char *a, const char *b, size_t n, bool icase);

#endif
