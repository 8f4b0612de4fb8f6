/* A bounded output buffer over caller memory, for the response writers of
 * every layer (headers, JSON bodies, metrics): appends never write past the
 * capacity fixed at init; an append that does not fit marks the buffer full
 * and is dropped, so a caller checks once at the end. No allocation. */
#ifndef SLUICE_CORE_BUF_H
#define SLUICE_CORE_BUF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

struct sl_buf {
	char *p;
	size_t len; /* bytes written */
	size_t cap; /* bytes available at p */
	bool full;  /* an append did not fit (and was dropped) */
};

static inline void sl_buf_init(struct sl_buf *b, char *p, size_t cap)
{
	b->p = p;
	b->len = 0;
	b->cap = cap;
	b->full = false;
}

static inline void sl_buf_put(struct sl_buf *b, const void *s, size_t n)
{
	if (b->full || n > b->cap - b->len) {
		b->full = true;
		return;
	}
	memcpy(b->p + b->len, s, n);
	b->len += n;
}

static inline void sl_buf_str(struct sl_buf *b, const char *s)
{
	sl_buf_put(b, s, strlen(s));
}

/* Decimal text of v into out (at least 20 bytes, not NUL-terminated);
 * returns its length. */
size_t sl_fmt_u64(char *out, uint64_t v);
/* As above with a leading '-' for negatives (at least 20 bytes). */
size_t sl_fmt_i64(char *out, int64_t v);

void sl_buf_u64(struct sl_buf *b, uint64_t v);
void sl_buf_i64(struct sl_buf *b, int64_t v);

/* s[0..n) as a JSON string: quoted, '"' and '\' escaped, control bytes as
 * \u00XX; other bytes (UTF-8) pass through. */
void sl_buf_json_string(struct sl_buf *b, const char *s, size_t n);

#endif
