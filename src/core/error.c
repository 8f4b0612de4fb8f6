/* sl_strerror: one table of messages for the codes of <sluice/error.h>. */
#include <sluice/error.h>

const char *sl_strerror(int code)
{
	switch (code) {
	case SL_OK: return "ok";
	case SL_DELAY: return "delayed";
	case SL_DENY: return "over the limit";
	case SL_AGAIN: return "again";
	case SL_ENOMEM: return "out of memory";
	case SL_EINVAL: return "invalid argument";
	case SL_ERANGE: return "out of range";
	case SL_ENOENT: return "no such entry";
	case SL_EFULL: return "full";
	case SL_EIO: return "i/o error";
	case SL_ETIMEDOUT: return "timed out";
	case SL_EPROTO: return "protocol error";
	case SL_ECONFIG: return "invalid configuration";
	}
	return "unknown error";
}
