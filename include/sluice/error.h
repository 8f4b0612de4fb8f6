/* Return codes shared by every sluice layer. Functions return 0 on success
 * or a negative SL_E* code; outcomes that are not failures have positive
 * codes of their own (SL_DENY, SL_DELAY, SL_AGAIN) instead of a boolean. */
#ifndef SLUICE_ERROR_H
#define SLUICE_ERROR_H

enum {
	SL_OK = 0,
	SL_DELAY = 1, /* admitted after a delay (queue) */
	SL_DENY = 2,  /* over the limit */
	SL_AGAIN = 3, /* partial input or result pending: call again later */

	SL_ENOMEM = -1,    /* allocation failed or a fixed bound was hit */
	SL_EINVAL = -2,    /* argument or input refused */
	SL_ERANGE = -3,    /* value out of the representable range */
	SL_ENOENT = -4,    /* no such entry */
	SL_EFULL = -5,     /* fixed-capacity structure full */
	SL_EIO = -6,       /* I/O or backend failure */
	SL_ETIMEDOUT = -7, /* backend did not answer in time */
	SL_EPROTO = -8,    /* peer spoke the protocol wrong */
	SL_ECONFIG = -9,   /* configuration rejected */
};

/* Static string for any code above; never NULL. */
const char *sl_strerror(int code);

#endif
