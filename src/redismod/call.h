/* sluice's Redis module interpreter: one SLUICE.CALL (call.c). */
#ifndef SLUICE_REDISMOD_CALL_H
#define SLUICE_REDISMOD_CALL_H

#include "redismod/rmcall-t.h"

/* Run the call: nk keys (names, for a key named twice), argv[0] the
 * program and argv[1..na) the rest of ARGV, at now (ns since the epoch).
 * 0 with the reply in *out (*outlen bytes, valid until the next call), or
 * -1 with *err (an error reply, nothing written unless a write failed). */
int sl_rm_run(const struct sl_rm_io *io, int64_t now, const struct sl_rm_str *key_names, size_t nk,
              const struct sl_rm_str *argv, size_t na, const unsigned char **out, size_t *outlen,
              const char **err);

#endif
